"""Clustering with a Gaussian-mixture VAE: M2 without any labels. The cluster y is summed out
exactly (``--discrete enumerate``, TraceEnum_ELBO) or relaxed to a Concrete / Gumbel-softmax
variable whose temperature falls each epoch (``--discrete relaxed``, for K too large to enumerate).

    python examples/gmvae.py --epochs 30
    python examples/gmvae.py --epochs 30 --discrete relaxed

The labels are used only to score: the test accuracy of argmax q(y|x) after matching clusters to
classes one-to-one (the usual unsupervised clustering accuracy). ``clusters.png`` shows samples
from each mixture component.
"""

import argparse

import torch

from pyro_vae import ModelConfig, TrainConfig, build_model, fit, load_data
from pyro_vae.data.batch import for_evaluation
from pyro_vae.analysis.evaluate import evaluate


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--discrete", choices=["enumerate", "relaxed"], default="enumerate")
    p.add_argument("--eval-k", type=int, default=100, help="z samples per cluster for log p(x)")
    p.add_argument("--data-dir", default=None, help="folder with the official MNIST test files (else: validation)")
    a = p.parse_args()
    data = load_data("mnist5k", a.data_dir)
    train = data.train.replace(y=None, labelled=None)  # no labels at all in training
    test = for_evaluation(data.test if data.test is not None else data.val, "dynamic")
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            model="gmvae",
            data_shape=(1, 28, 28),
            latent_dim=16,
            hidden=(400,),
            clusters=a.clusters,
            discrete=a.discrete,
        )
    )
    fit(
        model,
        (train, data.val.replace(y=None, labelled=None)),
        TrainConfig(epochs=a.epochs, batch_size=100, patience=None),
        progress=False,
    )
    m = evaluate(model, test, k=a.eval_k)
    print(
        f"{a.discrete}: test cluster accuracy {m['cluster_accuracy']['value']:.3f}, log p(x) "
        f"{m['log_px']['value']:.2f} nats (k={a.eval_k} per cluster), ELBO {m['elbo']['value']:.2f}"
    )
    model.figure("clusters", test, "clusters.png")
    print("samples of each cluster in clusters.png")


if __name__ == "__main__":
    main()

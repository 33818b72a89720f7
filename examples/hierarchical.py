"""A VAE with two stochastic layers: the bottom-up guide (Burda et al. 2016) and the ladder guide
(Sonderby et al. 2016), with KL warm-up, and the KL and active units of each layer.

    python examples/hierarchical.py --epochs 30 --warmup-epochs 10

The model is top-down, z2 -> z1 -> x. The bottom-up guide samples z1 from x, then z2 from z1;
the ladder guide makes a deterministic pass up and then samples top-down, merging at each layer
its own Gaussian with the model's p(z1 | z2) by precision weighting.
"""

import argparse

import torch

from pyro_vae import ModelConfig, TrainConfig, build_model, fit, load_data
from pyro_vae.data.batch import for_evaluation
from pyro_vae.analysis.evaluate import evaluate


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--warmup-epochs", type=float, default=10, help="KL weight of every layer rises 0 -> 1")
    p.add_argument("--eval-k", type=int, default=1000)
    p.add_argument("--data-dir", default=None, help="folder with the official MNIST test files (else: validation)")
    a = p.parse_args()
    data = load_data("mnist5k", a.data_dir)
    test = for_evaluation(data.test if data.test is not None else data.val, "dynamic")
    for guide in ("bottomup", "ladder"):
        config = ModelConfig(
            model="hvae",
            data_shape=(1, 28, 28),
            latent_dims=(50, 20),
            hidden=(200, 200),
            upper_hidden=(100, 100),
            guide=guide,
        )
        torch.manual_seed(0)
        model = build_model(config)
        fit(
            model,
            data,
            TrainConfig(epochs=a.epochs, batch_size=100, warmup_epochs=a.warmup_epochs, patience=None),
            progress=False,
        )
        m = evaluate(model, test, k=a.eval_k)
        layers = "   ".join(
            f"{s}: KL {m[f'kl_{s}']['value']:5.1f} nats, {m[f'active_units_{s}']['value']} active "
            f"{m[f'active_units_{s}']['unit']}"
            for s in ("z1", "z2")
        )
        print(f"{guide:9s} log p(x) {m['log_px']['value']:8.2f}  ELBO {m['elbo']['value']:8.2f}   {layers}")


if __name__ == "__main__":
    main()

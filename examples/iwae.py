"""The importance-weighted autoencoder (Burda et al. 2016) against the VAE, same network and budget.

    python examples/iwae.py --epochs 20                 # VAE, IWAE k=5, IWAE k=5 with DReG
    python examples/iwae.py --k 50 --data-dir ../shared/data/mnist

The IWAE trains on log (1/K) sum_k p(x, z_k) / q(z_k|x) for each image (``--objective iwae``,
K = ``--num-particles``); ``iwae_dreg`` is the same bound with the doubly-reparameterized gradient
of Tucker et al. (2018). All three are measured alike: log p(x) with the same number of
importance samples, the ELBO, and active units.
"""

import argparse

import torch

from pyro_vae import ModelConfig, TrainConfig, build_model, fit, load_data
from pyro_vae.data.batch import for_evaluation
from pyro_vae.analysis.evaluate import evaluate


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--k", type=int, default=5, help="particles of the IWAE bound")
    p.add_argument("--eval-k", type=int, default=1000, help="importance samples for the test log p(x)")
    p.add_argument("--data-dir", default=None, help="folder with the official MNIST test files (else: validation)")
    a = p.parse_args()
    data = load_data("mnist5k", a.data_dir)
    test = for_evaluation(data.test if data.test is not None else data.val, "dynamic")
    config = ModelConfig(model="vae", data_shape=(1, 28, 28), latent_dim=50, hidden=(200, 200))
    for name, objective, k in (
        ("VAE", "auto", 1),
        (f"IWAE k={a.k}", "iwae", a.k),
        (f"IWAE k={a.k}, DReG", "iwae_dreg", a.k),
    ):
        torch.manual_seed(0)
        model = build_model(config)
        fit(
            model,
            data,
            TrainConfig(epochs=a.epochs, batch_size=100, objective=objective, num_particles=k, patience=None),
            progress=False,
        )
        m = evaluate(model, test, k=a.eval_k)
        print(
            f"{name:18s} log p(x) {m['log_px']['value']:8.2f}   ELBO {m['elbo']['value']:8.2f}   "
            f"active units {m['active_units_z']['value']}/50   (k={a.eval_k}, {len(test)} images)"
        )


if __name__ == "__main__":
    main()

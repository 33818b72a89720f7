"""A user's own prior and likelihood, trained by the library without changing it.

    python examples/custom_prior_likelihood.py --epochs 5

The prior is a heavy-tailed Laplace; the likelihood a Gaussian with one learned scale per
pixel, for grey (not binarized) MNIST images. Neither is registered anywhere: a prior is any
module whose forward() returns a distribution over one latent vector, a likelihood any module
mapping decoder outputs to a distribution over one image.
"""

import argparse
import logging

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae import VAE, MLPDecoder, MLPEncoder, TrainConfig, fit, load_data
from pyro_vae.inference.marginal import elbo


class LaplacePrior(nn.Module):
    def __init__(self, latent_dim):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))

    def forward(self):  # event_shape (latent_dim,)
        return dist.Laplace(self.loc, torch.ones_like(self.loc)).to_event(1)


class PixelGaussian(nn.Module):
    def __init__(self, data_shape):
        super().__init__()
        self.log_scale = nn.Parameter(torch.full(data_shape, -2.0))

    def forward(self, params):  # event_shape data_shape: one log-density per image
        return dist.Normal(params, self.log_scale.exp()).to_event(len(self.log_scale.shape))

    def mean(self, params):
        return params


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--latent-dim", type=int, default=16)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # fit's line per epoch

    data = load_data("mnist5k")
    shape, d = data.train.data_shape, args.latent_dim
    vae = VAE(
        MLPEncoder(shape, d, (256,)), MLPDecoder(shape, d, (256,)), LaplacePrior(d), PixelGaussian(shape), shape, d
    )
    before = elbo(vae.model, vae.guide, data.val.x).mean().item()
    summary = fit(vae, data, TrainConfig(epochs=args.epochs, binarize="none", device="cpu"))
    print(
        f"validation ELBO: {before:.1f} nats/image before training, {summary['best_val_elbo']:.1f} after "
        f"(a Gaussian log-density of grey images: higher is better, can be positive)"
    )
    scale = vae.likelihood.log_scale.exp()
    print(f"learned pixel scale: min {scale.min():.3f}, median {scale.median():.3f}, max {scale.max():.3f}")


if __name__ == "__main__":
    main()

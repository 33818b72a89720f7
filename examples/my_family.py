"""A model family of your own, in one file: a VAE for grey (not binarized) images whose decoder
is a Gaussian with a learned scale per pixel, under a Laplace (or normal) prior. Nothing of it
is in pyro_vae/; docs/families.md walks through it line by line.

    python examples/my_family.py --epochs 2 --out runs/pixel_gauss          # from Python
    pyro-vae train --plugin examples/my_family.py --model pixel_gauss \\
        --binarize none --epochs 2 --out runs/pixel_gauss_cli                # from the CLI
"""

import argparse
import logging
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyro_vae import Family, MLPDecoder, MLPEncoder, register_model
from pyro_vae.models.base import batch_size_of, option


@dataclass
class PixelGaussConfig:  # every field becomes a `pyro-vae train` flag: --latent-dim, --z-prior, ...
    latent_dim: int = option(16, "size of z")
    hidden: tuple = option((256,), "hidden layer sizes of the encoder (the decoder mirrors them)")
    z_prior: str = option("laplace", "p(z): laplace or normal", choices=("laplace", "normal"))
    min_scale: float = option(0.01, "floor of the pixel scale (constant pixels would drive it to 0)")


@register_model("pixel_gauss")
class PixelGauss(Family):
    """z ~ Laplace(0, 1)^L (or N(0, I)),  x ~ N(decoder(z), diag sigma^2), sigma learned per pixel."""

    Config = PixelGaussConfig
    figures = ("reconstructions", "samples", "latent_space", "pixel_scale")
    figure_titles = {"pixel_scale": "Learned scale sigma of p(x|z), per pixel"}

    def __init__(self, data_shape, latent_dim=16, hidden=(256,), z_prior="laplace", min_scale=0.01):
        super().__init__()
        self.data_shape, self.latent_dim = tuple(data_shape), latent_dim
        self.z_prior, self.min_scale = z_prior, min_scale
        self.encoder = MLPEncoder(data_shape, latent_dim, hidden)
        self.decoder = MLPDecoder(data_shape, latent_dim, hidden)
        self.raw_scale = nn.Parameter(torch.full(self.data_shape, -2.0))  # sigma = softplus(raw) + floor

    @classmethod
    def from_config(cls, config, data_shape, num_classes=None):
        return cls(data_shape, config.latent_dim, config.hidden, config.z_prior, config.min_scale)

    def prior(self):
        zero = self.raw_scale.new_zeros(self.latent_dim)
        base = dist.Laplace if self.z_prior == "laplace" else dist.Normal
        return base(zero, torch.ones_like(zero)).to_event(1)

    def pixel_scale(self):
        return F.softplus(self.raw_scale) + self.min_scale

    # Pyro programs as Pyro's VAE tutorial writes them: training puts beta/warm-up on "z" and the
    # data-set scale N/B on every site from outside (pyro_vae.inference.scaling)
    def model(self, x=None):
        pyro.module(self.pyro_name, self)
        with pyro.plate("data", batch_size_of(x)):  # x=None: one draw from the prior predictive
            z = pyro.sample("z", self.prior())
            p_x = dist.Normal(self.decoder(z), self.pixel_scale()).to_event(len(self.data_shape))
            return pyro.sample("x", p_x, obs=x)

    def guide(self, x):
        pyro.module(self.pyro_name, self)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # ---- what the generic figures ask of a family (encode, decode, reconstruct, sample)
    @torch.no_grad()
    def encode(self, x):
        return self.encoder(x)

    @torch.no_grad()
    def decode(self, z):
        return self.decoder(z)

    def reconstruct(self, x):
        return self.decode(self.encode(x)[0])

    def sample(self, n, mean=True):
        z = self.prior().sample((n,))
        return self.decode(z) if mean else dist.Normal(self.decode(z), self.pixel_scale()).sample()

    def figure(self, name, data, path):  # the one figure of its own, listed in `figures`
        from pyro_vae.drawing import plot_image_rows

        if name != "pixel_scale":
            return super().figure(name, data, path)
        sigma = self.pixel_scale().detach()
        return plot_image_rows(
            (sigma / sigma.max())[None, None], path, f"sigma per pixel, white = {sigma.max():.3f}, black = 0"
        )


def main():
    from pyro_vae import ModelConfig, TrainConfig, build_model, fit, load_data

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--data-dir", default=None, help="folder with the official MNIST test files")
    p.add_argument("--out", default="runs/pixel_gauss", help="run folder (must not hold a run yet)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # fit's line per epoch

    data = load_data("mnist5k", args.data_dir)
    config = ModelConfig(
        model="pixel_gauss", data_shape=data.train.data_shape, z_prior="laplace", plugins=[__file__]
    )  # the CLI will ask for --plugin this file to reload it
    family = build_model(config)
    test, label = (data.test, "mnist/test") if data.test is not None else (data.val, "mnist5k/val")
    summary = fit(
        family,
        data,
        TrainConfig(epochs=args.epochs, binarize="none", eval_k=100),
        args.out,
        model_config=config,
        test=test,
        test_label=label,
    )
    print(
        f"{label} log p(x) {summary['test']['log_px']:.1f} nats/image (a Gaussian log-density: higher "
        f"is better, can be positive); figures and report in {args.out}"
    )


if __name__ == "__main__":
    main()

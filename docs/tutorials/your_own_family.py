# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Your own model family
#
# A *family* is an `nn.Module` holding two Pyro programs, `model` and `guide`, and a few
# declarations. Training, evaluation, figures, the report, checkpoints and the command line talk
# to it only through that contract, so a family of your own needs no change in the library.
#
# The family below is a VAE for grey (not binarized) digits whose decoder is a Gaussian with a
# learned scale per pixel, under a Laplace or normal prior. It is `examples/my_family.py`, which
# [Writing your own family](../families.md) walks through rule by rule.

# %%
import logging
import os
import sys
import time
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from IPython.display import Image, display
from torch import nn
from torch.nn import functional as F

import pyro_vae
from pyro_vae.config import option
from pyro_vae.models.base import batch_size_of

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
SMALL = os.environ.get("PYRO_VAE_TUTORIAL_BUDGET") == "small"
EPOCHS = 1 if SMALL else 10  # passes over the training images
K = 10 if SMALL else 100  # importance samples per image for log p(x)


# %% [markdown]
# ## Its options
#
# `Config` is a dataclass of the family's options, with defaults. `option` adds the help text and
# the values allowed: `ModelConfig` checks them, checkpoints store them, and each field becomes a
# `pyro-vae train` flag (`--latent-dim`, `--z-prior`, ...) when the file is passed with `--plugin`.


# %%
@dataclass
class PixelGaussConfig:
    latent_dim: int = option(16, "size of z")
    hidden: tuple = option((256,), "hidden layer sizes (the decoder mirrors them)")
    z_prior: str = option("laplace", "p(z)", choices=("laplace", "normal"))
    min_scale: float = option(0.01, "floor of the pixel scale")


# %% [markdown]
# ## The family
#
# The two programs are written as Pyro's VAE tutorial writes them: the sites of a batch inside
# `pyro.plate("data", B)`, and `model(x=None)` a draw from the prior. Training puts the KL weight
# and the data-set scale N/B on the sites from outside, so the programs carry neither. The
# methods after them (`encode`, `decode`, `reconstruct`, `sample`) are optional *abilities* the
# generic figures use; `figure` draws the one figure of its own, listed in `figures`.


# %%
@pyro_vae.register_model("pixel_gauss")
class PixelGauss(pyro_vae.Family):
    """z ~ Laplace(0, 1)^L (or N(0, I)), x ~ N(decoder(z), diag sigma^2), sigma per pixel."""

    Config = PixelGaussConfig
    figures = ("reconstructions", "samples", "latent_space", "pixel_scale")
    figure_titles = {"pixel_scale": "Learned scale sigma of p(x|z), per pixel"}

    def __init__(self, data_shape, latent_dim=16, hidden=(256,), z_prior="laplace", min_scale=0.01):
        super().__init__()
        self.data_shape, self.latent_dim = tuple(data_shape), latent_dim
        self.z_prior, self.min_scale = z_prior, min_scale
        self.encoder = pyro_vae.MLPEncoder(data_shape, latent_dim, hidden)
        self.decoder = pyro_vae.MLPDecoder(data_shape, latent_dim, hidden)
        # sigma = softplus(raw) + floor: positive, and never below the floor
        self.raw_scale = nn.Parameter(torch.full(self.data_shape, -2.0))

    @classmethod
    def from_config(cls, config, data_shape, num_classes=None):
        return cls(data_shape, config.latent_dim, config.hidden, config.z_prior, config.min_scale)

    def prior(self):
        zero = self.raw_scale.new_zeros(self.latent_dim)
        base = dist.Laplace if self.z_prior == "laplace" else dist.Normal
        return base(zero, torch.ones_like(zero)).to_event(1)

    def pixel_scale(self):
        return F.softplus(self.raw_scale) + self.min_scale

    def model(self, x=None):
        pyro.module(self.pyro_name, self)
        with pyro.plate("data", batch_size_of(x)):  # x=None: one draw from the prior
            z = pyro.sample("z", self.prior())
            p_x = dist.Normal(self.decoder(z), self.pixel_scale())
            p_x = p_x.to_event(len(self.data_shape))  # one log-density per image
            return pyro.sample("x", p_x, obs=x)

    def guide(self, x):
        pyro.module(self.pyro_name, self)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

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
        if mean:
            return self.decode(z)
        return dist.Normal(self.decode(z), self.pixel_scale()).sample()

    def figure(self, name, data, path):
        from pyro_vae.drawing import plot_image_rows

        if name != "pixel_scale":
            return super().figure(name, data, path)
        sigma = self.pixel_scale().detach()
        return plot_image_rows(
            (sigma / sigma.max())[None, None], path, f"sigma per pixel, white = {sigma.max():.3f}, black = 0"
        )


# %% [markdown]
# ## Training it
#
# Registered, the family is built by name like the built-in ones, and `fit` trains it with the
# same loop, evaluation, figures and report. Grey images stay grey (`binarize="none"`): a
# Gaussian log-density of continuous pixels, higher is better and can be positive.

# %%
data = pyro_vae.load_data("mnist5k")
config = pyro_vae.ModelConfig(model="pixel_gauss", data_shape=data.train.data_shape, z_prior="laplace")
family = pyro_vae.build_model(config)
run = pyro_vae.RunDir(time.strftime("runs/pixel-gauss-%Y%m%d-%H%M%S"))
torch.manual_seed(0)
train = pyro_vae.TrainConfig(epochs=EPOCHS, binarize="none", eval_k=K, patience=None)
summary = pyro_vae.fit(
    family, data, train, run, model_config=config, test=data.val, test_label="validation", progress=False
)
print(f"validation log p(x) {summary['test']['log_px']:.1f} nats/image (k = {K})")

# %% [markdown]
# The generic figures work on it through its abilities: samples, z from the Laplace prior, shown
# as the decoder's mean,

# %%
display(Image(filename=run.figure("samples")))

# %% [markdown]
# and its own figure, the learned scale of each pixel, drawn by the report like the generic ones:

# %%
display(Image(filename=run.figure("pixel_scale")))

# %% [markdown]
# The checkpoint holds the family's name and options, not its code; `load_checkpoint` rebuilds it
# because `pixel_gauss` is registered in this process (from the command line, `--plugin FILE`
# imports the file that registers it).

# %%
best, checkpoint = pyro_vae.load_checkpoint(run.best)
print(type(best).__name__, checkpoint["model_config"]["options"])

# %% [markdown]
# From the command line, the same family trains with
# `pyro-vae train --plugin examples/my_family.py --model pixel_gauss --binarize none --epochs 10`.
# [Writing your own family](../families.md) lists every rule of the contract, the optional
# abilities, and how to declare discrete latents, extra losses and measures.

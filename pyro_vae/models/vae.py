"""The VAE: a generative model p(z) p(x|z) and an amortized guide q(z|x), as Pyro programs.

    model:  z ~ p(z),  x ~ p(x | decoder(z))        for each image in pyro.plate("data")
    guide:  z ~ N(encoder(x).loc, encoder(x).scale)  for each image in pyro.plate("data")

``Trace_ELBO`` on this pair estimates, per data set,

    ELBO = sum_n  E_q[log p(x_n|z)] - beta * KL(q(z|x_n) || p(z))

with beta applied by ``poutine.scale`` to the ``z`` site in *both* programs, and the batch
scaled up to the data set by ``num_data / B``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from ..likelihoods import build_likelihood
from ..networks import build_networks
from ..priors import build_prior, check_prior
from .base import Family, batch_size_of, data_plate, option


@dataclass
class VAEConfig:
    """Options of the VAE family (each one a ``pyro-vae train`` flag)."""

    latent_dim: int = option(50, "size of z")
    hidden: tuple = option((400,), "hidden layer sizes (encoder; the decoder mirrors them)")
    network: str = option("mlp", "encoder/decoder networks: mlp or conv")
    prior: str = option("standard_normal", "p(z): a registered prior")
    likelihood: str = option("bernoulli", "p(x|z): a registered likelihood")
    prior_kwargs: dict = option({}, "options of the prior (--prior-OPTION)")
    likelihood_kwargs: dict = option({}, "options of the likelihood (--likelihood-OPTION)")


class VAE(Family):
    """A VAE from four replaceable parts.

    Args:
        encoder: ``x (B, *data_shape) -> (loc, scale)`` of q(z|x), each ``(B, latent_dim)``.
        decoder: ``z (..., latent_dim) -> params (..., *data_shape)``.
        prior: module whose ``forward()`` returns a distribution with event_shape ``(latent_dim,)``.
        likelihood: module mapping ``params`` to a distribution with event_shape ``data_shape``.
        data_shape: shape of one data point, e.g. ``(1, 28, 28)``.
        latent_dim: size of z.

    Parameters live in this module (``state_dict()`` is the checkpoint). ``model``/``guide``
    also register them with ``pyro.module`` under a name unique to this instance, so
    ``pyro.infer.SVI`` with a ``pyro.optim`` optimizer trains them too.
    """

    Config = VAEConfig

    def __init__(self, encoder, decoder, prior, likelihood, data_shape, latent_dim):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.prior, self.likelihood = prior, likelihood
        self.data_shape = tuple(int(s) for s in data_shape)
        self.latent_dim = int(latent_dim)
        check_prior(prior, self.latent_dim)

    @classmethod
    def from_config(cls, config: VAEConfig, data_shape, num_classes=None) -> "VAE":
        encoder, decoder = build_networks(config.network, data_shape, config.latent_dim, config.hidden)
        prior = build_prior(config.prior, config.latent_dim, **config.prior_kwargs)
        likelihood = build_likelihood(config.likelihood, data_shape, **config.likelihood_kwargs)
        return cls(encoder, decoder, prior, likelihood, data_shape, config.latent_dim)

    # ------------------------------------------------------------------ Pyro programs
    def model(self, x=None, kl_weight=1.0, num_data=None):
        """p(z) p(x|z). ``kl_weight`` scales the z site (beta, warm-up); ``num_data`` scales the
        batch to the data set (``None``: the loss is per batch). ``x=None`` draws one x from
        the prior predictive (``pyro.infer.Predictive`` draws many)."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with data_plate(batch_size_of(x), num_data):
            with poutine.scale(scale=kl_weight):
                z = pyro.sample("z", self.prior())
            return pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x, kl_weight=1.0, num_data=None):
        """q(z|x) = N(z; mu(x), diag sigma(x)^2), reparameterized."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with data_plate(x.shape[0], num_data):
            loc, scale = self.encoder(x)
            with poutine.scale(scale=kl_weight):
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # ------------------------------------------------------------------ helpers
    @torch.no_grad()
    def encode(self, x):
        """Return ``(loc, scale)`` of q(z|x)."""
        self.check_shape(x)
        return self.encoder(x)

    @torch.no_grad()
    def decode(self, z):
        """Return E[x|z] (the likelihood's mean) for latents ``z (..., latent_dim)``."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x, sample_z: bool = False):
        """E[x|z] at z = E_q[z|x] (or one draw from q when ``sample_z``)."""
        loc, scale = self.encode(x)
        z = loc + scale * torch.randn_like(scale) if sample_z else loc
        return self.decode(z)

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True):
        """Draw ``n`` images: z ~ p(z), then E[x|z] (``mean=True``) or x ~ p(x|z)."""
        z = self.prior().sample((n,))
        params = self.decoder(z)
        return self.likelihood.mean(params) if mean else self.likelihood(params).sample()


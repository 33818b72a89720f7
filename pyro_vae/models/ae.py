"""The autoencoder as a Pyro program: the VAE's encoder and decoder with a point-mass guide.

    model:  z ~ p(z) (its log-density counted only with prior_term="on"),  x ~ p(x | decoder(z))
    guide:  z ~ Delta(encoder(x).loc)

``Trace_ELBO`` on this pair is ``log p(x | z) [+ log p(z)]`` at ``z = encoder(x)``: the log-density
of a point mass is 0 at its point, so nothing else enters. With ``prior_term="off"`` that is a plain
autoencoder trained on the reconstruction log-likelihood (binary cross-entropy for a Bernoulli
likelihood, squared error for a Gaussian of fixed scale); with ``"on"`` the code is pulled towards
high prior density (a regularised autoencoder). Nothing makes the codes fill p(z): drawing
z ~ N(0, I) and decoding is what the VAE's KL term makes work and what this model shows failing.
``denoising`` (``noise``) works as in the VAE: the encoder sees a corrupted x in training.

The guide has no spread, so there is no density q(z|x) to importance-sample log p(x) with and no
ELBO: the evaluator says so (``point_estimate = True``) instead of printing a number.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
from pyro import poutine

from pyro_vae.components.likelihoods import build_likelihood
from pyro_vae.components.networks import GaussianHead, PointHead, build_networks
from pyro_vae.components.priors import build_prior
from pyro_vae.models.base import batch_size_of, option
from pyro_vae.models.registry import register_model
from pyro_vae.models.vae import VAE, DenoisingConfig


@dataclass
class AEConfig(DenoisingConfig):
    """Options of the autoencoder family (each one a ``pyro-vae train`` flag)."""

    latent_dim: int = option(2, "size of the code z")
    prior_term: str = option(
        "off",
        "off: a plain autoencoder, reconstruction log-likelihood only; on: "
        "log p(z) at the code added (a regularised autoencoder)",
        choices=("off", "on"),
    )


@register_model("ae")
class AE(VAE):
    """A deterministic autoencoder (the guide is the point mass ``Delta(encoder(x).loc)``).

    Built from the same parts as :class:`~pyro_vae.models.VAE`, with the encoder's scale layer
    removed (a :class:`~pyro_vae.components.networks.PointHead`: a point mass has no spread to learn)."""

    Config = AEConfig
    point_estimate = True  # no density q(z|x): log p(x) by importance sampling is undefined
    undefined_note = (
        "undefined for an autoencoder: its guide is a point mass, so there is no density "
        "q(z|x) to importance-sample log p(x) with, and no ELBO"
    )

    def __init__(
        self,
        encoder,
        decoder,
        prior,
        likelihood,
        data_shape,
        latent_dim,
        prior_term="off",
        noise="none",
        noise_rate=0.0,
    ):
        super().__init__(
            encoder, decoder, prior, likelihood, data_shape, latent_dim, noise=noise, noise_rate=noise_rate
        )
        if prior_term not in ("off", "on"):
            raise ValueError(f"prior_term must be off or on, got {prior_term!r}")
        self.prior_term = prior_term
        if isinstance(getattr(encoder, "head", None), GaussianHead):
            encoder.head = PointHead(encoder.head.loc)

    @classmethod
    def from_config(cls, config: AEConfig, data_shape, num_classes=None) -> "AE":
        encoder, decoder = build_networks(config.network, data_shape, config.latent_dim, config.hidden)
        prior = build_prior(config.prior, config.latent_dim, **config.prior_kwargs)
        likelihood = build_likelihood(config.likelihood, data_shape, **config.likelihood_kwargs)
        return cls(
            encoder,
            decoder,
            prior,
            likelihood,
            data_shape,
            config.latent_dim,
            prior_term=config.prior_term,
            noise=config.noise,
            noise_rate=config.noise_rate,
        )

    def model(self, x=None):
        """p(z) p(x|z); log p(z) is masked out unless ``prior_term="on"`` (then training's KL
        weight scales it, as every latent site). ``x=None`` draws z from the prior and x from p(x|z)."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with pyro.plate("data", batch_size_of(x)):
            with poutine.mask(mask=self.prior_term == "on"):
                z = pyro.sample("z", self.prior())
            return pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x):
        """z = encoder(x), a point mass (log-density 0 at its point, whatever weight scales it)."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with pyro.plate("data", x.shape[0]):
            loc, _ = self.encoder(self.encoder_input(x))
            pyro.sample("z", dist.Delta(loc, event_dim=1))


__all__ = ["AE", "AEConfig"]

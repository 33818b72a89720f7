"""Model families. Every model is an ``nn.Module`` with ``model(x, ...)`` and ``guide(x, ...)``."""

from __future__ import annotations

from ..config import ModelConfig
from ..likelihoods import build_likelihood
from ..networks import build_networks
from ..priors import build_prior
from ..registry import Registry
from .vae import VAE

MODELS = Registry("model")
register_model = MODELS.register  # @register_model("name") on a builder fn(config) -> module


@register_model("vae")
def build_vae(config: ModelConfig) -> VAE:
    encoder, decoder = build_networks(config.network, config.data_shape, config.latent_dim, config.hidden)
    prior = build_prior(config.prior, config.latent_dim, **config.prior_kwargs)
    likelihood = build_likelihood(config.likelihood, config.data_shape, **config.likelihood_kwargs)
    return VAE(encoder, decoder, prior, likelihood, config.data_shape, config.latent_dim)


def build_model(config: ModelConfig):
    """Build the model a :class:`ModelConfig` describes (used by the CLI and checkpoints)."""
    return MODELS.build(config.model, config)


__all__ = ["VAE", "build_model", "build_vae", "register_model", "MODELS"]

"""Model families. Every model is an ``nn.Module`` with ``model(x, ...)`` and ``guide(x, ...)``."""

from __future__ import annotations

from ..config import ModelConfig
from ..likelihoods import build_likelihood
from ..networks import build_networks
from ..priors import build_prior
from .vae import VAE

MODELS = {}


def register_model(name: str):
    """Decorator for a builder ``fn(config: ModelConfig) -> nn.Module``."""

    def deco(fn):
        MODELS[name] = fn
        return fn

    return deco


@register_model("vae")
def build_vae(config: ModelConfig) -> VAE:
    encoder, decoder = build_networks(config.network, config.data_shape, config.latent_dim, config.hidden)
    prior = build_prior(config.prior, config.latent_dim, **config.prior_kwargs)
    likelihood = build_likelihood(config.likelihood, config.data_shape, **config.likelihood_kwargs)
    return VAE(encoder, decoder, prior, likelihood, config.data_shape, config.latent_dim)


def build_model(config: ModelConfig):
    """Build the model a :class:`ModelConfig` describes (used by the CLI and checkpoints)."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[config.model](config)


__all__ = ["VAE", "build_model", "build_vae", "register_model", "MODELS"]

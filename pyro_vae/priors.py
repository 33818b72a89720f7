"""Priors p(z).

A prior is an ``nn.Module`` whose ``forward()`` takes no arguments and returns a Pyro
distribution over one latent vector: ``batch_shape == ()`` and
``event_shape == (latent_dim,)``. The model samples it inside ``pyro.plate("data", B)``,
which broadcasts it over the batch, so a prior never needs to know the batch size.

Any module that follows this rule is a prior; nothing has to be registered. Registering
(``@register_prior("name")``) only lets the CLI and checkpoints find a prior by name::

    class LaplacePrior(nn.Module):
        def __init__(self, latent_dim):
            super().__init__()
            self.register_buffer("loc", torch.zeros(latent_dim))
        def forward(self):
            return dist.Laplace(self.loc, torch.ones_like(self.loc)).to_event(1)
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from .registry import Registry

PRIORS = Registry("prior")
register_prior = PRIORS.register  # @register_prior("name") makes a prior buildable by name


def build_prior(name: str, latent_dim: int, **kwargs) -> nn.Module:
    """Build a registered prior by name; ``kwargs`` go to its constructor."""
    return PRIORS.build(name, latent_dim, **kwargs)


@register_prior("standard_normal")
class StandardNormal(nn.Module):
    """p(z) = N(0, I). No parameters."""

    def __init__(self, latent_dim: int, **_):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self):
        return dist.Normal(self.loc, self.scale).to_event(1)


@register_prior("diagonal_gaussian")
class DiagonalGaussian(nn.Module):
    """p(z) = N(mu, diag(sigma^2)) with learnable mu and log sigma (initialised to N(0, I))."""

    def __init__(self, latent_dim: int, **_):
        super().__init__()
        self.latent_dim = latent_dim
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(latent_dim))

    def forward(self):
        return dist.Normal(self.loc, self.log_scale.exp()).to_event(1)


@register_prior("mixture")
class MixtureOfGaussians(nn.Module):
    """p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)), all of pi, mu, sigma learnable.

    Component means start spread out (N(0, I) draws, seeded by the global RNG) so the
    components do not collapse onto one another at the start of training.
    """

    def __init__(self, latent_dim: int, components: int = 10, **_):
        super().__init__()
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ValueError(f"a mixture prior needs a whole number >= 1 of components (--prior-components), got "
                             f"{components!r}")
        self.latent_dim = latent_dim
        self.components = components
        self.logits = nn.Parameter(torch.zeros(components))
        self.locs = nn.Parameter(torch.randn(components, latent_dim))
        self.log_scales = nn.Parameter(torch.zeros(components, latent_dim))

    def forward(self):
        mix = dist.Categorical(logits=self.logits)
        comp = dist.Normal(self.locs, self.log_scales.exp()).to_event(1)
        return dist.MixtureSameFamily(mix, comp)


def check_prior(prior: nn.Module, latent_dim: int) -> None:
    """Raise a clear error unless ``prior()`` is a distribution over one ``latent_dim`` vector."""
    d = prior()
    if not hasattr(d, "event_shape") or not hasattr(d, "log_prob"):
        raise TypeError(f"prior {type(prior).__name__}() must return a distribution, got {type(d).__name__}")
    if tuple(d.event_shape) != (latent_dim,) or tuple(d.batch_shape) != ():
        raise ValueError(
            f"prior {type(prior).__name__}() returned batch_shape {tuple(d.batch_shape)} and "
            f"event_shape {tuple(d.event_shape)}; expected batch_shape () and event_shape "
            f"({latent_dim},). Wrap per-dimension distributions with .to_event(1)."
        )

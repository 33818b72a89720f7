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

import math

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.components.distributions import UnitNormal
from pyro_vae.contract import ContractError
from pyro_vae.registry import Registry, check_component_class, check_kwargs

PRIORS = Registry("prior", check=lambda cls: check_component_class(cls, "prior"))
register_prior = PRIORS.register  # @register_prior("name") makes a prior buildable by name (checked at once)


def build_prior(name: str, latent_dim: int, data_shape=None, **kwargs) -> nn.Module:
    """Build a registered prior by name; ``kwargs`` go to its constructor (and ``data_shape`` too,
    to a prior that declares ``needs_encoder``: it is a function of the family's encoder)."""
    cls = PRIORS.get_or_raise(name)
    check_kwargs(cls, kwargs, "prior")
    if getattr(cls, "needs_encoder", False):
        kwargs["data_shape"] = data_shape
    return cls(latent_dim, **kwargs)


class DiagonalNormalMixture(dist.MixtureSameFamily):
    """A mixture of K diagonal Gaussians, ``MixtureSameFamily(Categorical(logits),
    Normal(loc, scale).to_event(1))``, whose ``log_prob`` is two matrix products.

    Expanding ``(z - mu_k)^2 / sigma_k^2`` gives ``z^2 @ (1/sigma^2)^T - 2 z @ (mu/sigma^2)^T`` plus a
    constant per component, so N points against K components cost two (N x D) @ (D x K) products
    instead of an (N, K, D) tensor: evaluating log p(x) with k = 5000 under a 500-component
    VampPrior is dominated by this density. The value is the same as ``MixtureSameFamily``'s up to
    float rounding (the expansion loses about 1e-7 of ``(|z| + |mu|)^2 / sigma^2`` per dimension).
    Sampling, means and everything else are ``MixtureSameFamily``'s."""

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, validate_args=None):
        if loc.dim() != 2 or loc.shape != scale.shape or logits.shape != loc.shape[:1]:
            raise ValueError(
                f"DiagonalNormalMixture needs logits (K,), loc and scale (K, D); got "
                f"{tuple(logits.shape)}, {tuple(loc.shape)}, {tuple(scale.shape)}"
            )
        self._params = (logits, loc, scale)  # unexpanded: a plate expands the components to (B, K, D)
        super().__init__(
            dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1), validate_args=validate_args
        )

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiagonalNormalMixture, _instance)
        new._params = self._params
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits, loc, scale = self._params
        precision = scale.pow(-2)  # (K, D)
        const = (
            -0.5 * (loc * loc * precision).sum(-1) - scale.log().sum(-1) - 0.5 * loc.shape[-1] * math.log(2 * math.pi)
        )  # (K,)
        quad = (value * value) @ (-0.5 * precision).T + value @ (loc * precision).T  # (..., K)
        out = torch.logsumexp(quad + const + torch.log_softmax(logits, -1), -1)
        return out.expand(torch.broadcast_shapes(out.shape, self.batch_shape))


@register_prior("standard_normal")
class StandardNormal(nn.Module):
    """p(z) = N(0, I). No parameters."""

    def __init__(self, latent_dim: int, **_):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self):
        return UnitNormal(self.loc, self.scale).to_event(1)


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
            raise ValueError(
                f"a mixture prior needs a whole number >= 1 of components (--prior-components), got {components!r}"
            )
        self.latent_dim = latent_dim
        self.components = components
        self.logits = nn.Parameter(torch.zeros(components))
        self.locs = nn.Parameter(torch.randn(components, latent_dim))
        self.log_scales = nn.Parameter(torch.zeros(components, latent_dim))

    def forward(self):
        return DiagonalNormalMixture(self.logits, self.locs, self.log_scales.exp())


@register_prior("flow")
class FlowPrior(nn.Module):
    """p(z) = N(0, I) pushed through ``steps`` affine autoregressive transforms (a masked
    autoregressive flow: the density of a given z takes one network pass per step, a draw takes
    ``latent_dim`` passes). Built on ``pyro.distributions.transforms``; consecutive steps read the
    dimensions in opposite orders. Starts as the identity up to small weights (N(0, I)-like)."""

    def __init__(self, latent_dim: int, steps: int = 2, hidden: int = 0, **_):
        super().__init__()
        from pyro.distributions.transforms import AffineAutoregressive
        from pyro.nn import AutoRegressiveNN

        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"a flow prior needs a whole number >= 1 of steps (--prior-steps), got {steps!r}")
        self.latent_dim, self.steps = latent_dim, steps
        width = int(hidden) or 2 * latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))
        self.flows = nn.ModuleList(
            AffineAutoregressive(
                AutoRegressiveNN(latent_dim, [width], permutation=autoregressive_order(latent_dim, i)), stable=True
            )
            for i in range(steps)
        )

    def forward(self):
        # density direction: log p(z) runs each transform forward on z (its inverse is the draw)
        return dist.TransformedDistribution(
            dist.Normal(self.loc, self.scale).to_event(1), [f.inv for f in reversed(self.flows)]
        )


def autoregressive_order(dim: int, step: int) -> torch.Tensor:
    """The variable order of an autoregressive step: 0..d-1, reversed every other step."""
    order = torch.arange(dim)
    return order.flip(0) if step % 2 else order


@register_prior("vampprior")
class VampPrior(nn.Module):
    """The VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k), the family's own
    guide at K learned pseudo-inputs u_k. Needs an encoder ``x -> (loc, scale)``: a family calls
    :meth:`attach` with it (the VAE does), the prior keeps no copy of the encoder's parameters.
    Pseudo-inputs start as uniform noise in [0, 1] squeezed towards 0.5 and stay in [0, 1]."""

    needs_encoder = True

    def __init__(self, latent_dim: int, components: int = 500, data_shape=None, **_):
        super().__init__()
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ValueError(
                f"a VampPrior needs a whole number >= 1 of pseudo-inputs (--prior-components), got {components!r}"
            )
        if data_shape is None:
            raise ValueError(
                "a VampPrior is a mixture of the family's own guide: it needs a family that passes "
                "data_shape and attaches its encoder q(z|x) (a family with one Gaussian encoder of x "
                "that calls prior.attach(encoder))"
            )
        self.latent_dim, self.components = latent_dim, components
        self.data_shape = tuple(data_shape)
        self.pseudo_logits = nn.Parameter(0.1 * torch.randn(components, *self.data_shape))
        self._encoder = None

    def attach(self, encoder) -> None:
        """Use ``encoder`` (a callable ``x -> (loc, scale)``, not registered as a submodule)."""
        object.__setattr__(self, "_encoder", encoder)

    def pseudo_inputs(self) -> torch.Tensor:
        return torch.sigmoid(self.pseudo_logits)

    def forward(self):
        if self._encoder is None:
            raise ValueError(
                "the VampPrior has no encoder: a family must call prior.attach(encoder); use it with "
                "a family with an encoder q(z|x) that does"
            )
        loc, scale = self._encoder(self.pseudo_inputs())
        return DiagonalNormalMixture(torch.zeros(self.components, device=loc.device), loc, scale)


def check_prior(prior: nn.Module, latent_dim: int) -> None:
    """Raise a clear error (:class:`~pyro_vae.registry.ContractError` or ValueError, one line)
    unless ``prior()`` is a distribution over one ``latent_dim`` vector."""
    try:
        d = prior()
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's component (no forward, a bug in it): say where
        raise ContractError(
            f"prior {type(prior).__name__}() fails: {type(e).__name__}: "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}; forward() must take no "
            f"arguments and return a distribution over one latent vector"
        ) from None
    if not callable(getattr(d, "log_prob", None)) or not hasattr(d, "event_shape"):
        raise ContractError(
            f"prior {type(prior).__name__}() must return a distribution with log_prob, got {type(d).__name__}"
        )
    if tuple(d.event_shape) != (latent_dim,) or tuple(d.batch_shape) != ():
        raise ValueError(
            f"prior {type(prior).__name__}() returned batch_shape {tuple(d.batch_shape)} and "
            f"event_shape {tuple(d.event_shape)}; expected batch_shape () and event_shape "
            f"({latent_dim},). Wrap per-dimension distributions with .to_event(1)."
        )

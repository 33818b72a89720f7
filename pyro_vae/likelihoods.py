"""Likelihoods p(x|z).

A likelihood is an ``nn.Module`` that maps the decoder's output ``params`` (shape
``(..., *data_shape)``, one real number per data element) to a Pyro distribution whose
``event_shape`` is ``data_shape``. Then ``pyro.plate("data", B)`` covers exactly the
batch dimension and ``log_prob`` gives one number per image.

Interface (duck-typed; subclassing :class:`Likelihood` is convenient but optional):

* ``forward(params) -> distribution`` with ``event_dim == len(data_shape)``;
* ``mean(params) -> tensor``: E[x|z], used for reconstructions and pictures;
* ``check_data(x)`` (optional): raise ``ValueError`` if ``x`` lies outside the support.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from .registry import Registry

LIKELIHOODS = Registry("likelihood")
register_likelihood = LIKELIHOODS.register  # @register_likelihood("name")


def build_likelihood(name: str, data_shape, **kwargs) -> nn.Module:
    """Build a registered likelihood by name for data of shape ``data_shape``."""
    return LIKELIHOODS.build(name, data_shape, **kwargs)


def _describe(x: torch.Tensor) -> str:
    if x.numel() == 0:
        return "no values"
    return f"min {x.min().item():.4g}, max {x.max().item():.4g}"


class Likelihood(nn.Module):
    """Base class: stores ``data_shape`` and offers ``event_dim`` and default checks."""

    def __init__(self, data_shape, **_):
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)

    @property
    def event_dim(self) -> int:
        return len(self.data_shape)

    def check_data(self, x: torch.Tensor) -> None:
        if not torch.isfinite(x).all():
            raise ValueError(f"data contain NaN or Inf values; {type(self).__name__} needs finite data")


class BernoulliImage(dist.Independent):
    """Independent Bernoulli(logits) over the last ``reinterpreted_batch_ndims`` dims, whose
    ``log_prob`` sums them as ``<x, logits> - sum softplus(logits)`` (the same number as the
    per-element Bernoulli log-density summed, in about half the passes over the logits: this is
    most of the evaluator's work at k = 5000 samples per image)."""

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        logits = self.base_dist.logits
        n = self.reinterpreted_batch_ndims
        flat_logits = logits.reshape(*logits.shape[: logits.dim() - n], -1)
        flat_value = value.reshape(*value.shape[: value.dim() - n], -1).to(flat_logits.dtype)
        return torch.linalg.vecdot(flat_logits, flat_value) - F.softplus(flat_logits).sum(-1)


@register_likelihood("bernoulli")
class BernoulliLikelihood(Likelihood):
    """x_i ~ Bernoulli(sigmoid(params_i)): binary data only (use --binarize for grey images)."""

    def forward(self, params):
        return BernoulliImage(dist.Bernoulli(logits=params), self.event_dim)

    def mean(self, params):
        return torch.sigmoid(params)

    def check_data(self, x):
        super().check_data(x)
        if not ((x == 0) | (x == 1)).all():
            raise ValueError(
                f"the Bernoulli likelihood needs binary data (0 or 1) but the data have other "
                f"values ({_describe(x)}). Binarize grey images (--binarize static or dynamic), "
                f"or use --likelihood continuous_bernoulli for values in [0, 1]."
            )


@register_likelihood("continuous_bernoulli")
class ContinuousBernoulliLikelihood(Likelihood):
    """x_i ~ ContinuousBernoulli(sigmoid(params_i)) on [0, 1] (Loaiza-Ganem & Cunningham 2019)."""

    def forward(self, params):
        # clamp keeps the normalising constant away from its numerically hard region.
        return dist.ContinuousBernoulli(logits=params.clamp(-15.0, 15.0)).to_event(self.event_dim)

    def mean(self, params):
        return dist.ContinuousBernoulli(logits=params.clamp(-15.0, 15.0)).mean

    def check_data(self, x):
        super().check_data(x)
        if x.min() < 0 or x.max() > 1:
            hint = ("Scale 8-bit pixels by 1/255." if x.min() >= 0 else
                    "Rescale the data to [0, 1] (standardized data?), or use --likelihood gaussian for real values.")
            raise ValueError(
                f"the continuous Bernoulli likelihood needs values in [0, 1] but the data have "
                f"{_describe(x)}. {hint}"
            )


class _LocationScale(Likelihood):
    """x_i ~ Family(params_i, scale) with a fixed scale or one learned (shared) scale."""

    family = None

    def __init__(self, data_shape, scale: float = 0.1, learn_scale: bool = False, **_):
        super().__init__(data_shape)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
            raise ValueError(f"{type(self).__name__} scale (--likelihood-scale) must be a positive finite number (> 0), got "
                             f"{scale!r}")
        self.learn_scale = learn_scale
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def forward(self, params):
        scale = self.log_scale.exp().expand(params.shape)
        return self.family(params, scale).to_event(self.event_dim)

    def mean(self, params):
        return params


@register_likelihood("gaussian")
class GaussianLikelihood(_LocationScale):
    """x_i ~ Normal(params_i, sigma); sigma fixed (``scale``) or learned (``learn_scale=True``)."""

    family = dist.Normal


@register_likelihood("laplace")
class LaplaceLikelihood(_LocationScale):
    """x_i ~ Laplace(params_i, b); b fixed (``scale``) or learned (``learn_scale=True``)."""

    family = dist.Laplace

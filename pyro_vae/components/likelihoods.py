"""Likelihoods p(x|z).

A likelihood is an ``nn.Module`` that maps the decoder's output ``params`` (shape
``(..., *data_shape)``, one real number per data element) to a Pyro distribution whose
``event_shape`` is ``data_shape``. Then ``pyro.plate("data", B)`` covers exactly the
batch dimension and ``log_prob`` gives one number per image.

Interface (duck-typed; subclassing :class:`Likelihood` is convenient but optional):

* ``forward(params) -> distribution`` with ``event_dim == len(data_shape)``;
* ``mean(params) -> tensor``: E[x|z], used for reconstructions and pictures;
* ``check_data(x)`` (optional): raise ``ValueError`` if ``x`` lies outside the support;
* ``missing_values`` (optional, default False): True when NaN in ``x`` marks a missing entry that
  ``log_prob`` leaves out (the tabular likelihood, :mod:`pyro_vae.components.tabular`); training and
  evaluation then accept NaN in the data (the library's MLP encoder sees it as 0).
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyro_vae.contract import ContractError
from pyro_vae.registry import Registry, check_component_class

LIKELIHOODS = Registry("likelihood", check=lambda cls: check_component_class(cls, "likelihood", ("forward", "mean")))
register_likelihood = LIKELIHOODS.register  # @register_likelihood("name"): refused at once if it lacks a part


def build_likelihood(name: str, data_shape, **kwargs) -> nn.Module:
    """Build a registered likelihood by name for data of shape ``data_shape`` (its options
    checked against its constructor's, and the result by :func:`check_likelihood`)."""
    likelihood = LIKELIHOODS.build(name, data_shape, **kwargs)
    check_likelihood(likelihood, data_shape)
    return likelihood


def check_likelihood(likelihood, data_shape) -> None:
    """Raise :class:`~pyro_vae.registry.ContractError` (one line) unless ``likelihood(params)`` on
    decoder outputs ``params`` of shape ``(1, *data_shape)`` is a distribution with ``log_prob``
    and ``sample`` whose event is one data point, and ``likelihood.mean(params)`` is a tensor of
    that shape: what the programs, the evaluator and the figures use."""
    name = type(likelihood).__name__
    shape = tuple(int(s) for s in data_shape)
    params = torch.zeros(1, *shape)
    try:
        with torch.no_grad():
            d = likelihood(params)
            mean = likelihood.mean(params) if callable(getattr(likelihood, "mean", None)) else None
    except Exception as e:  # noqa: BLE001 - the user's component: say where it failed
        raise ContractError(
            f"likelihood {name} fails on decoder outputs of shape {(1, *shape)}: {type(e).__name__}: "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        ) from None
    if not all(callable(getattr(d, a, None)) for a in ("log_prob", "sample")) or not hasattr(d, "event_shape"):
        raise ContractError(
            f"likelihood {name}(params) returned a {type(d).__name__}, not a distribution with "
            f"log_prob and sample: return one over the data point, e.g. "
            f"dist.Normal(params, 0.1).to_event({len(shape)})"
        )
    if tuple(d.event_shape) != shape or tuple(d.batch_shape) != (1,):
        raise ContractError(
            f"likelihood {name}(params) for params {(1, *shape)} returned batch_shape "
            f"{tuple(d.batch_shape)} and event_shape {tuple(d.event_shape)}; expected (1,) and "
            f"{shape}: wrap per-element distributions with .to_event({len(shape)})"
        )
    if not (torch.is_tensor(mean) and tuple(mean.shape) == (1, *shape)):
        raise ContractError(
            f"likelihood {name}.mean(params) must return E[x|z], a tensor of the shape of params "
            f"{(1, *shape)}; got {type(mean).__name__}" + (f" {tuple(mean.shape)}" if torch.is_tensor(mean) else "")
        )


def _describe(x: torch.Tensor) -> str:
    if x.numel() == 0:
        return "no values"
    return f"min {x.min().item():.4g}, max {x.max().item():.4g}"


class Likelihood(nn.Module):
    """Base class: stores ``data_shape`` and offers ``event_dim`` and default checks."""

    binary_data = False  # True: a model of 0/1 data; TrainConfig.binarize="auto" binarizes grey data for it
    missing_values = False  # True: NaN in x is a missing entry it leaves out; the data checks then accept NaN

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
    """x_i ~ Bernoulli(sigmoid(params_i)): binary data only (grey images are binarized for it)."""

    binary_data = True

    def forward(self, params):
        return BernoulliImage(dist.Bernoulli(logits=params), self.event_dim)

    def mean(self, params):
        return torch.sigmoid(params)

    def check_data(self, x):
        super().check_data(x)
        if not ((x == 0) | (x == 1)).all():
            raise ValueError(
                f"the Bernoulli likelihood needs binary data (0 or 1) but the data have other "
                f"values ({_describe(x)}). Binarize grey images (binarize='static' or "
                f"binarize='dynamic'), or use likelihood='continuous_bernoulli' for values in [0, 1]."
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
            hint = (
                "Scale 8-bit pixels by 1/255."
                if x.min() >= 0
                else "Rescale the data to [0, 1] (standardized data?), or use likelihood='gaussian' for real values."
            )
            raise ValueError(
                f"the continuous Bernoulli likelihood needs values in [0, 1] but the data have {_describe(x)}. {hint}"
            )


class _LocationScale(Likelihood):
    """x_i ~ Family(params_i, scale) with a fixed scale or one learned (shared) scale."""

    family = None

    def __init__(self, data_shape, scale: float = 0.1, learn_scale: bool = False, **_):
        super().__init__(data_shape)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
            raise ValueError(
                f"{type(self).__name__} scale (option likelihood_scale) must be a positive finite number (> 0), got "
                f"{scale!r}"
            )
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

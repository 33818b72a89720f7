"""Normal distributions that compute the same log-densities in fewer tensor operations.

Both are ``pyro.distributions.Normal`` (same sampling, same random stream, same ``expand``,
``to_event``, KL registrations and checks); only ``log_prob`` takes a shorter route where one
exists. They are what the library's priors and guides build, because a training step of a small
network is dominated by how many (batch x latent) operations run forward and backward.

- :class:`UnitNormal`: N(0, 1). ``log_prob(z) = -z^2/2 - log sqrt(2 pi)`` (three operations
  instead of the nine of the general formula).
- :class:`ReparamNormal`: N(loc, scale) that remembers its last ``rsample`` draw
  ``z = loc + scale * eps``. At that draw, ``log_prob(z) = -eps^2/2 - log scale - log sqrt(2 pi)``.
  As a function of ``(loc, scale)`` along the draw (eps fixed) this is *the same function* as the
  general formula, so its value and its total gradient are the same: the general formula's
  gradient through ``z`` cancels its direct gradient in ``loc`` and leaves ``-eps^2/scale``
  against ``+eps^2/scale`` in ``scale``. (Any other value, or a draw made by another instance,
  takes the general formula; estimators that need the path gradient alone, such as
  sticking-the-landing, build their own stopped distribution and so never meet the shortcut.)
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch.distributions.utils import _standard_normal

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class UnitNormal(dist.Normal):
    """N(0, 1) elementwise (``loc`` zeros and ``scale`` ones, as given), with a shorter ``log_prob``."""

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return -0.5 * value.square() - LOG_SQRT_2PI


class ReparamNormal(dist.Normal):
    """N(loc, scale) whose ``log_prob`` at its own last ``rsample`` draw is computed from the
    standard-normal noise of that draw (see the module docstring: same value, same gradient)."""

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        eps = _standard_normal(shape, dtype=self.loc.dtype, device=self.loc.device)
        z = self.loc + eps * self.scale
        self._draw = (z, eps)
        return z

    def log_prob(self, value):
        draw = self.__dict__.get("_draw")
        if draw is None or draw[0] is not value:
            return super().log_prob(value)
        if self._validate_args:
            self._validate_sample(value)
        return -0.5 * draw[1].square() - self.scale.log() - LOG_SQRT_2PI


__all__ = ["UnitNormal", "ReparamNormal", "LOG_SQRT_2PI"]

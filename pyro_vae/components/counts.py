"""Likelihoods for counts: Poisson, negative binomial and zero-inflated negative binomial.

Each maps the decoder's output to a distribution over one data point of non-negative whole
numbers (a cell's gene counts, say), one independent count per element. The decoder's output
``params`` (shape ``(..., *data_shape)``) is the **log of the mean**, log mu: a family that
models a size factor (the count VAE of docs/counts.md) adds log library size to log
proportions and passes the sum; a plain VAE passes its decoder's output as it is.

    poisson:  x ~ Poisson(mu)                                      Var x = mu
    nb:       x ~ NB(mu, theta),  theta = exp(log_theta) per feature  Var x = mu + mu^2 / theta
    zinb:     x ~ pi delta_0 + (1 - pi) NB(mu, theta),  pi = sigmoid(gate_logits) per feature

NB(mu, theta) is the gamma-Poisson mixture of scVI (Lopez et al. 2018): x ~ Poisson(lambda),
lambda ~ Gamma(shape theta, rate theta / mu), so

    log NB(x; mu, theta) = lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
                           + theta log(theta / (theta + mu)) + x log(mu / (theta + mu)),

which is torch's ``NegativeBinomial(total_count=theta, logits=log mu - log theta)`` and scipy's
``nbinom(n=theta, p=theta / (theta + mu))``. The dispersion theta is learned, one per feature
(scVI's gene-wise dispersion); small theta means much extra-Poisson variance, theta -> inf is
Poisson. The zero-inflation gate pi is learned per feature too (scVI's decoder gives one per
cell and gene; a plain decoder has one output per element, the mean).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.components.likelihoods import Likelihood, register_likelihood

GATE_INIT = -2.0  # zinb's initial gate logit: pi = 0.12, so training starts close to the NB


def count_problem(x: torch.Tensor) -> str | None:
    """None when every value of ``x`` is a whole number >= 0; else one line naming the first
    value that is not, its index, and how many there are."""
    bad = (x < 0) | (x != x.floor())
    if not bad.any():
        return None
    where = tuple(int(i) for i in bad.nonzero()[0])
    value = x[where].item()
    count = int(bad.sum())
    more = f" ({count} such values)" if count > 1 else ""
    scaled = x.min() >= 0 and x.max() <= 1 and (x * 255 == (x * 255).round()).all()
    fix = (
        "8-bit values are read as images and divided by 255: store counts as wider integers (int32) or floats"
        if scaled
        else "pass the raw counts, not normalized, log-transformed or centred values"
    )
    return f"count data must be whole numbers >= 0; found {value:g} at index {where}{more}: {fix}"


class CountLikelihood(Likelihood):
    """Base class of the count likelihoods: ``params`` is log mu, the data are whole numbers >= 0."""

    count_data = True  # a likelihood over non-negative integers (the count VAE family asks for one)

    def check_data(self, x):
        super().check_data(x)
        problem = count_problem(x)
        if problem is not None:
            raise ValueError(problem)


@register_likelihood("poisson")
class PoissonLikelihood(CountLikelihood):
    """x_i ~ Poisson(exp(params_i)): the variance equals the mean."""

    def forward(self, params):
        return dist.Poisson(params.exp()).to_event(self.event_dim)

    def mean(self, params):
        return params.exp()


@register_likelihood("nb")
class NegativeBinomialLikelihood(CountLikelihood):
    """x_i ~ NB(mu_i = exp(params_i), theta_i): a learned dispersion theta per feature
    (``log_theta``, shape ``data_shape``, starting at theta = 1)."""

    def __init__(self, data_shape, **_):
        super().__init__(data_shape)
        self.log_theta = nn.Parameter(torch.zeros(self.data_shape))

    @property
    def dispersion(self) -> torch.Tensor:
        """theta per feature, ``data_shape``: Var x = mu + mu^2 / theta."""
        return self.log_theta.exp()

    def nb(self, params):
        """NB(mu = exp(params), theta) per element (no event dims)."""
        return dist.NegativeBinomial(total_count=self.dispersion, logits=params - self.log_theta)

    def forward(self, params):
        return self.nb(params).to_event(self.event_dim)

    def mean(self, params):
        return params.exp()


@register_likelihood("zinb")
class ZeroInflatedNBLikelihood(NegativeBinomialLikelihood):
    """x_i ~ pi_i delta_0 + (1 - pi_i) NB(exp(params_i), theta_i): the NB with extra zeros, a
    learned gate pi = sigmoid(``gate_logits``) per feature (starting at sigmoid(-2) = 0.12)."""

    def __init__(self, data_shape, **_):
        super().__init__(data_shape)
        self.gate_logits = nn.Parameter(torch.full(self.data_shape, GATE_INIT))

    def forward(self, params):
        # pyro's gate_logits form sums the zero's two routes in log space: log(pi + (1 - pi) NB(0))
        return dist.ZeroInflatedNegativeBinomial(
            total_count=self.dispersion, logits=params - self.log_theta, gate_logits=self.gate_logits
        ).to_event(self.event_dim)

    def mean(self, params):
        return torch.sigmoid(-self.gate_logits) * params.exp()


__all__ = [
    "CountLikelihood",
    "PoissonLikelihood",
    "NegativeBinomialLikelihood",
    "ZeroInflatedNBLikelihood",
    "count_problem",
]

"""Likelihoods of tables: a categorical likelihood for one-hot columns, and a mixed-type
likelihood over a row of real, positive, count, categorical and binary columns with missing
entries.

Both keep the likelihood contract (:mod:`pyro_vae.components.likelihoods`): the decoder gives
one real number per entry of a row, ``params`` of the shape of ``x``. A row is laid out as
:mod:`pyro_vae.data.tables` lays it out (one entry per column, K one-hot entries for a
categorical column of K levels), and each column reads its own entries of ``params``:

==============  ==============================================================  =================
kind            p(x_j | z)                                                      E[x_j | z]
==============  ==============================================================  =================
real            Normal(mu, s_j),  mu = params_j                                 mu
positive        LogNormal(mu, s_j)                                              exp(mu + s_j^2/2)
count           Poisson(exp(mu)), or NegativeBinomial with mean exp(mu) and     exp(mu)
                learned size r_j (``count="negative_binomial"``)
categorical     Categorical(softmax(params over its K entries))                 the probabilities
binary          Bernoulli(sigmoid(mu))                                          sigmoid(mu)
==============  ==============================================================  =================

The spreads s_j = ``min_scale`` + softplus(a_j) and sizes r_j are learned parameters of the
likelihood, one per column (the decoder's output holds the means only: the contract gives it
one number per entry).

**Missing entries.** NaN in ``x`` marks a missing cell (all K entries of a categorical one):
its term of log p(x|z) is 0, so

    log p(x_obs | z) = sum over observed columns j of log p(x_j | z),

the likelihood of the observed part (HI-VAE, Nazabal et al. 2020, eq. 7). The likelihood
declares ``missing_values = True``, which lets training and evaluation accept NaN in the data;
the library's MLP encoder sees a missing entry as 0 (HI-VAE's input drop-out: 0 is a real
column's training mean, and an all-zero one-hot block no level). :func:`impute` fills the
missing entries of rows with the conditional mean (real, positive, count) or mode (categorical,
binary) of p(x_missing | z) at z = the mean of q(z | x_obs) (a count's mean rounded).
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch import nn
from torch.distributions import constraints
from torch.nn import functional as F

from pyro_vae.components.likelihoods import Likelihood, register_likelihood
from pyro_vae.contract import Codes, require, traits
from pyro_vae.data.tables import parse_schema, row_width

COUNTS = ("poisson", "negative_binomial")


# ---------------------------------------------------------------------- one-hot columns
class OneHotColumns(dist.Independent):
    """Independent one-hot categorical columns: the last dim holds one column's K levels, the
    ``reinterpreted_batch_ndims`` dims before it are more columns. ``log_prob(x) = sum x *
    log softmax(logits)``: the categorical log-probability of one-hot ``x``, in one pass."""

    def log_prob(self, value):
        n = self.reinterpreted_batch_ndims + 1
        logp = self.base_dist.logits  # normalized by torch: log softmax
        terms = value.to(logp.dtype) * logp
        return terms.reshape(*terms.shape[: terms.dim() - n], -1).sum(-1)


def _describe_bad(x: torch.Tensor, bad: torch.Tensor) -> str:
    first = bad.reshape(x.shape[0], -1).any(1).nonzero()[0, 0].item() if x.dim() > 1 else 0
    values = x[bad].unique()[:5].tolist()
    return f"{int(bad.sum())} entries (the first in data point {first}; values such as {values})"


@register_likelihood("categorical")
class CategoricalLikelihood(Likelihood):
    """x ~ Categorical(softmax(params)) over the last data dimension: data of shape ``(..., K)``,
    each row of the last dim a one-hot vector (one column of K levels). Integer codes become
    one-hot rows with :func:`pyro_vae.data.tables.one_hot`."""

    def forward(self, params):
        return OneHotColumns(dist.OneHotCategorical(logits=params), self.event_dim - 1)

    def mean(self, params):
        return torch.softmax(params, -1)

    def check_data(self, x):
        super().check_data(x)
        k = self.data_shape[-1]
        if k < 2:
            raise ValueError(
                f"the categorical likelihood needs at least 2 levels in the last data dimension, got "
                f"data shape {self.data_shape}"
            )
        not_binary = (x != 0) & (x != 1)
        if not_binary.any() or not (x.sum(-1) == 1).all():
            raise ValueError(
                f"the categorical likelihood needs one-hot rows over the last dimension (K = {k} levels), but "
                + (
                    f"{_describe_bad(x, not_binary)} are not 0 or 1"
                    if not_binary.any()
                    else f"{int((x.sum(-1) != 1).sum())} rows do not hold exactly one 1"
                )
                + "; integer codes: pyro_vae.data.tables.one_hot(codes, K)"
            )


# ---------------------------------------------------------------------- a table's row
class TableRow(TorchDistribution):
    """p(x | z) of table rows: ``batch_shape`` the leading dims of ``params``, ``event_shape``
    ``(D,)``. ``log_prob`` sums :meth:`column_log_prob` over the columns, missing ones giving 0."""

    arg_constraints = {}
    support = constraints.real_vector  # a row mixes kinds; TabularLikelihood.check_data checks each
    has_rsample = False

    def __init__(self, likelihood: "TabularLikelihood", params: torch.Tensor):
        self.lik, self.params = likelihood, params
        super().__init__(params.shape[:-1], params.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        return TableRow(self.lik, self.params.expand(*batch_shape, self.params.shape[-1]))

    def _parts(self):
        """``(kind, entries, columns, p(x_entries | z))`` of each scalar kind present (the
        categorical blocks are read from ``lik.blocks``)."""
        lik, p = self.lik, self.params
        out = []
        for kind, entries, cols in lik.groups:
            mu = p[..., entries]
            if kind == "real":
                d = dist.Normal(mu, lik.spread(kind))
            elif kind == "positive":
                d = dist.LogNormal(mu, lik.spread(kind))
            elif kind == "binary":
                d = dist.Bernoulli(logits=mu)
            elif lik.count == "poisson":
                d = dist.Poisson(mu.clamp(max=30.0).exp())
            else:
                size = lik.spread(kind)  # NB(r, p) with mean r p / (1 - p) = exp(mu)
                d = dist.NegativeBinomial(total_count=size, logits=mu - size.log())
            out.append((kind, entries, cols, d))
        return out

    def column_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log p(x_j | z) of every column, ``(..., columns)``; 0 for a missing (NaN) column. Missing
        entries are replaced by a value in the support before any density is computed, so no NaN
        reaches a gradient."""
        value = value.to(self.params.dtype)
        terms = []
        for kind, entries, _, d in self._parts():
            x = value[..., entries]
            seen = ~torch.isnan(x)
            safe = torch.where(seen, x, torch.ones_like(x) if kind == "positive" else torch.zeros_like(x))
            terms.append(torch.where(seen, d.log_prob(safe), torch.zeros_like(safe)))
        for start, k, _ in self.lik.blocks:  # NaN one-hot rows give 0: nan_to_num makes them all zero
            logp = torch.log_softmax(self.params[..., start : start + k], -1)
            terms.append((value[..., start : start + k].nan_to_num(0.0) * logp).sum(-1, keepdim=True))
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        return torch.cat([t.expand(*shape, t.shape[-1]) for t in terms], -1)[..., self.lik.column_order]

    def log_prob(self, value):
        return self.column_log_prob(value).sum(-1)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            out = self.params.new_empty(*sample_shape, *self.params.shape)
            for _, entries, _, d in self._parts():
                out[..., entries] = d.sample(sample_shape).to(out.dtype)
            for start, k, _ in self.lik.blocks:
                logits = self.params[..., start : start + k]
                out[..., start : start + k] = dist.OneHotCategorical(logits=logits).sample(sample_shape)
            return out

    @property
    def mean(self):
        return self.lik.mean(self.params)


@register_likelihood("tabular")
class TabularLikelihood(Likelihood):
    """p(x|z) of a table's rows with a column ``schema`` (see the module's docstring; the schema as
    :func:`pyro_vae.data.tables.parse_schema` reads it, e.g. ``TableSplits.schema``). Missing
    entries (NaN) are left out of the likelihood (``missing_values = True``).

    Args:
        data_shape: ``(D,)``, D the row's entries (the columns' widths summed).
        schema: the columns, in the row's order.
        count: ``poisson`` or ``negative_binomial`` for the count columns.
        min_scale: the smallest spread of a real or positive column (its density stays bounded).
    """

    missing_values = True  # NaN in x is a missing entry: training and evaluation accept it

    def __init__(self, data_shape, schema=None, count: str = "poisson", min_scale: float = 1e-3, **_):
        super().__init__(data_shape)
        if schema is None:
            raise ValueError(
                "the tabular likelihood needs the table's schema (option schema): its columns as "
                "name:kind[:levels]; a data set read by pyro_vae.data.tables carries it (.schema)"
            )
        if count not in COUNTS:
            raise ValueError(f"tabular likelihood option count must be one of {', '.join(COUNTS)}, got {count!r}")
        if isinstance(min_scale, bool) or not isinstance(min_scale, (int, float)) or not 0 < min_scale < math.inf:
            raise ValueError(f"tabular likelihood option min_scale must be a positive number, got {min_scale!r}")
        self.columns = parse_schema(schema)
        width = row_width(self.columns)
        if len(self.data_shape) != 1 or self.data_shape[0] != width:
            raise ValueError(
                f"the schema's {len(self.columns)} columns take {width} entries per row (a categorical "
                f"column one per level), but the data have shape {self.data_shape}: a table's rows "
                f"need data of shape ({width},)"
            )
        self.count, self.min_scale = count, float(min_scale)
        self._layout()
        learned = ("real", "positive") + (("count",) if count == "negative_binomial" else ())
        start = math.log(math.expm1(1.0))  # spread 1 (a standardized column's sd), or size 1, at first
        self.raw = nn.ParameterDict(
            {kind: nn.Parameter(torch.full((len(cols),), start)) for kind, cols in self.kinds if kind in learned}
        )

    def _layout(self):
        """The row's layout: each scalar kind's entries (a buffer ``entries_KIND``) and columns,
        the categorical blocks ``(start, K, column)``, and ``column_order``, which puts the
        per-kind terms back in the columns' order."""
        at, entries, self.blocks = 0, {}, []
        for j, c in enumerate(self.columns):
            if c.kind == "categorical":
                self.blocks.append((at, c.width, j))
            else:
                entries.setdefault(c.kind, []).append((at, j))
            at += c.width
        self.kinds = [(kind, [j for _, j in pairs]) for kind, pairs in entries.items()]
        for kind, pairs in entries.items():
            self.register_buffer(f"entries_{kind}", torch.tensor([e for e, _ in pairs]), persistent=False)
        order = [j for _, cols in self.kinds for j in cols] + [j for *_, j in self.blocks]
        self.register_buffer("column_order", torch.tensor(order).argsort(), persistent=False)

    @property
    def groups(self) -> list:
        """``(kind, entries, columns)`` of each scalar kind present: its entries of the row (an
        index tensor on the likelihood's device) and its columns' positions in the schema."""
        return [(kind, getattr(self, f"entries_{kind}"), cols) for kind, cols in self.kinds]

    def spread(self, kind: str) -> torch.Tensor:
        """The learned per-column spread s_j of a real or positive column (its size r_j for a
        negative-binomial count column)."""
        return self.min_scale + F.softplus(self.raw[kind])

    def forward(self, params):
        return TableRow(self, params)

    def mean(self, params):
        """E[x|z] entry by entry (the table in the module's docstring)."""
        out = params.clone()
        for kind, entries, _ in self.groups:
            mu = params[..., entries]
            if kind == "positive":
                out[..., entries] = (mu + self.spread(kind) ** 2 / 2).exp()
            elif kind == "count":
                out[..., entries] = mu.clamp(max=30.0).exp()
            elif kind == "binary":
                out[..., entries] = torch.sigmoid(mu)
        for start, k, _ in self.blocks:
            out[..., start : start + k] = torch.softmax(params[..., start : start + k], -1)
        return out

    def mode_fill(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """``x`` with every missing (NaN) entry filled from ``mean`` (E[x|z], shaped like ``x``): the
        mean for real and positive columns (rounded for count ones), the most probable level for
        categorical and binary ones; observed entries unchanged."""
        fill = mean.clone()
        for kind, entries, _ in self.groups:
            if kind == "binary":
                fill[..., entries] = (mean[..., entries] > 0.5).to(mean.dtype)
            elif kind == "count":  # a whole number, so the filled table is a table of counts
                fill[..., entries] = mean[..., entries].round()
        for start, k, _ in self.blocks:
            fill[..., start : start + k] = F.one_hot(mean[..., start : start + k].argmax(-1), k).to(mean.dtype)
        return torch.where(torch.isnan(x), fill, x)

    def check_data(self, x):
        """Each column's values in its support; NaN (missing) allowed, a categorical column's K
        entries all missing or none."""
        if torch.isinf(x).any():
            raise ValueError(f"data contain {int(torch.isinf(x).sum())} infinite values; a missing cell is NaN")
        for kind, entries, cols in self.groups:
            v = x[..., entries.to(x.device)]
            seen = ~torch.isnan(v)
            bad = {
                "real": torch.zeros_like(seen),
                "positive": v <= 0,
                "count": (v < 0) | (v != v.round()),
                "binary": (v != 0) & (v != 1),
            }[kind] & seen
            if bad.any():
                col = self.columns[cols[int(bad.reshape(-1, len(cols)).any(0).nonzero()[0, 0])]]
                need = {"positive": "values > 0", "count": "whole numbers >= 0", "binary": "0 or 1"}[kind]
                raise ValueError(
                    f"{kind} column {col.name!r} needs {need} (or NaN: missing), but the data have "
                    f"{_describe_bad(v, bad)}"
                )
        for start, k, j in self.blocks:
            v = x[..., start : start + k]
            missing = torch.isnan(v)
            partly = missing.any(-1) & ~missing.all(-1)
            not_one_hot = ~missing.all(-1) & (((v != 0) & (v != 1)).any(-1) | (v.nan_to_num(0).sum(-1) != 1))
            if (partly | not_one_hot).any():
                row = int((partly | not_one_hot).reshape(-1).nonzero()[0, 0])
                raise ValueError(
                    f"categorical column {self.columns[j].name!r} needs one-hot rows of its {k} levels "
                    f"(all NaN: missing), but row {row} has {v.reshape(-1, k)[row].tolist()}"
                )


# ---------------------------------------------------------------------- a family's imputations
@torch.no_grad()
def impute(family, x: torch.Tensor) -> torch.Tensor:
    """Rows ``x`` (``(N, D)``, NaN where missing) with their missing entries filled by ``family``:
    z = the mean of q(z | x_obs), then the conditional mean (real, positive columns; rounded for
    counts) or mode (categorical, binary) of p(x_missing | z). Observed entries are returned
    unchanged."""
    require(family, Codes, "impute missing entries", "use a family with encode and decode")
    likelihood = traits(family).likelihood
    if not callable(getattr(likelihood, "mode_fill", None)):
        raise ValueError(
            f"imputing needs a likelihood that models missing entries (the tabular one), not "
            f"{type(likelihood).__name__}"
        )
    loc, _ = family.encode(x)
    return likelihood.mode_fill(x, family.decode(loc))


__all__ = ["CategoricalLikelihood", "TabularLikelihood", "TableRow", "OneHotColumns", "impute", "COUNTS"]

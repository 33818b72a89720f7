"""Figures for data whose points are vectors (a data shape of one dimension: a table's rows,
features): no image grid, but one panel per column.

* :func:`plot_feature_reconstructions`: each column observed against its reconstruction E[x|z]
  at z = the mean of q(z|x) (a scatter for a number, the levels' confusion counts for a
  category);
* :func:`plot_feature_log_lik`: the mean log p(x_j | z) of each column at that z;
* :func:`plot_feature_samples`: each column's distribution in the data and in draws x ~ p(x|z),
  z ~ p(z).

A column is what the likelihood says (a table's schema: :class:`pyro_vae.data.tables.Column`),
else each entry is one real (or, for a likelihood of binary data, binary) column. Values are in
the model's units (a table's real columns standardized). Missing entries (NaN) are left out.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch

from pyro_vae.contract import traits
from pyro_vae.data.tables import Column
from pyro_vae.drawing import save

MAX_COLUMNS = 16  # panels drawn at most (the first columns)


def is_vector(data_shape) -> bool:
    """Whether data of ``data_shape`` are vectors (one dimension), drawn by column."""
    return data_shape is not None and len(tuple(data_shape)) == 1


def columns_of(likelihood, width: int) -> list:
    """The columns of rows of ``width`` entries: a table likelihood's schema, else one column per
    entry, ``x0``, ``x1``, ... (binary for a likelihood of binary data, real otherwise)."""
    columns = getattr(likelihood, "columns", None)
    if columns:
        return list(columns)
    kind = "binary" if getattr(likelihood, "binary_data", False) else "real"
    return [Column(f"x{i}", kind) for i in range(width)]


def feature_log_prob(likelihood, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x_j | z) per column, ``(N, columns)``: a table's ``column_log_prob`` (0 where
    missing), else the per-entry terms of an ``Independent`` distribution's base; NaN where a
    likelihood's density does not split by column."""
    d = likelihood(params)
    if callable(getattr(d, "column_log_prob", None)):
        return d.column_log_prob(x)
    base = getattr(d, "base_dist", None)
    if base is not None and tuple(base.event_shape) == ():
        return base.log_prob(x).reshape(x.shape[0], -1)
    return torch.full((x.shape[0], x[0].numel()), float("nan"))


def _panels(n: int, width: float = 3.0, height: float = 2.7):
    shown = min(n, MAX_COLUMNS)
    ncol = min(shown, 4)
    nrow = math.ceil(shown / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(width * ncol + 0.4, height * nrow + 0.8), squeeze=False)
    for ax in axes.reshape(-1)[shown:]:
        ax.axis("off")
    return fig, axes.reshape(-1)[:shown]


def _blocks(columns):
    """(column, start entry) of each column."""
    at = 0
    for c in columns:
        yield c, at
        at += c.width


def _codes(values: np.ndarray, column: Column) -> np.ndarray:
    """The level codes of a categorical block (argmax) or a binary entry (> 0.5); -1 where missing."""
    if column.kind == "categorical":
        missing = np.isnan(values).any(-1)
        return np.where(missing, -1, np.nan_to_num(values).argmax(-1))
    return np.where(np.isnan(values[:, 0]), -1, (values[:, 0] > 0.5).astype(int))


def _levels(column: Column) -> list:
    return list(column.levels) if column.levels else ["0", "1"]


def _confusion(ax, observed: np.ndarray, predicted: np.ndarray, levels: list) -> None:
    k = len(levels)
    seen = observed >= 0
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (observed[seen], predicted[seen]), 1)
    ax.imshow(counts, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if counts[i, j] > counts.max() / 2 else "black",
            )
    names = [str(v)[:10] for v in levels]
    ax.set_xticks(range(k), names, fontsize=7, rotation=30 if k > 3 else 0)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted (most probable)", fontsize=8)
    ax.set_ylabel("observed", fontsize=8)
    accuracy = (observed[seen] == predicted[seen]).mean() if seen.any() else float("nan")
    return accuracy


@torch.no_grad()
def plot_feature_reconstructions(module, x: torch.Tensor, path, split: str = "test", max_points: int = 2000) -> Path:
    """Each column of ``x`` observed against its reconstruction E[x|z] at z = the mean of q(z|x):
    numbers as a scatter with the line y = x and the RMSE, categories as confusion counts of the
    observed level against the most probable one, with the accuracy."""
    x = x[:max_points]
    rec = module.reconstruct(x).reshape(x.shape).float().cpu().numpy()
    obs = x.float().cpu().numpy()
    columns = columns_of(traits(module).likelihood, obs.shape[1])
    fig, axes = _panels(len(columns))
    for ax, (c, at) in zip(axes, _blocks(columns)):
        if c.kind in ("categorical", "binary"):
            acc = _confusion(ax, _codes(obs[:, at : at + c.width], c), _codes(rec[:, at : at + c.width], c), _levels(c))
            ax.set_title(f"{c.name}: accuracy {acc:.2f}", fontsize=9)
            continue
        o, p = obs[:, at], rec[:, at]
        seen = ~np.isnan(o)
        ax.scatter(o[seen], p[seen], s=8, alpha=0.6, linewidths=0)
        if seen.any():
            lo, hi = min(o[seen].min(), p[seen].min()), max(o[seen].max(), p[seen].max())
            ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
            rmse = float(np.sqrt(np.mean((o[seen] - p[seen]) ** 2)))
            ax.set_title(f"{c.name} ({c.kind}): RMSE {rmse:.3g}", fontsize=9)
        ax.set_xlabel("observed", fontsize=8)
        ax.set_ylabel("E[x|z]", fontsize=8)
        ax.grid(True, alpha=0.3)
    more = f"; the first {MAX_COLUMNS} of {len(columns)} columns" if len(columns) > MAX_COLUMNS else ""
    fig.suptitle(
        f"Reconstructions of {obs.shape[0]} {split} data points, column by column: observed against "
        f"E[x | z = mean of q(z|x)]{more}",
        fontsize=10,
    )
    fig.tight_layout()
    return save(fig, path)


@torch.no_grad()
def plot_feature_log_lik(module, x: torch.Tensor, path, split: str = "test", max_points: int = 2000) -> Path:
    """The mean log p(x_j | z) of each column (± its standard error over the data points where it
    is observed) at z = the mean of q(z|x): which columns the model explains well."""
    x = x[:max_points]
    likelihood = traits(module).likelihood
    loc, _ = module.encode(x)
    per = feature_log_prob(likelihood, module.decoder(loc), x).float().cpu().numpy()
    obs = x.float().cpu().numpy()
    columns = columns_of(likelihood, obs.shape[1])[: per.shape[1]]
    names, means, ses = [], [], []
    for j, (c, at) in enumerate(_blocks(columns)):
        seen = ~np.isnan(obs[:, at : at + c.width]).any(-1)
        v = per[seen, j]
        names.append(f"{c.name} ({c.kind}, n={int(seen.sum())})")
        means.append(float(v.mean()) if v.size else float("nan"))
        ses.append(float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0)
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(names) + 1.6))
    pos = np.arange(len(names))[::-1]
    ax.barh(pos, means, xerr=ses, color="tab:blue", capsize=3)
    ax.set_yticks(pos, names, fontsize=8)
    ax.axvline(0, color="grey", lw=1)
    ax.set_xlabel("mean log p(x_j | z) (nats per data point; higher is better)")
    ax.set_title(
        f"Log-likelihood per column of {obs.shape[0]} {split} data points, z = mean of q(z|x)\n"
        f"(densities of real and positive columns in the model's units)",
        fontsize=9,
    )
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return save(fig, path)


@torch.no_grad()
def plot_feature_samples(module, x: torch.Tensor, path, n: int = 1000, split: str = "test") -> Path:
    """Each column's distribution in ``x`` and in ``n`` draws x ~ p(x|z), z ~ p(z): histograms
    for numbers, level frequencies for categories."""
    draws = module.sample(n, mean=False).reshape(n, -1).float().cpu().numpy()
    obs = x.float().cpu().numpy()
    columns = columns_of(traits(module).likelihood, obs.shape[1])
    fig, axes = _panels(len(columns))
    for ax, (c, at) in zip(axes, _blocks(columns)):
        if c.kind in ("categorical", "binary"):
            levels = _levels(c)
            for shift, values, label in ((-0.2, obs, f"{split} data"), (0.2, draws, "model")):
                codes = _codes(values[:, at : at + c.width], c)
                codes = codes[codes >= 0]
                share = np.bincount(codes, minlength=len(levels)) / max(1, codes.size)
                ax.bar(np.arange(len(levels)) + shift, share, width=0.4, label=label, alpha=0.8)
            ax.set_xticks(range(len(levels)), [str(v)[:10] for v in levels], fontsize=7)
            ax.set_ylabel("share", fontsize=8)
        else:
            o, s = obs[:, at][~np.isnan(obs[:, at])], draws[:, at]
            lo, hi = np.percentile(np.concatenate([o, s]), [0.5, 99.5]) if o.size else (s.min(), s.max())
            bins = np.linspace(lo, hi, 25) if hi > lo else 10
            ax.hist(o, bins=bins, density=True, alpha=0.6, label=f"{split} data")
            ax.hist(s, bins=bins, density=True, alpha=0.6, label="model")
            ax.set_ylabel("density", fontsize=8)
        ax.set_title(f"{c.name} ({c.kind})", fontsize=9)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(f"Each column in the {split} data and in {n} draws x ~ p(x|z), z ~ p(z)", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


__all__ = [
    "is_vector",
    "columns_of",
    "feature_log_prob",
    "plot_feature_reconstructions",
    "plot_feature_log_lik",
    "plot_feature_samples",
    "MAX_COLUMNS",
]

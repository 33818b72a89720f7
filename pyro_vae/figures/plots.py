"""Figures for a trained VAE, written as PNG files (matplotlib, Agg backend: no display needed).

Each ``plot_*`` function takes what it needs and a ``path``, writes one PNG there and returns
the path. :func:`make_figures` writes every figure that applies to a model into a run folder.

The model only needs the interface of :class:`pyro_vae.models.VAE`: ``encode(x) -> (loc, scale)``,
``decode(z)`` and ``reconstruct(x)`` returning E[x|z], ``sample(n)``, ``prior()``,
``latent_dim`` and ``data_shape``. Images are ``(N, C, H, W)`` with C = 1 (grey) or 3 (RGB);
they are always drawn on the fixed scale [0, 1] (0 = black, 1 = white), never auto-scaled,
and values outside [0, 1] (a Gaussian likelihood's mean, say) are clipped.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from pyro_vae.config import read_metrics
from pyro_vae.contract import FIGURE_NEEDS, GENERIC_FIGURES, Figures, Likelihood, has, require, traits
from pyro_vae.drawing import (
    DPI,  # noqa: F401
    as_images,
    grid_figsize,
    image_grid,
    no_ticks,
    pca_2d,  # noqa: F401
    plot_codes,  # noqa: F401
    plot_confusion,
    plot_image_rows,  # noqa: F401
    save,
    show,
    to_numpy,
)
from pyro_vae.figures.vectors import is_vector, plot_feature_log_lik, plot_feature_reconstructions, plot_feature_samples
from pyro_vae.inference.marginal import as_normal
from pyro_vae.runs.folder import RunDir

FIGURE_NAMES = ("curves",) + GENERIC_FIGURES
IMAGE_ONLY = ("manifold", "interpolation")  # grids of decoded images: not drawn for vector data


# ---------------------------------------------------------------------- helpers
def _device(module) -> torch.device:
    try:
        return next(module.parameters()).device
    except (StopIteration, AttributeError):
        pass
    try:
        return next(module.buffers()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _batch(x, module) -> torch.Tensor:
    """Data as a float tensor on the module's device, with a batch axis."""
    x = torch.as_tensor(x).float()
    if x.dim() == len(module.data_shape):
        x = x.unsqueeze(0)
    return x.to(_device(module))


class _EvalMode:
    """``module.eval()`` and ``torch.no_grad()`` inside; restores the training flag after."""

    def __init__(self, module):
        self.module = module

    def __enter__(self):
        self.was_training = self.module.training
        self.no_grad = torch.no_grad()
        self.no_grad.__enter__()
        self.module.eval()
        return self.module

    def __exit__(self, *exc):
        self.module.train(self.was_training)
        self.no_grad.__exit__(*exc)
        return False


def _encode_means(module, x, batch_size: int = 1000) -> torch.Tensor:
    """E_q[z|x] for every row of ``x`` (in batches), on the CPU, shape (N, latent_dim)."""
    out = []
    for start in range(0, x.shape[0], batch_size):
        loc, _ = module.encode(_batch(x[start : start + batch_size], module))
        out.append(loc.reshape(loc.shape[0], -1).float().cpu())
    return torch.cat(out)


# ---------------------------------------------------------------------- training curves
def plot_curves(metrics_rows, path) -> Path:
    """Training loss and validation ELBO per epoch, both as -ELBO (nats per image), one axis.

    ``metrics_rows``: the rows of ``metrics.jsonl`` (dicts with ``epoch``, ``train_loss`` =
    -ELBO, ``val_elbo`` = ELBO, optionally ``kl_weight``). When the KL weight changes (warm-up,
    beta annealing) it is drawn on a second axis, since the training loss is then not the
    -ELBO of the final objective.
    """
    rows = [r for r in (metrics_rows or []) if isinstance(r, dict)]
    if not rows:
        raise ValueError("plot_curves needs at least one metrics row")
    epochs = np.array([r.get("epoch", i + 1) for i, r in enumerate(rows)], dtype=float)

    def column(key, sign=1.0):
        return np.array([sign * r[key] if r.get(key) is not None else np.nan for r in rows], dtype=float)

    train = column("train_loss")
    val = column("val_elbo", -1.0)
    marker = "o" if len(rows) <= 30 else None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if np.isfinite(train).any():
        ax.plot(
            epochs, train, marker=marker, ms=4, color="tab:blue", label="training loss (-ELBO, mean over the epoch)"
        )
    if np.isfinite(val).any():
        ax.plot(epochs, val, marker=marker, ms=4, color="tab:orange", label="validation -ELBO (end of epoch)")
        best = int(np.nanargmin(val))
        ax.plot(
            [epochs[best]],
            [val[best]],
            "*",
            ms=13,
            color="tab:red",
            zorder=5,
            label=f"best validation: {val[best]:.2f} (epoch {epochs[best]:g})",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("negative ELBO (nats per image)  \u2193 better")
    ax.set_title("Training and validation loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()

    kl = column("kl_weight")
    if np.isfinite(kl).any() and np.nanmax(kl) - np.nanmin(kl) > 1e-9:
        ax2 = ax.twinx()
        ax2.plot(epochs, kl, ls="--", color="grey", label="KL weight (end of epoch)")
        ax2.set_ylabel("KL weight (beta)", color="grey")
        ax2.tick_params(axis="y", colors="grey")
        ax2.set_ylim(bottom=0)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    # below the axes: inside, it would cover the curves or the KL-weight line
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=9, frameon=False)
    fig.tight_layout()
    return save(fig, path)


# ---------------------------------------------------------------------- images
def plot_reconstructions(module, x, path, n: int = 8, split: str = "test") -> Path:
    """The first ``n`` images of ``x`` (top) above their reconstructions (bottom).

    Reconstruction = ``module.reconstruct(x)``: E[x|z] at z = the mean of q(z|x). Image i of
    the bottom panel is the reconstruction of image i of the top panel.
    """
    with _EvalMode(module):
        xb = _batch(x, module)[:n]
        rec = module.reconstruct(xb)
    n = xb.shape[0]
    ncol = min(n, 8 if n <= 16 else math.ceil(math.sqrt(2 * n)))
    top, bottom = image_grid(xb, ncol), image_grid(rec.reshape(xb.shape), ncol)
    w, h = grid_figsize(top, extra_h=0.0, min_w=6.5)
    fig, axes = plt.subplots(2, 1, figsize=(w, 2 * h + 0.9))
    for ax, grid, title in zip(
        axes, (top, bottom), (f"Data: {split} images", "Reconstructions: E[x | z = mean of q(z|x)]")
    ):
        show(ax, grid)
        no_ticks(ax)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def plot_samples(module, path, n: int = 64, condition=None, sampler: str = "prior", mixture=None) -> Path:
    """``n`` images from the model: z ~ p(z), shown as E[x|z] (``module.sample(n)``); a
    conditional family draws them given ``condition`` (e.g. a class). ``sampler="mixture"``
    draws z from ``mixture``, a density fitted to the training codes
    (:func:`pyro_vae.analysis.samplers.fit_code_mixture`), instead of the prior."""
    with _EvalMode(module):
        if sampler == "mixture":
            from pyro_vae.analysis.samplers import generate

            x = generate(module, n, "mixture", mixture)
        else:
            x = module.sample(n) if condition is None else module.sample(n, condition=condition)
    grid = image_grid(x.reshape(n, *module.data_shape), math.ceil(math.sqrt(n)))
    fig, ax = plt.subplots(figsize=grid_figsize(grid, min_w=4.0, max_w=7.0))
    show(ax, grid)
    no_ticks(ax)
    given = "" if condition is None else f", given condition {condition}"
    source = (
        f"z from a {mixture.components}-component Gaussian mixture fitted to the training codes"
        if sampler == "mixture"
        else "z ~ p(z)"
    )
    ax.set_title(f"{n} samples from the model: {source}{given}, shown as E[x|z]", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def _normal_parts(d):
    """(loc, scale) if ``d`` is a (possibly Independent-wrapped) Normal, else None."""
    normal = as_normal(d)
    return None if normal is None else (normal.loc, normal.scale)


def _prior_quantiles(module, levels: torch.Tensor, num_samples: int = 20000) -> torch.Tensor:
    """Per-dimension quantiles of ``module.prior()`` at ``levels``: shape (latent_dim, L), CPU.

    A (diagonal) Normal prior uses the Normal inverse CDF; any other prior uses empirical
    quantiles of ``num_samples`` draws from it.
    """
    prior = module.prior()
    parts = _normal_parts(prior)
    d = int(module.latent_dim)
    if parts is not None:
        loc, scale = (p.detach().float().cpu().expand(d) for p in parts)
        std = torch.distributions.Normal(0.0, 1.0).icdf(levels.float())
        return loc[:, None] + scale[:, None] * std[None, :]
    z = prior.sample((num_samples,)).float().cpu().reshape(num_samples, -1)
    return torch.quantile(z, levels.float(), dim=0).T


def manifold_grid(
    module, n: int = 20, lo: float = 0.05, hi: float = 0.95, num_samples: int = 20000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent values for the manifold figure: per dimension, the prior's quantiles at ``n``
    evenly spaced levels in [lo, hi]. Returns ``(q1, q2)``, each of shape (n,), on the CPU.

    A (diagonal) Normal prior uses the Normal inverse CDF; any other prior uses empirical
    quantiles of ``num_samples`` draws from ``module.prior()``, per dimension.
    """
    q = _prior_quantiles(module, torch.linspace(lo, hi, n), num_samples)
    return q[0], q[1]


def plot_manifold(module, path, n: int = 20, lo: float = 0.05, hi: float = 0.95) -> Path:
    """The learned 2-D manifold: E[x|z] on an ``n`` x ``n`` grid of the prior's quantiles at
    levels evenly spaced in [lo, hi] (as in Kingma & Welling 2014, fig. 4). z1 varies left to
    right, z2 bottom to top; the ticks give z at the 5/25/50/75/95% quantiles.

    Raises ValueError unless ``module.latent_dim == 2``.
    """
    if int(module.latent_dim) != 2:
        raise ValueError(
            f"the manifold plot needs a 2-D latent space, but this model has "
            f"latent_dim={module.latent_dim}; use plot_latent_space or plot_samples"
        )
    if n < 2 or not 0 < lo < hi < 1:
        raise ValueError(f"need n >= 2 and 0 < lo < hi < 1, got n={n}, lo={lo}, hi={hi}")
    tick_levels = torch.tensor(sorted({v for v in (lo, 0.25, 0.5, 0.75, hi) if lo <= v <= hi}), dtype=torch.float64)
    with _EvalMode(module):
        # grid and tick quantiles in one call: empirical quantiles then share one prior sample
        q = _prior_quantiles(module, torch.cat([torch.linspace(lo, hi, n, dtype=torch.float64), tick_levels]))
        q1, q2 = q[0, :n], q[1, :n]
        # row r of the figure (top to bottom) has z2 = q2[n-1-r]; column c has z1 = q1[c]
        z = torch.stack(torch.meshgrid(q1, q2.flip(0), indexing="xy"), dim=-1).reshape(-1, 2)
        x = module.decode(z.to(_device(module))).reshape(n * n, *module.data_shape)
    grid = image_grid(x, n, pad=0)
    fig, ax = plt.subplots(figsize=(8, 8.4))
    # extent in cell units: column c spans [c, c+1] from the left, and the cell whose z2 is
    # q2[t] spans [t, t+1] from the bottom; level v sits at (v - lo) / (hi - lo) * (n - 1) + 0.5
    show(ax, grid, extent=(0, n, 0, n))
    pos = ((tick_levels - lo) / (hi - lo) * (n - 1) + 0.5).tolist()
    names = [f"{100 * v:g}%" for v in tick_levels.tolist()]
    ax.set_xticks(pos, [f"{v:.2f}\n({m})" for v, m in zip(q[0, n:].tolist(), names)])
    ax.set_yticks(pos, [f"{v:.2f} ({m})" for v, m in zip(q[1, n:].tolist(), names)])
    normal = _normal_parts(module.prior()) is not None
    how = "Normal inverse CDF" if normal else "empirical quantiles of prior samples"
    ax.set_xlabel(f"z1 (prior quantiles {100 * lo:g}% \u2192 {100 * hi:g}%)")
    ax.set_ylabel(f"z2 (prior quantiles {100 * lo:g}% \u2192 {100 * hi:g}%)")
    ax.set_title(f"Learned manifold: E[x|z] on a {n}x{n} grid of prior quantiles\n({how})", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def plot_latent_space(module, x, y, path, max_points: int = 5000, split: str = "test") -> Path:
    """Latent means E_q[z|x] of ``x``, coloured by label ``y`` (or one colour when None).

    latent_dim 2: the means themselves; > 2: their first two principal components (axes say
    so, with the share of variance); 1: z against the label (one strip per class, jittered)
    or against the data index. At most ``max_points`` points are drawn (the first ones).
    """
    with _EvalMode(module):
        z = _encode_means(module, x[:max_points])
    points = "data points" if is_vector(module.data_shape) else "images"
    return plot_codes(
        z, None if y is None else y[:max_points], path, f"posterior means of {z.shape[0]} {split} {points}"
    )


def plot_interpolation(module, x_a, x_b, path, steps: int = 10) -> Path:
    """Decode ``steps`` points on the line between the latent means of ``x_a`` and ``x_b``.

    The row shows: x_a (data) | E[x|z_t] for t = 0 ... 1 | x_b (data), where
    z_t = (1 - t) mean q(z|x_a) + t mean q(z|x_b).
    """
    if steps < 2:
        raise ValueError(f"interpolation needs steps >= 2, got {steps}")
    with _EvalMode(module):
        xa, xb = _batch(x_a, module)[:1], _batch(x_b, module)[:1]
        za, _ = module.encode(xa)
        zb, _ = module.encode(xb)
        t = torch.linspace(0.0, 1.0, steps, device=za.device)[:, None]
        dec = module.decode((1 - t) * za + t * zb).reshape(steps, *module.data_shape)
    row = torch.cat([xa.cpu(), dec.cpu(), xb.cpu()])
    m, (ih, iw) = row.shape[0], as_images(to_numpy(row)).shape[2:]
    pad = 4
    grid = image_grid(row, m, pad=pad, pad_value=1.0)
    h, w = grid.shape[:2]
    width = max(6.0, 0.8 * m)
    fig, ax = plt.subplots(figsize=(width, width * h / w + 1.0))
    show(ax, grid)  # pixel coordinates: pixel (r, c) is centred on (c, r)
    left = [pad + i * (iw + pad) for i in range(m)]
    labels = (
        ["data A"]
        + [f"t={v:.2f}".rstrip("0").rstrip(".") if 0 < v < 1 else f"t={v:g}" for v in t.reshape(-1).tolist()]
        + ["data B"]
    )
    ax.set_xticks([c + iw / 2 - 0.5 for c in left], labels, fontsize=8, rotation=0 if m <= 12 else 45)
    ax.tick_params(length=0)
    ax.set_yticks([])
    for sp in ax.spines.values():
        sp.set_visible(False)
    for i in (0, m - 1):  # frame the two real images, just outside their pixels
        ax.add_patch(plt.Rectangle((left[i] - 2, pad - 2), iw + 3, ih + 3, fill=False, ec="tab:red", lw=1.5))
    ax.set_title(
        "Interpolation in latent space between the posterior means of A and B\n"
        "(red frames: the two real images; between them: E[x|z] decoded)",
        fontsize=10,
    )
    fig.tight_layout()
    return save(fig, path)


# ---------------------------------------------------------------------- all of them
def _pick_pair(y, n: int) -> tuple[int, int]:
    """Two indices for the interpolation: the first point and the first with another label."""
    if n < 2:
        return 0, 0
    if y is not None:
        labels = to_numpy(y).reshape(-1)
        other = np.nonzero(labels[:n] != labels[0])[0]
        if len(other):
            return 0, int(other[0])
    return 0, 1


def make_figures(
    module,
    run_dir,
    x_test,
    y_test=None,
    metrics_rows=None,
    seed: int | None = 0,
    n_reconstructions: int = 8,
    n_samples: int = 64,
    split: str = "test",
    progress: bool = False,
) -> dict:
    """Write every figure the family lists (``module.figures``) into ``run_dir``; return
    ``{name: path}``.

    ``x_test``: a :class:`~pyro_vae.data.Batch` (or a tensor of images, with labels ``y_test``).
    Generic figures (files ``<name>.png``): ``curves`` (only with metrics: ``metrics_rows``, or
    ``run_dir/metrics.jsonl`` when that is None), ``reconstructions``, ``samples``, ``manifold``
    (only when latent_dim == 2), ``latent_space``, ``interpolation`` (needs two images); any
    other listed name is drawn by ``module.figure(name, data, path)``. Titles name ``split``.
    The figures follow the data's shape, not the family: for vectors (a data shape of one
    dimension: a table's rows) ``reconstructions`` and ``samples`` are drawn column by column
    (:mod:`pyro_vae.figures.vectors`), ``feature_log_lik`` (the log-likelihood of each column) is
    added beside the reconstructions for a family with the ``Likelihood`` ability, and no image
    grid is drawn (no ``manifold``, no ``interpolation``).
    The module is put in eval mode (its training flag is restored afterwards). ``seed`` fixes
    the random draws (samples) without changing the global random state; None uses the global state.
    """
    from pyro_vae.data.batch import Batch

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if metrics_rows is None:
        metrics_rows = read_metrics(RunDir(run_dir).metrics)
    data = x_test if isinstance(x_test, Batch) else Batch(torch.as_tensor(x_test), y_test)
    x_test, y_test = data.x, data.y
    t = traits(module)
    vector = is_vector(t.data_shape)
    names = tuple(n for n in t.figures if not (vector and n in IMAGE_ONLY))
    for name in names:  # what each figure asks of the family, checked before any is drawn
        for ability in FIGURE_NEEDS.get(name, (Figures,)):
            require(module, ability, f"draw its figure {name!r}", f"leave {name!r} out of its figures")
    out = {}
    dev = _device(module)
    fork_devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices, enabled=seed is not None), _EvalMode(module):
        if seed is not None:
            torch.manual_seed(seed)
        if metrics_rows:
            out["curves"] = plot_curves(metrics_rows, RunDir(run_dir).figure("curves"))
        from tqdm.auto import tqdm

        for name in tqdm(names, desc="figures", unit="fig", disable=not progress, leave=False):
            path = RunDir(run_dir).figure(name)
            if vector and name in ("reconstructions", "samples"):
                out.update(_vector_figures(module, name, x_test, run_dir, split))
            elif name == "reconstructions":
                out[name] = plot_reconstructions(module, x_test, path, n=n_reconstructions, split=split)
            elif name == "samples":
                out[name] = plot_samples(module, path, n=n_samples)
            elif name == "manifold":
                if t.latent_dim == 2:
                    out[name] = plot_manifold(module, path)
            elif name == "latent_space":
                out[name] = plot_latent_space(module, x_test, y_test, path, split=split)
            elif name == "interpolation":
                if x_test.shape[0] >= 2:
                    a, b = _pick_pair(y_test, x_test.shape[0])
                    out[name] = plot_interpolation(module, x_test[a], x_test[b], path)
            else:
                out[name] = module.figure(name, data.to(dev), path)
    return out


def _vector_figures(module, name: str, x, run_dir, split: str) -> dict:
    """The column-by-column figures that stand for ``name`` (reconstructions or samples) with vector data."""
    run = RunDir(run_dir)
    x = x.to(_device(module))
    if name == "samples":
        return {name: plot_feature_samples(module, x, run.figure(name), split=split)}
    out = {name: plot_feature_reconstructions(module, x, run.figure(name), split=split)}
    if has(module, Likelihood):
        out["feature_log_lik"] = plot_feature_log_lik(module, x, run.figure("feature_log_lik"), split=split)
    return out


# ---------------------------------------------------------------------- per-dimension KL
def plot_kl_per_dim(kl, activity, path, site: str = "z", threshold: float = 0.01) -> Path:
    """Two panels, dimensions sorted by KL: the KL(q || p) of each latent dimension (bars,
    coloured active / inactive) and its activity Cov_x E_q[z_u] (log scale) with the
    active-unit threshold drawn (Burda et al. 2016)."""
    kl = np.asarray(kl, dtype=float) if kl is not None else None
    act = np.asarray(activity, dtype=float)
    order = np.argsort(-(kl if kl is not None else act))
    active = act[order] > threshold
    colors = np.where(active, "tab:blue", "tab:gray")
    d = len(act)
    panels = 2 if kl is not None else 1
    fig, axes = plt.subplots(
        panels, 1, figsize=(max(6.0, min(14.0, 0.18 * d + 3)), 2.6 * panels + 0.6), sharex=True, squeeze=False
    )
    pos = np.arange(d)
    if kl is not None:
        ax = axes[0, 0]
        ax.bar(pos, kl[order], color=colors)
        ax.set_ylabel("KL (nats/image)")
        ax.set_title(
            f"{site}: KL per latent dimension, sorted; {int(active.sum())} of {d} active "
            f"(blue: activity > {threshold:g})",
            fontsize=10,
        )
    ax = axes[-1, 0]
    ax.bar(pos, np.maximum(act[order], 1e-8), color=colors)
    ax.set_yscale("log")
    ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"active-unit threshold {threshold:g}")
    ax.set_ylabel("activity Cov_x E_q[z_u]")
    ax.set_xlabel("latent dimension (sorted" + (" by KL)" if kl is not None else " by activity)"))
    ax.set_xticks(pos if d <= 32 else pos[:: max(1, d // 16)])
    ax.set_xticklabels([str(i) for i in order] if d <= 32 else [str(i) for i in order[:: max(1, d // 16)]], fontsize=7)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    fig.tight_layout()
    return save(fig, path)


def plot_log_px_terms(terms: dict, path, k: int | None = None) -> Path:
    """The terms of log p(x) over the test images, from :func:`~pyro_vae.analysis.evaluate.evaluate`'s
    per-image values: (left) their means, walking from E_q[log p(x|z)] down by KL(q || p(z)) to
    the ELBO and up by the inference gap KL(q || p(z|x)) to log p(x); (middle) the per-image
    ELBO and log p(x); (right) the per-image KL(q || p(z)) and inference gap."""
    t = {name: np.asarray(v, dtype=float) for name, v in terms.items()}
    mean = {name: float(v.mean()) for name, v in t.items()}
    se = {name: float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0 for name, v in t.items()}
    fig, axes = plt.subplots(1, 3, figsize=(14.0, 4.0))
    ax = axes[0]
    rec, kl, elbo, gap, lpx = (mean[n] for n in ("recon_log_lik", "kl", "elbo", "gap", "log_px"))
    labels = ["E_q log p(x|z)", "- KL(q||p(z))", "= ELBO", "+ gap", "= log p(x)"]
    bottoms = [0.0, rec, 0.0, elbo, 0.0]
    heights = [rec, -kl, elbo, gap, lpx]
    colors = ["tab:blue", "tab:red", "tab:purple", "tab:green", "tab:orange"]
    ax.bar(range(5), heights, bottom=bottoms, color=colors)
    lo = min(rec, elbo, lpx) - 0.1 * (abs(kl) + abs(gap) + 1.0)
    hi = max(rec, elbo, lpx) + 0.1 * (abs(kl) + abs(gap) + 1.0)
    ax.set_ylim(lo, hi)
    names = ["recon_log_lik", "kl", "elbo", "gap", "log_px"]
    ax.set_xticks(range(5))
    ax.set_xticklabels([f"{lab}\n{mean[n]:.2f} ± {se[n]:.2f}" for lab, n in zip(labels, names)], fontsize=7)
    ax.set_ylabel("nats/image (mean over test images)")
    ax.set_title("log p(x) = E_q log p(x|z) - KL(q||p(z)) + KL(q||p(z|x))", fontsize=9)
    ax = axes[1]
    bins = np.linspace(min(t["elbo"].min(), t["log_px"].min()), max(t["elbo"].max(), t["log_px"].max()), 60)
    ax.hist(t["elbo"], bins=bins, alpha=0.6, color="tab:purple", label=f"ELBO (mean {elbo:.2f})")
    ax.hist(
        t["log_px"],
        bins=bins,
        alpha=0.6,
        color="tab:orange",
        label=f"log p(x){f', k={k}' if k else ''} (mean {lpx:.2f})",
    )
    ax.set_xlabel("nats/image")
    ax.set_ylabel("test images")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title("per image: the bound and the likelihood", fontsize=9)
    ax = axes[2]
    hi = float(np.percentile(np.concatenate([t["kl"], t["gap"]]), 99.5))
    lo = min(0.0, float(np.percentile(t["gap"], 0.5)))
    bins = np.linspace(lo, hi, 60)
    ax.hist(t["kl"], bins=bins, alpha=0.6, color="tab:red", label=f"KL(q||p(z)) (mean {kl:.2f})")
    ax.hist(t["gap"], bins=bins, alpha=0.6, color="tab:green", label=f"gap KL(q||p(z|x)) (mean {gap:.2f})")
    ax.set_xlabel("nats/image")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title("per image: the two KL terms", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


__all__ = [
    "plot_kl_per_dim",
    "plot_confusion",
    "image_grid",
    "make_figures",
    "manifold_grid",
    "plot_curves",
    "plot_interpolation",
    "plot_latent_space",
    "plot_manifold",
    "plot_reconstructions",
    "plot_samples",
]

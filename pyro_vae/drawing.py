"""Drawing helpers shared by the library's figures and the families' own figures: image grids on
a fixed [0, 1] scale, figure sizes, saving (atomically, through :mod:`pyro_vae.files`), and the
two family-figure layouts (rows of images, a confusion matrix). Matplotlib with the Agg
backend: no display needed."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch

from pyro_vae.files import save_figure

DPI = 120


def to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def as_images(arr: np.ndarray) -> np.ndarray:
    """Data points as pictures ``(N, C, H, W)`` with C = 1 or 3: one image ``(C, H, W)`` gets a
    batch axis; vectors ``(N, D)`` (and data of rank > 3, flattened) become one-pixel-high grey
    rows; channels that are neither grey nor RGB are laid side by side, each grey."""
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim == 2:
        arr = arr[:, None, None, :]
    elif arr.ndim > 4:
        arr = arr.reshape(arr.shape[0], 1, 1, -1)
    if arr.ndim != 4:
        raise ValueError(f"cannot draw data of shape {arr.shape} as pictures: need (N, D), (N, C, H, W) or more axes")
    n, c, h, w = arr.shape
    if c not in (1, 3):
        arr = arr.transpose(0, 2, 1, 3).reshape(n, 1, h, c * w)
    return arr


def image_grid(images, nrow: int = 8, pad: int = 1, pad_value: float = 0.5) -> np.ndarray:
    """Tile images into one array, ``nrow`` images per row, with ``pad``-pixel separators.

    Args:
        images: ``(N, C, H, W)`` (or one image ``(C, H, W)``), torch or numpy, values in [0, 1]
            (values outside are clipped). C must be 1 (grey) or 3 (RGB).
        nrow: images per row (the last row is filled with ``pad_value`` if it is short).
        pad: separator width in pixels, between the images and around the border.
        pad_value: grey level of the separators (0.5: visible on black and on white images).

    Returns:
        a 2-D array ``(rows*(H+pad)+pad, ncol*(W+pad)+pad)`` for grey images; for RGB the same
        with a trailing axis of 3. ``ncol = min(nrow, N)``, ``rows = ceil(N / ncol)``. Image ``i``
        starts at row ``pad + (i // ncol) * (H + pad)``, column ``pad + (i % ncol) * (W + pad)``.
    """
    arr = as_images(to_numpy(images))
    n, c, h, w = arr.shape
    if n < 1:
        raise ValueError("image_grid needs at least one image")
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    ncol = min(int(nrow), n)
    rows = math.ceil(n / ncol)
    arr = np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0)
    grid = np.full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value, dtype=np.float32)
    for i in range(n):
        r0 = pad + (i // ncol) * (h + pad)
        c0 = pad + (i % ncol) * (w + pad)
        grid[:, r0 : r0 + h, c0 : c0 + w] = arr[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def show(ax, grid: np.ndarray, extent=None) -> None:
    """Draw an image grid on a fixed [0, 1] scale: grey with cmap gray, RGB as RGB."""
    if grid.ndim == 2:
        ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", extent=extent)
    else:
        ax.imshow(np.clip(grid, 0.0, 1.0), interpolation="nearest", extent=extent)


def grid_figsize(grid: np.ndarray, extra_h: float = 0.6, min_w: float = 3.0, max_w: float = 10.0):
    """A figure size that shows the grid at >= 1 screen pixel per image pixel where possible."""
    h, w = grid.shape[:2]
    width = float(np.clip(w / DPI * 1.6, min_w, max_w))
    return width, width * h / w + extra_h


def save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def no_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def plot_image_rows(images, path, title: str) -> Path:
    """A grid of images given as ``(rows, columns, *image_shape)``, with a title."""
    images = torch.as_tensor(images).detach().float().cpu()
    r, c = images.shape[:2]
    grid = image_grid(images.reshape(r * c, *images.shape[2:]), c, pad=2, pad_value=1.0)
    fig, ax = plt.subplots(figsize=grid_figsize(grid, min_w=5.0, max_w=9.0))
    show(ax, grid)
    no_ticks(ax)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def plot_confusion(predicted, labels, num_classes: int, path) -> Path:
    """Confusion matrix of a classifier: rows the true class, columns the predicted one; cells
    show counts, coloured by the share of the row."""
    pred = to_numpy(predicted).reshape(-1).astype(int)
    true = to_numpy(labels).reshape(-1).astype(int)
    cm = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(cm, (true, pred), 1)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * num_classes, 0.8 + 0.5 * num_classes))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if num_classes <= 20:
        for i in range(num_classes):
            for j in range(num_classes):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(num_classes))
    ax.set_yticks(range(num_classes))
    ax.set_xlabel("predicted class (argmax q(y|x))")
    ax.set_ylabel("true class")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"Confusion matrix on {cm.sum()} test images (accuracy {acc:.3f})", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def pca_2d(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project rows of ``z`` onto their first two principal components (via SVD).

    Returns ``(projected (N, 2), explained variance ratio (2,))``.
    """
    zc = z - z.mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(zc, full_matrices=False)
    k = min(2, vh.shape[0])
    proj = zc @ vh[:k].T
    var = s**2
    ratio = var[:k] / var.sum().clamp_min(1e-12)
    if k < 2:  # fewer data points than two: pad with zeros
        proj = torch.cat([proj, torch.zeros(proj.shape[0], 2 - k)], 1)
        ratio = torch.cat([ratio, torch.zeros(2 - k)])
    # fix the sign so the figure does not flip between runs: largest |loading| positive
    signs = torch.sign(vh[:k].gather(1, vh[:k].abs().argmax(1, keepdim=True))).reshape(-1)
    signs = torch.cat([signs, torch.ones(2 - k)]) if k < 2 else signs
    return proj * signs, ratio


def plot_codes(z, y, path, what: str) -> Path:
    """Latent codes ``z`` (N, d), coloured by label ``y`` (or one colour when None); ``what``
    says in the title what the codes are."""
    z = z.detach().float().cpu().reshape(z.shape[0], -1)
    labels = None if y is None else to_numpy(y).reshape(-1)
    d = z.shape[1]
    rng = np.random.default_rng(0)
    if d == 1:
        px = z[:, 0].numpy()
        if labels is not None:
            py = labels + rng.uniform(-0.3, 0.3, size=labels.shape)
            ylabel = "label (jittered)"
        else:
            py = np.arange(len(px))
            ylabel = "data point index"
        xlabel, title_extra = "z (posterior mean)", "1-D latent"
    elif d == 2:
        px, py = z[:, 0].numpy(), z[:, 1].numpy()
        xlabel, ylabel, title_extra = "z1 (posterior mean)", "z2 (posterior mean)", "2-D latent"
    else:
        proj, ratio = pca_2d(z)
        px, py = proj[:, 0].numpy(), proj[:, 1].numpy()
        xlabel = f"PC 1 of posterior means ({100 * ratio[0]:.0f}% of variance)"
        ylabel = f"PC 2 of posterior means ({100 * ratio[1]:.0f}% of variance)"
        title_extra = f"{d}-D latent, PCA to 2-D"

    fig, ax = plt.subplots(figsize=(7.5, 6))
    size = 6 if len(px) > 1000 else 14
    if labels is None:
        ax.scatter(px, py, s=size, alpha=0.6, color="tab:blue", linewidths=0)
    else:
        classes = np.unique(labels)
        discrete = np.allclose(classes, np.round(classes)) and len(classes) <= 20
        if discrete:
            cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
            for i, c in enumerate(classes):
                m = labels == c
                ax.scatter(px[m], py[m], s=size, alpha=0.7, color=cmap(i), linewidths=0, label=f"{int(c)}")
            leg = ax.legend(
                title="label",
                loc="center left",
                bbox_to_anchor=(1.01, 0.5),
                markerscale=2.5 if size < 10 else 1.5,
                frameon=False,
            )
            for h in leg.legend_handles:
                h.set_alpha(1.0)
        else:
            sc = ax.scatter(px, py, c=labels, s=size, alpha=0.7, cmap="viridis", linewidths=0)
            fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"Latent space: {what} ({title_extra})", fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return save(fig, path)


__all__ = [
    "DPI",
    "to_numpy",
    "as_images",
    "image_grid",
    "show",
    "grid_figsize",
    "save",
    "no_ticks",
    "plot_image_rows",
    "plot_confusion",
    "pca_2d",
    "plot_codes",
]

"""Figures (pyro_vae.figures.plots) and the run report (pyro_vae.figures.report) on tiny, untrained models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import matplotlib.image as mpimg

from pyro_vae.figures import plots
from pyro_vae.config import ModelConfig
from pyro_vae.models import build_model
from pyro_vae.components.priors import StandardNormal
from pyro_vae.figures.report import write_report

torch.set_num_threads(1)


def tiny_vae(latent_dim=2, **kwargs):
    torch.manual_seed(0)
    return build_model(ModelConfig(data_shape=(1, 28, 28), latent_dim=latent_dim, hidden=(32,), **kwargs))


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((16, 1, 28, 28), 0.3), generator=g)
    y = torch.arange(16) % 4
    return x, y


def metrics_rows(n=3, warmup=True):
    return [
        {
            "epoch": e,
            "step": 10 * e,
            "train_loss": 200.0 - 10 * e,
            "val_elbo": -195.0 + 9 * e,
            "kl_weight": min(1.0, e / 2) if warmup else 1.0,
            "images_per_s": 1000.0,
            "time_s": 0.5,
        }
        for e in range(1, n + 1)
    ]


def check_png(path, min_size=50):
    path = Path(path)
    assert path.is_file() and path.suffix == ".png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert img.shape[0] >= min_size and img.shape[1] >= min_size
    assert img[..., :3].std() > 0  # not a blank canvas
    return img


# ---------------------------------------------------------------------- image_grid
def test_image_grid_layout_and_pixel_positions():
    imgs = torch.zeros(6, 1, 3, 3)
    for i in range(6):
        imgs[i] = i / 10
    imgs[4, 0, 1, 2] = 1.0  # image 4 = row 1, column 1
    grid = plots.image_grid(imgs, nrow=3)
    # 2 rows x 3 columns of 3x3 images, 1-pixel separators between and around
    assert grid.shape == (2 * 3 + 3, 3 * 3 + 4)
    assert grid[1 + 1 * 4 + 1, 1 + 1 * 4 + 2] == pytest.approx(1.0)
    assert grid[1, 1] == pytest.approx(0.0)  # image 0
    assert grid[5, 9] == pytest.approx(0.5)  # image 5 = row 1, column 2, top-left pixel
    assert grid[0, 0] == pytest.approx(0.5) and grid[4, 3] == pytest.approx(0.5)  # separators


def test_image_grid_numpy_rgb_short_last_row_and_clipping():
    imgs = np.random.default_rng(0).uniform(-0.5, 1.5, size=(5, 3, 4, 2)).astype(np.float32)
    grid = plots.image_grid(imgs, nrow=4, pad=2, pad_value=0.0)
    assert grid.shape == (2 * (4 + 2) + 2, 4 * (2 + 2) + 2, 3)
    assert grid.min() >= 0.0 and grid.max() <= 1.0  # values outside [0, 1] are clipped
    np.testing.assert_allclose(grid[2:6, 2:4], np.clip(imgs[0], 0, 1).transpose(1, 2, 0))
    assert (grid[8:12, 8:] == 0.0).all()  # the empty cells of the short last row
    assert plots.image_grid(imgs[:2], nrow=8).shape == (4 + 2, 2 * 2 + 3, 3)  # ncol = min(nrow, N)


def test_image_grid_draws_any_data_shape():
    assert plots.image_grid(torch.zeros(2, 2, 3, 3), 2, pad=0).shape == (3, 12)  # 2 channels side by side
    assert plots.image_grid(torch.zeros(4, 7), 4, pad=0).shape == (1, 28)  # vectors as one-pixel rows
    with pytest.raises(ValueError, match="at least one image"):
        plots.image_grid(torch.zeros(0, 1, 3, 3))


# ---------------------------------------------------------------------- figures
def test_make_figures_2d_and_report(tmp_path, data):
    x, y = data
    module = tiny_vae(2)
    module.train()
    figs = plots.make_figures(module, tmp_path, x, y, metrics_rows=metrics_rows())
    assert set(figs) == {"curves", "reconstructions", "samples", "manifold", "latent_space", "interpolation"}
    for name, path in figs.items():
        assert Path(path).parent == tmp_path and Path(path).name == f"{name}.png"
        check_png(path)
    assert module.training  # the training flag is restored
    manifold = check_png(figs["manifold"], min_size=400)
    assert abs(manifold.shape[0] - manifold.shape[1]) < 0.2 * manifold.shape[1]  # square-ish

    (tmp_path / "config.json").write_text(json.dumps({"model": {"latent_dim": 2}, "train": {"lr": 1e-3}}))
    (tmp_path / "summary.json").write_text(
        json.dumps({"best_val_elbo": -123.456, "epochs_run": 3, "train_time_s": 252.31419})
    )
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics_rows(12)))
    metrics = {
        "elbo": {"value": -101.23456, "se": 0.31234, "unit": "nats/image"},
        "active_units_z": 2,
        "IWAE|5000": -99.5,
    }
    md = write_report(tmp_path, metrics, figs)
    assert md == tmp_path / "report.md"
    text = md.read_text()
    for name in figs:
        assert f"]({name}.png)" in text  # relative links
    assert "| ELBO | -101.23 ± 0.31 | nats/image |" in text  # human name, rounded to what it means
    assert "| Active units of z | 2 |" in text
    assert "IWAE\\|5000" in text  # pipes escaped inside table cells
    assert "| Best validation ELBO | -123.46 nats/image |" in text and "| Training time | 4 min 12 s |" in text
    assert "model.latent_dim" in text  # the configuration keeps its setting names
    assert "last 10 of 12 epochs" in text and "| 12 | 120 |" in text and "| 2 | 20 |" not in text
    page = (tmp_path / "index.html").read_text()
    assert page.count("<img ") == len(figs) and page.count("<figcaption>") == len(figs)
    assert text.count("*Learned 2-D manifold") == 1  # one caption per figure


def test_report_plain_metrics_without_run_files(tmp_path):
    md = write_report(tmp_path / "new", {"log p(x)": -88.1, "k": 5000})
    text = md.read_text()
    assert "| measure | value | unit | note |" in text
    assert "| log p(x) | -88.1 |" in text and "| k | 5,000 |" in text and "## Latent space" not in text


def test_report_finds_pngs_when_figures_not_given(tmp_path):
    plots.plot_samples(tiny_vae(2), tmp_path / "samples.png", n=4)
    text = write_report(tmp_path).read_text()
    assert "![A grid of images generated from the prior](samples.png)" in text
    assert "*Samples from the model*" in text


def test_latent_dim_4_skips_manifold_and_uses_pca(tmp_path, data):
    x, y = data
    module = tiny_vae(4)
    figs = plots.make_figures(module, tmp_path, x, y)  # no metrics.jsonl: no curves either
    assert "manifold" not in figs and "curves" not in figs
    assert not (tmp_path / "manifold.png").exists()
    with pytest.raises(ValueError, match="latent_dim=4"):
        plots.plot_manifold(module, tmp_path / "m.png")
    check_png(figs["latent_space"])
    proj, ratio = plots.pca_2d(module.encode(x)[0])
    assert proj.shape == (16, 2) and 0 <= ratio[1] <= ratio[0] <= 1
    # the projection keeps the distances of the 2-D principal subspace: uncorrelated columns
    c = torch.cov(proj.T)
    assert abs(c[0, 1]) < 1e-4 * c.diag().max()


def test_latent_space_1d_without_labels_and_curves_from_metrics_file(tmp_path, data):
    x, _ = data
    module = tiny_vae(1)
    check_png(plots.plot_latent_space(module, x, None, tmp_path / "latent.png"))
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics_rows(2, False)))
    figs = plots.make_figures(module, tmp_path, x[:1])  # one test image: no interpolation
    assert "curves" in figs and "interpolation" not in figs and "manifold" not in figs


def test_curves_single_epoch_and_empty(tmp_path):
    check_png(plots.plot_curves(metrics_rows(1), tmp_path / "c.png"))
    with pytest.raises(ValueError):
        plots.plot_curves([], tmp_path / "c2.png")


def test_manifold_non_normal_prior_uses_sample_quantiles(tmp_path):
    module = tiny_vae(2, prior="mixture", prior_kwargs={"components": 3})
    q1, q2 = plots.manifold_grid(module, n=5)
    assert q1.shape == (5,) and (q1.diff() > 0).all() and (q2.diff() > 0).all()
    check_png(plots.plot_manifold(module, tmp_path / "m.png", n=5))


def test_manifold_normal_quantiles():
    q1, q2 = plots.manifold_grid(tiny_vae(2), n=3, lo=0.1, hi=0.9)
    torch.testing.assert_close(q1, torch.tensor([-1.2816, 0.0, 1.2816]), atol=1e-4, rtol=0)
    torch.testing.assert_close(q1, q2)


def test_figures_use_fixed_grey_scale(tmp_path):
    """A constant 0.2 image must come out dark grey, not stretched to white by auto-scaling."""

    class Const(torch.nn.Module):
        latent_dim, data_shape = 2, (1, 28, 28)

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def sample(self, n):
            return torch.full((n, 1, 28, 28), 0.2)

    img = mpimg.imread(plots.plot_samples(Const(), tmp_path / "s.png", n=1))
    # the image is the largest dark region; its grey level is 0.2 (within PNG rounding)
    values, counts = np.unique(np.round(img[..., 0], 2), return_counts=True)
    assert values[counts.argmax()] == pytest.approx(0.2, abs=0.01)


def test_manifold_orientation(tmp_path, monkeypatch):
    """z1 grows to the right and z2 upwards: a decoder that is white only for z1 > 0, z2 > 0
    must light the top-right quadrant of the drawn grid."""

    class Quadrant(torch.nn.Module):
        latent_dim, data_shape = 2, (1, 2, 2)

        def __init__(self):
            super().__init__()
            self.prior = StandardNormal(2)

        def decode(self, z):
            on = ((z[..., 0] > 0) & (z[..., 1] > 0)).float()
            return on[..., None, None, None].expand(*z.shape[:-1], 1, 2, 2)

    shown = {}
    monkeypatch.setattr(plots, "show", lambda ax, grid, extent=None: shown.update(grid=grid))
    plots.plot_manifold(Quadrant(), tmp_path / "m.png", n=4)
    g = shown["grid"]  # row 0 is drawn at the top
    assert g.shape == (8, 8)
    assert (g[:4, 4:] == 1).all() and g[4:, :].sum() == 0 and g[:, :4].sum() == 0

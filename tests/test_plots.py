"""Figures and the run report: files are written, are real PNGs, and show what they claim."""

import matplotlib.image as mpimg
import pytest
import torch

from pyro_vae import ModelConfig, build_model
from pyro_vae.plots import image_grid, make_figures, manifold_grid, plot_manifold
from pyro_vae.report import write_report


def _vae(latent_dim):
    torch.manual_seed(0)
    return build_model(ModelConfig(data_shape=(1, 28, 28), latent_dim=latent_dim, hidden=(32,)))


def _png(path):
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert img.std() > 0.01  # not a blank canvas
    return img


def test_image_grid_layout_and_placement():
    imgs = torch.zeros(6, 1, 3, 3)
    imgs[4, 0, 1, 2] = 1.0  # image 4 sits at row 1, column 1 of a 3-column grid
    grid = image_grid(imgs, nrow=3, pad=1, pad_value=0.5)
    assert grid.shape == (2 * 4 + 1, 3 * 4 + 1)
    assert grid[1 + 4 + 1, 1 + 4 + 2] == 1.0
    assert grid[0, 0] == 0.5 and grid[1, 1] == 0.0
    assert grid.max() == 1.0 and (grid == 1.0).sum() == 1
    rgb = image_grid(torch.rand(2, 3, 4, 4), nrow=2)
    assert rgb.shape == (6, 11, 3)
    assert image_grid(torch.full((1, 1, 2, 2), 7.0)).max() == 1.0  # clipped to [0, 1]
    with pytest.raises(ValueError, match="C=2"):
        image_grid(torch.zeros(1, 2, 3, 3))


def test_make_figures_and_report_for_a_2d_latent(tmp_path):
    vae = _vae(2)
    x = torch.bernoulli(torch.full((16, 1, 28, 28), 0.2))
    y = torch.arange(16) % 4
    rows = [{"epoch": e, "train_loss": 200.0 - e, "val_elbo": -190.0 + e, "kl_weight": 1.0} for e in (1, 2, 3)]
    figs = make_figures(vae, tmp_path, x, y, rows)
    assert set(figs) == {"curves", "reconstructions", "samples", "manifold", "latent_space", "interpolation"}
    for path in figs.values():
        _png(path)
    report = write_report(tmp_path, {"elbo": {"value": -123.4, "unit": "nats/image"}}, figs)
    text = report.read_text()
    assert "-123.4" in text and "nats/image" in text
    for name in figs:
        assert f"({name}.png)" in text


def test_larger_latent_uses_pca_and_has_no_manifold(tmp_path):
    vae = _vae(4)
    x = torch.bernoulli(torch.full((20, 1, 28, 28), 0.2))
    figs = make_figures(vae, tmp_path, x, None, [])
    assert "manifold" not in figs and "curves" not in figs
    _png(figs["latent_space"])
    with pytest.raises(ValueError, match="2"):
        plot_manifold(vae, tmp_path / "m.png")


def test_manifold_grid_uses_the_prior_quantiles():
    q1, q2 = manifold_grid(_vae(2), n=5)
    expected = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, 5))
    assert torch.allclose(q1, expected, atol=1e-5) and torch.allclose(q2, expected, atol=1e-5)
    assert q1[0].item() == pytest.approx(-1.645, abs=1e-3)
    torch.manual_seed(0)
    mix = build_model(ModelConfig(data_shape=(1, 28, 28), latent_dim=2, hidden=(32,), prior="mixture",
                                  prior_kwargs={"components": 3}))
    m1, _ = manifold_grid(mix, n=5)
    z = mix.prior().sample((20000,))[:, 0]
    # empirical quantiles of the mixture: 5% of draws below the first, 95% below the last
    assert (z < m1[0]).float().mean().item() == pytest.approx(0.05, abs=0.01)
    assert (z < m1[-1]).float().mean().item() == pytest.approx(0.95, abs=0.01)

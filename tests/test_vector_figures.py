"""Figures and report of a run on vectors (a data shape of one dimension): column-by-column
figures, no image grid, units per data point."""

from __future__ import annotations

import json

import pytest
import torch

from pyro_vae.config import ModelConfig
from pyro_vae.contract import traits
from pyro_vae.data.batch import Batch
from pyro_vae.figures import plots
from pyro_vae.figures.report import write_report
from pyro_vae.figures.vectors import columns_of, feature_log_prob
from pyro_vae.models import build_model

torch.set_num_threads(1)
SCHEMA = "a:real b:positive d:categorical:red|green|blue e:binary"  # 6 entries


def no_image_grid(monkeypatch):
    """Make any image grid an error: a table must not be drawn as one."""

    def refuse(*a, **k):
        raise AssertionError("an image grid was drawn for vector data")

    for name in ("image_grid", "show"):
        monkeypatch.setattr(plots, name, refuse)


def gaussian_run():
    torch.manual_seed(0)
    vae = build_model(ModelConfig(data_shape=(5,), latent_dim=2, hidden=(8,), likelihood="gaussian"))
    return vae, Batch(torch.randn(30, 5), torch.arange(30) % 3)


def table_run():
    torch.manual_seed(0)
    vae = build_model(
        ModelConfig(
            data_shape=(6,), latent_dim=2, hidden=(8,), likelihood="tabular", likelihood_kwargs={"schema": SCHEMA}
        )
    )
    g = torch.Generator().manual_seed(0)
    n = 30
    level = torch.randint(0, 3, (n,), generator=g)
    x = torch.cat(
        [
            torch.randn(n, 1, generator=g),
            torch.rand(n, 1, generator=g) + 0.5,
            torch.nn.functional.one_hot(level, 3).float(),
            torch.randint(0, 2, (n, 1), generator=g).float(),
        ],
        1,
    )
    x[3, 0] = float("nan")
    x[5, 2:5] = float("nan")
    return vae, Batch(x, level)


@pytest.mark.parametrize("run", [gaussian_run, table_run])
def test_a_vector_run_draws_columns_and_no_image_grid(run, tmp_path, monkeypatch):
    no_image_grid(monkeypatch)
    vae, data = run()
    assert {"manifold", "interpolation"} <= set(traits(vae).figures)  # what an image run would draw
    out = plots.make_figures(vae, tmp_path, data, metrics_rows=[])
    assert set(out) == {"reconstructions", "feature_log_lik", "samples", "latent_space"}
    for path in out.values():
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "manifold.png").exists() and not (tmp_path / "interpolation.png").exists()


def test_feature_log_prob_splits_the_density_by_column():
    vae, data = table_run()
    with torch.no_grad():
        params = vae.decoder(torch.randn(30, 2))
        per = feature_log_prob(vae.likelihood, params, data.x)
        assert per.shape == (30, 4) and torch.allclose(per.sum(-1), vae.likelihood(params).log_prob(data.x))
        assert per[5, 2] == 0  # the missing category
        gauss, g_data = gaussian_run()
        p = gauss.decoder(torch.randn(30, 2))
        assert torch.allclose(
            feature_log_prob(gauss.likelihood, p, g_data.x).sum(-1), gauss.likelihood(p).log_prob(g_data.x)
        )
    assert [c.name for c in columns_of(vae.likelihood, 6)] == ["a", "b", "d", "e"]
    assert [c.name for c in columns_of(gauss.likelihood, 5)] == ["x0", "x1", "x2", "x3", "x4"]


def test_the_report_of_a_vector_run_speaks_of_data_points(tmp_path, monkeypatch):
    no_image_grid(monkeypatch)
    vae, data = table_run()
    figures = plots.make_figures(vae, tmp_path, data, metrics_rows=[])
    (tmp_path / "config.json").write_text(
        json.dumps({"model": {"model": "vae", "data_shape": [6]}, "data": {"dataset": "t.csv", "scale": "a table"}})
    )
    (tmp_path / "summary.json").write_text(json.dumps({"best_val_elbo": -7.5, "epochs_run": 3}))
    metrics = {"num_images": {"value": 30, "unit": "images"}, "elbo": -7.6, "elbo_bpd": 1.8, "log_px": -7.4}
    md = write_report(tmp_path, metrics, figures).read_text()
    assert "nats/data point" in md and "Data points evaluated" in md and "Data: a table." in md
    assert "image" not in md.replace("![", "") and "bits/dim" not in md
    assert "observed against its reconstruction" in md and "log-likelihood log p(x_j" in md

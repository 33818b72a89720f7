"""beta-TCVAE (pyro_vae/models/tcvae.py), the family that landed as one file: its total-correlation
estimate against known answers, and the whole command line on it (train, evaluate, sample, plot,
report) with no other file knowing its name."""

import json
import math

import numpy as np
import pytest
import torch

from pyro_vae import Batch, ModelConfig, build_model
from pyro_vae.cli import main
from pyro_vae.models import MODELS
from pyro_vae.models.tcvae import TCVAE, total_correlation


def _codes(loc, scale, eps):
    return loc + scale * eps, loc, scale


def _gaussian_tc(corr: torch.Tensor) -> float:
    """The TC of a Gaussian with correlation matrix ``corr``: -1/2 log det(corr)."""
    return -0.5 * torch.logdet(corr).item()


def test_total_correlation_is_zero_for_independent_codes_and_positive_for_correlated_ones():
    """Common random numbers: the same standard-normal u (the code means) and eps (the draws) in
    every case. Independent codes: means u (M, D), q(z|x) = N(u, 1): the aggregate posterior is
    N(0, 2 I), TC 0. Correlated: means sqrt(rho) u_0 + sqrt(1 - rho) u_d, the aggregate posterior
    N(0, I + C) with correlation rho / 2 between dimensions."""
    g = torch.Generator().manual_seed(0)
    m, d, rho = 512, 3, 0.9
    u, eps = torch.randn(m, d, generator=g), torch.randn(m, d, generator=g)
    scale = torch.ones(m, d)

    same = total_correlation(*_codes(torch.zeros(m, d), scale, eps))  # q(z|x) not depending on x: exactly 0
    assert same.shape == (m,) and same.abs().max() < 1e-4

    independent = total_correlation(*_codes(u, scale, eps)).mean().item()
    correlated_loc = math.sqrt(rho) * u[:, :1] + math.sqrt(1 - rho) * u
    correlated = total_correlation(*_codes(correlated_loc, scale, eps)).mean().item()
    exact = _gaussian_tc(torch.full((d, d), rho / 2).fill_diagonal_(1.0))  # 0.28 nats
    assert abs(independent) < 0.05, independent
    assert correlated > independent + 0.2 and abs(correlated - exact) < 0.2, (correlated, exact)


def test_total_correlation_is_chens_minibatch_weighted_sampling_less_a_constant():
    """Chen et al. subtract log(N M) in each logsumexp; the family subtracts log M: the two differ
    by (D - 1) log N, the same for every code (so the same gradient). Chunking changes nothing."""
    g = torch.Generator().manual_seed(1)
    m, d, n = 40, 4, 60_000
    loc, scale = torch.randn(m, d, generator=g), 0.1 + torch.rand(m, d, generator=g)
    z = loc + scale * torch.randn(m, d, generator=g)
    log_q = torch.distributions.Normal(loc[None], scale[None]).log_prob(z[:, None])  # (i, j, d)
    mws = (torch.logsumexp(log_q.sum(-1), 1) - math.log(n * m)) - (torch.logsumexp(log_q, 1) - math.log(n * m)).sum(-1)
    ours = total_correlation(z, loc, scale, chunk=7)
    assert torch.allclose(mws - ours, torch.full((m,), (d - 1) * math.log(n)), atol=1e-3)
    assert torch.allclose(ours, total_correlation(z, loc, scale), atol=1e-5)


def test_the_penalty_is_weighted_and_reaches_the_encoder():
    family = build_model(ModelConfig(model="tcvae", data_shape=(1, 8, 8), latent_dim=3, hidden=(16,), tc_weight=2.0))
    assert isinstance(family, TCVAE) and MODELS["tcvae"] is TCVAE
    x = (torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    torch.manual_seed(3)
    full = family.extra_loss(Batch(x), num_data=100, kl_weight=torch.tensor(1.0))
    torch.manual_seed(3)
    half = family.extra_loss(Batch(x), num_data=100, kl_weight=torch.tensor(0.5))
    assert torch.allclose(half, 0.5 * full)
    full.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in family.encoder.parameters())
    assert family.extra_loss(Batch(x[:1]), num_data=100) is None
    off = build_model(ModelConfig(model="tcvae", data_shape=(1, 8, 8), latent_dim=3, hidden=(16,), tc_weight=0.0))
    assert off.extra_loss(Batch(x), num_data=100) is None
    assert family.metrics(Batch(x)) == family.metrics(Batch(x))  # a fixed draw


@pytest.fixture
def toy_images(tmp_path):
    """300 seeded binary 8x8 images with 3 labels, as a .npz file."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(300, 1, 8, 8, generator=g) < 0.3).float()
    path = tmp_path / "toy.npz"
    np.savez(path, x=x.numpy(), y=(torch.arange(300) % 3).numpy())
    return path


def test_the_command_line_trains_evaluates_samples_plots_and_reports_it(tmp_path, toy_images, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "tcvae",
                "--tc-weight",
                "3",
                "--dataset",
                str(toy_images),
                "--epochs",
                "2",
                "--latent-dim",
                "3",
                "--hidden",
                "16",
                "--batch-size",
                "64",
                "--eval-k",
                "5",
                "--no-progress",
                "--device",
                "cpu",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["model"] == "tcvae" and config["model"]["options"]["tc_weight"] == 3.0
    test = json.loads((run / "metrics_test.json").read_text())
    assert math.isfinite(test["total_correlation"]["value"]) and test["log_px"]["value"] < 0
    for name in ("traversals.png", "samples.png", "reconstructions.png", "report.md", "index.html"):
        assert (run / name).stat().st_size > 0, name
    report = (run / "report.md").read_text()
    assert "Latent traversals" in report and "Rows of images, each changing along one latent dimension" in report

    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "5", "--no-progress"]) == 0
    assert "total_correlation" in capsys.readouterr().out
    assert main(["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    (run / "traversals.png").unlink()
    assert main(["plot", str(run)]) == 0
    assert (run / "traversals.png").stat().st_size > 0

"""Count data: the likelihoods poisson, nb and zinb against scipy on hand-made values, their
support checks, the simulated data set, the scVI-style count VAE (its sites, its KL weight, its
size factor), the dispersion it recovers, and the command line on counts."""

import json
import math

import numpy as np
import pytest
import torch
from pyro import poutine
from scipy import stats
from scipy.stats import spearmanr

from pyro_vae import Batch, ModelConfig, TrainConfig, build_model, evaluate, fit
from pyro_vae.cli import main
from pyro_vae.components.likelihoods import LIKELIHOODS, build_likelihood
from pyro_vae.data.counts import CountSimulation, simulate_counts
from pyro_vae.inference.scaling import Scaled
from pyro_vae.models.countvae import CountVAE, count_likelihoods

# in float64, so the comparisons with scipy are to 1e-9 (float32's lgamma(300) is good to 1e-5)
X = torch.tensor([[0.0, 1.0, 3.0, 12.0, 0.0, 250.0]], dtype=torch.float64)  # counts, one data point of 6 features
MU = torch.tensor([[0.5, 2.0, 3.0, 7.5, 0.01, 300.0]], dtype=torch.float64)  # the means
THETA = torch.tensor([0.3, 1.0, 2.5, 10.0, 4.0, 50.0], dtype=torch.float64)  # a dispersion per feature
PI = torch.tensor([0.1, 0.5, 0.02, 0.3, 0.9, 0.2], dtype=torch.float64)  # zinb's zero probability per feature


def _sum(values) -> float:
    return float(np.sum(values))


def test_the_count_likelihoods_are_registered_choices():
    assert {"poisson", "nb", "zinb"} <= set(LIKELIHOODS) and count_likelihoods() == ["nb", "poisson", "zinb"]


def test_poisson_log_prob_and_mean_match_scipy():
    lik = build_likelihood("poisson", (6,)).double()
    expected = _sum(stats.poisson.logpmf(X.numpy(), MU.numpy()))
    assert lik(MU.log()).log_prob(X).item() == pytest.approx(expected, rel=1e-9)
    assert torch.allclose(lik.mean(MU.log()), MU)


def test_nb_log_prob_mean_and_variance_match_scipy():
    """scipy's nbinom(n, p) counts failures before n successes: n = theta, p = theta / (theta + mu)
    has mean mu and variance mu + mu^2 / theta, scVI's NB(mu, theta)."""
    lik = build_likelihood("nb", (6,)).double()
    with torch.no_grad():
        lik.log_theta.copy_(THETA.log())
    mu, theta = MU.numpy(), THETA.numpy()
    p = theta / (theta + mu)
    with torch.no_grad():
        d = lik(MU.log())
    assert d.log_prob(X).item() == pytest.approx(_sum(stats.nbinom.logpmf(X.numpy(), theta, p)), rel=1e-9)
    assert torch.allclose(lik.mean(MU.log()), MU)
    assert np.allclose(d.variance.numpy(), stats.nbinom.var(theta, p), rtol=1e-9)
    assert np.allclose(d.mean.numpy(), mu, rtol=1e-9)


def test_zinb_log_prob_is_the_mixture_formula():
    """log p(x) = log(pi [x = 0] + (1 - pi) NB(x; mu, theta)), by hand with scipy's pmf."""
    lik = build_likelihood("zinb", (6,)).double()
    with torch.no_grad():
        lik.log_theta.copy_(THETA.log())
        lik.gate_logits.copy_(torch.logit(PI))
    x, mu, theta, pi = X.numpy(), MU.numpy(), THETA.numpy(), PI.numpy()
    pmf = pi * (x == 0) + (1 - pi) * stats.nbinom.pmf(x, theta, theta / (theta + mu))
    assert lik(MU.log()).log_prob(X).item() == pytest.approx(_sum(np.log(pmf)), rel=1e-9)
    assert torch.allclose(lik.mean(MU.log()), (1 - PI) * MU)


@pytest.mark.parametrize("name", ["poisson", "nb", "zinb"])
def test_count_likelihoods_name_the_value_outside_their_support(name):
    lik = build_likelihood(name, (20,))
    x = torch.zeros(5, 20)
    x[1, 2] = 4.0
    lik.check_data(x)  # whole numbers >= 0
    x[3, 17] = -1.0
    with pytest.raises(ValueError, match=r"count data must be whole numbers >= 0; found -1 at index \(3, 17\)"):
        lik.check_data(x)
    x[3, 17], x[0, 5], x[4, 0] = 0.0, 2.5, 0.25
    with pytest.raises(ValueError, match=r"found 2.5 at index \(0, 5\) \(2 such values\)"):
        lik.check_data(x)
    with pytest.raises(ValueError, match="NaN"):
        lik.check_data(torch.tensor([[0.0, float("nan")] + [0.0] * 18]))
    with pytest.raises(ValueError, match="divided by 255: store counts as wider integers"):
        lik.check_data(torch.tensor([[0.0, 3.0, 1.0] + [0.0] * 17]) / 255)  # counts saved as uint8


def test_the_simulation_is_seeded_and_keeps_its_parameters():
    a, b = (
        simulate_counts(train=50, val=10, test=20, genes=7, seed=3),
        simulate_counts(train=50, val=10, test=20, genes=7, seed=3),
    )
    assert torch.equal(a.train.x, b.train.x) and not torch.equal(a.train.x[:10], a.val.x)
    for split in (a.train, a.val, a.test):
        assert split.x.shape[1] == 7 and (split.x == split.x.round()).all() and (split.x >= 0).all()
        assert split.y is not None and split.y.max() < 5
    sim = CountSimulation.make(genes=7, seed=3)
    assert sim.dispersion.shape == (7,) and sim.weights.shape == (7, 4) and sim.centers.shape == (5, 4)
    with pytest.raises(ValueError, match="zero_inflation"):
        CountSimulation.make(zero_inflation=1.5)


def test_the_simulation_is_the_named_data_set_simcounts_whatever_the_seed():
    from pyro_vae.data.datasets import load_data

    named, direct = load_data("simcounts", seed=5), simulate_counts(seed=0)
    for a, b in ((named.train, direct.train), (named.val, direct.val), (named.test, direct.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert named.train.x.shape == (4000, 200) and len(named.val) == 1000 and len(named.test) == 2000


def _family(library="observed", likelihood="nb", genes=8):
    return build_model(
        ModelConfig(
            model="countvae", data_shape=(genes,), latent_dim=2, hidden=(16,), likelihood=likelihood, library=library
        )
    )


def test_the_kl_weight_scales_z_and_not_the_library():
    """kl_sites = ("z",): beta and warm-up weigh the KL of z; l (inferred library) and x get N/B only."""
    family = _family("inferred")
    assert isinstance(family, CountVAE) and family.kl_sites == ("z",)
    x = simulate_counts(train=10, val=2, test=2, genes=8).train.x
    family.set_library_prior(x)
    scaled = Scaled(family)
    guide = poutine.trace(scaled.guide).get_trace(x, kl_weight=0.25, num_data=100)
    model = poutine.trace(poutine.replay(scaled.model, guide)).get_trace(x, kl_weight=0.25, num_data=100)
    for trace in (guide, model):
        assert trace.nodes["z"]["scale"] == pytest.approx(10 * 0.25) and trace.nodes["l"]["scale"] == pytest.approx(10)
    assert model.nodes["x"]["scale"] == pytest.approx(10)
    assert family.latent_sites == ("z", "l") and _family("observed").latent_sites == ("z",)


def test_the_size_factor_scales_the_proportions():
    """observed: log mu = log softmax(decoder(z)) + log(row total); the mean of a row sums to its total."""
    family = _family("observed")
    x = torch.tensor([[0.0, 3, 1, 0, 9, 2, 0, 5], [10.0, 0, 0, 0, 0, 0, 0, 0]])
    trace = poutine.trace(family.model).get_trace(x)
    mean = family.likelihood.mean(trace.nodes["x"]["fn"].base_dist.logits + family.likelihood.log_theta)
    assert torch.allclose(mean.sum(-1), x.sum(-1), rtol=1e-5)
    with pytest.raises(ValueError, match="row 1 sums to 0"):
        family.check_batch(Batch(torch.cat([x[:1], torch.zeros(1, 8)])))
    none = _family("none")
    assert "l" not in poutine.trace(none.model).get_trace(x).nodes


def test_the_library_prior_comes_from_the_data_and_is_kept():
    family = _family("inferred")
    with pytest.raises(ValueError, match="library prior is not set"):
        family.sample(3)
    x = simulate_counts(train=200, val=2, test=2, genes=8).train.x
    family.set_library_prior(x)
    logs = x.sum(-1).log()
    assert family.library_loc.item() == pytest.approx(logs.mean().item(), rel=1e-9)
    assert family.library_scale.item() == pytest.approx(logs.std(correction=0).item(), rel=1e-4)
    again = _family("inferred")
    again.load_state_dict(family.state_dict())
    assert again.library_loc == family.library_loc and again.sample(4, mean=False).shape == (4, 8)


def test_the_count_vae_refuses_a_likelihood_that_is_not_for_counts():
    with pytest.raises(ValueError, match="likelihood of counts"):
        _family(likelihood="gaussian")


def test_the_count_vae_recovers_the_simulated_dispersion():
    """100 genes with large counts (about 200 a gene a cell), one cell type (so the simulation is
    itself a count VAE with a linear decoder and an inferred library), theta in [0.5, 5]. Trained
    for 40 epochs (lr 3e-3, a 20-epoch KL warm-up), the learned theta must match the truth:

    * the median over genes of |log theta_hat - log theta| below 0.1 (theta within 10%). The noise
      floor is 0.02 to 0.03 (the NB maximum-likelihood estimate given the true means of the 2,000
      cells); the rest is the guide's spread, which the ELBO counts as extra variance, so theta
      comes out low. Simulation and training seeds 0 to 3 give 0.021, 0.044, 0.030 and 0.091 (seed
      3 has genes with few counts, where theta is hard to tell from infinity); theta = 1 for every
      gene, where training starts, is 0.6 off;
    * the rank correlation with the truth above 0.9 (seeds 0 to 3: 0.998, 0.986, 0.998, 0.929):
      the genes are told apart, not just the level.
    """
    shape = dict(genes=100, latent_dim=2, cell_types=1, bias_scale=0.5, library_loc=10.0, dispersion_range=(0.5, 5.0))
    data = simulate_counts(train=2000, val=500, test=200, seed=0, **shape)
    truth = torch.tensor(CountSimulation.make(seed=0, **shape).dispersion, dtype=torch.float32)
    torch.manual_seed(0)
    family = build_model(
        ModelConfig(
            model="countvae", data_shape=(100,), latent_dim=2, hidden=(32,), likelihood="nb", library="inferred"
        )
    )
    start = (family.likelihood.log_theta.detach() - truth.log()).abs().median().item()
    fit(
        family,
        data,
        TrainConfig(epochs=40, batch_size=64, lr=3e-3, warmup_epochs=20, patience=None, device="cpu"),
        progress=False,
    )
    theta = family.likelihood.dispersion.detach()
    error = (theta.log() - truth.log()).abs().median().item()
    assert start > 0.5 and error < 0.1, (start, error)
    assert spearmanr(theta.numpy(), truth.numpy()).statistic > 0.9
    m = evaluate(family, data.test, k=20)
    assert m["log_px"]["value"] >= m["elbo"]["value"] - 0.5


@pytest.fixture
def count_file(tmp_path):
    data = simulate_counts(train=240, val=1, test=1, genes=12, library_loc=math.log(300))
    path = tmp_path / "counts.npz"
    np.savez(path, x=data.train.x.numpy().astype(np.int64), y=data.train.y.numpy())
    return path


FAST = [
    "--epochs",
    "2",
    "--batch-size",
    "64",
    "--eval-k",
    "5",
    "--no-progress",
    "--device",
    "cpu",
    "--latent-dim",
    "2",
    "--hidden",
    "16",
]


def test_the_command_line_trains_and_evaluates_the_count_vae(tmp_path, count_file, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "countvae",
                "--likelihood",
                "zinb",
                "--library",
                "inferred",
                "--dataset",
                str(count_file),
                "--out",
                str(run),
                *FAST,
            ]
        )
        == 0
    )
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["options"]["library"] == "inferred" and config["train"]["binarize"] == "none"
    test = json.loads((run / "metrics_test.json").read_text())
    assert math.isfinite(test["log_px"]["value"]) and test["log_px"]["value"] < 0
    for name in ("mean_variance.png", "latent_space.png", "report.md"):
        assert (run / name).stat().st_size > 0, name
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "5", "--no-progress"]) == 0
    assert "log_px" in capsys.readouterr().out


def test_a_plain_vae_takes_a_count_likelihood_without_a_size_factor(tmp_path, count_file):
    run = tmp_path / "vae"
    assert (
        main(
            [
                "train",
                "--model",
                "vae",
                "--likelihood",
                "poisson",
                "--dataset",
                str(count_file),
                "--out",
                str(run),
                "--no-plots",
                *FAST,
            ]
        )
        == 0
    )
    assert json.loads((run / "metrics_test.json").read_text())["log_px"]["value"] < 0


def test_the_command_line_names_a_value_that_is_not_a_count(tmp_path, capsys):
    x = np.ones((40, 6))
    x[3, 4] = 0.5
    path = tmp_path / "bad.npy"
    np.save(path, x)
    assert main(["train", "--model", "countvae", "--dataset", str(path), "--out", str(tmp_path / "r"), *FAST]) != 0
    out = capsys.readouterr()
    assert "count data must be whole numbers >= 0; found 0.5 at index" in out.out + out.err

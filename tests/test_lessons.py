"""The textbook lessons as features: the autoencoder as a Pyro program, denoising, the samplers,
score-function vs reparameterized gradients, and the terms of log p(x) against exact answers."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from test_evaluation import PosteriorEncoder, _data, _exact_log_px, _ppca_vae

from pyro_vae.analysis.evaluate import evaluate, format_table
from pyro_vae.cli import main
from pyro_vae.config import ModelConfig
from pyro_vae.data.batch import Batch
from pyro_vae.inference.estimators import gradient_variance, mean_gradient
from pyro_vae.models import build_model
from pyro_vae.models.vae import corrupt
from pyro_vae.inference.objectives import Loss
from pyro_vae.analysis.samplers import GaussianMixture, fit_code_mixture, generate


def _ae(prior_term="off", **opts):
    return build_model(
        ModelConfig("ae", (1, 28, 28), None, {"latent_dim": 3, "hidden": (32,), "prior_term": prior_term, **opts})
    )


@pytest.mark.parametrize("prior_term", ["off", "on"])
def test_point_mass_guide_objective_is_log_px_given_the_code(prior_term, mnist_bin):
    """Trace_ELBO on the AE = log p(x|z) (+ log p(z)) at z = encoder(x), by hand."""
    ae = _ae(prior_term)
    x = mnist_bin[0][:16]
    loss = Loss(ae, "trace")(Batch(x), 1.0, num_data=None)
    with torch.no_grad():
        z = ae.encoder(x)[0]
        by_hand = torch.distributions.Bernoulli(logits=ae.decoder(z)).log_prob(x).sum((1, 2, 3))
        if prior_term == "on":
            by_hand = by_hand + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(-loss.detach(), by_hand.sum(), rtol=1e-5)
    # no parameter is left without a gradient (the encoder's scale layer is gone)
    loss.backward()
    assert all(p.grad is not None for p in ae.parameters())


def test_evaluate_declines_log_px_for_an_autoencoder_and_keeps_reconstruction(mnist_bin):
    ae = _ae()
    x = mnist_bin[1][:50]
    m = evaluate(ae, x, k=10)
    for name in ("log_px", "elbo", "gap"):
        assert m[name]["value"] is None and "point mass" in m[name]["note"]
    assert math.isfinite(m["recon_log_lik"]["value"]) and m["recon_log_lik"]["value"] < 0
    assert "undefined" in format_table(m)
    with torch.no_grad():
        by_hand = torch.distributions.Bernoulli(logits=ae.decoder(ae.encoder(x)[0])).log_prob(x).sum((1, 2, 3))
    assert m["recon_log_lik"]["value"] == pytest.approx(by_hand.mean().item(), rel=1e-5)


def test_denoising_corrupts_the_encoder_input_only_in_training():
    x = torch.ones(1000, 1, 4, 4)
    masked = corrupt(x, "mask", 0.3)
    assert 0.25 < (masked == 0).float().mean().item() < 0.35
    assert torch.equal(corrupt(x, "none", 0.3), x)
    noisy = corrupt(x, "gaussian", 0.5)
    assert abs((noisy - x).std().item() - 0.5) < 0.02
    vae = build_model(
        ModelConfig("vae", (1, 4, 4), None, {"latent_dim": 2, "hidden": (8,), "noise": "mask", "noise_rate": 0.5})
    )
    xs = torch.ones(64, 1, 4, 4)
    seen = []
    vae.encoder.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].clone()))
    vae.train()
    poutine.trace(vae.guide).get_trace(xs)
    vae.eval()
    poutine.trace(vae.guide).get_trace(xs)
    assert (seen[0] == 0).any() and torch.equal(seen[1], xs)
    with pytest.raises(ValueError, match="probability"):
        build_model(ModelConfig("vae", (1, 4, 4), None, {"noise": "mask", "noise_rate": 1.5}))


def test_gaussian_mixture_recovers_two_clusters_and_samples_from_them():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 2, generator=g) * 0.1 + torch.tensor([3.0, 0.0])
    b = torch.randn(500, 2, generator=g) * 0.1 - torch.tensor([3.0, 0.0])
    gm = GaussianMixture(2, seed=0).fit(torch.cat([a, b]))
    means = gm.means[gm.means[:, 0].argsort()]
    assert torch.allclose(means, torch.tensor([[-3.0, 0.0], [3.0, 0.0]], dtype=torch.float64), atol=0.05)
    assert torch.allclose(gm.weights, torch.full((2,), 0.5, dtype=torch.float64), atol=0.01)
    draws = gm.sample(2000, generator=torch.Generator().manual_seed(1))
    assert ((draws[:, 0].abs() - 3.0).abs() < 0.5).float().mean() > 0.99  # no draw between the clusters


def test_mixture_sampler_decodes_codes_of_an_autoencoder(mnist_bin):
    ae = _ae()
    gm = fit_code_mixture(ae, mnist_bin[0][:300], components=3, seed=0)
    x = generate(ae, 20, "mixture", gm)
    assert x.shape == (20, 1, 28, 28) and ((x >= 0) & (x <= 1)).all()
    with pytest.raises(ValueError, match="fitted"):
        generate(ae, 5, "mixture", None)


def _tiny_vae(estimator):
    torch.manual_seed(0)
    return build_model(
        ModelConfig(
            "vae", (6,), None, {"latent_dim": 2, "hidden": (5,), "likelihood": "gaussian", "estimator": estimator}
        )
    )


def test_score_function_and_reparameterized_gradients_agree_in_expectation_and_differ_in_variance():
    x = Batch(torch.randn(4, 6, generator=torch.Generator().manual_seed(3)))
    reparam, score = _tiny_vae("reparam"), _tiny_vae("score")
    score.load_state_dict(reparam.state_dict())
    assert score.default_objective == "graph"
    pyro.set_rng_seed(1)
    runs_r = [mean_gradient(reparam, x, draws=1, num_particles=1000) for _ in range(20)]
    runs_s = [mean_gradient(score, x, draws=1, num_particles=1000) for _ in range(20)]
    for name in runs_r[0]:  # every coordinate: the two means within 5 standard errors of each other
        r, s = (torch.stack([run[name] for run in runs]) for runs in (runs_r, runs_s))
        se = (r.var(0) / len(r) + s.var(0) / len(s)).sqrt() + 1e-6
        z = (s.mean(0) - r.mean(0)) / se
        assert z.abs().max() < 5, (name, z.abs().max())
        assert z.pow(2).mean() < 3, (name, z.pow(2).mean())  # z-scores look standard, not shifted
    pyro.set_rng_seed(3)
    var_s = gradient_variance(score, x, draws=300, burn_in=0)
    var_r = gradient_variance(reparam, x, draws=300, burn_in=0)
    # the score function is far noisier for the guide (encoder); the decoder's gradient is the same kind
    assert var_s["encoder"]["variance"] > 10 * var_r["encoder"]["variance"]


def test_baselines_reduce_the_score_function_variance(mnist_bin):
    x = Batch(mnist_bin[0][:32])
    out = {}
    for estimator in ("score", "score-avg"):
        torch.manual_seed(0)
        vae = build_model(
            ModelConfig("vae", (1, 28, 28), None, {"latent_dim": 4, "hidden": (32,), "estimator": estimator})
        )
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        out[estimator] = gradient_variance(vae, x, draws=60, burn_in=20)["encoder"]["variance"]
    assert out["score-avg"] < 0.5 * out["score"], out


def test_inference_gap_equals_the_exact_kl_to_the_posterior_for_ppca():
    """log p(x) - ELBO = KL(q(z|x) || p(z|x)): in the linear-Gaussian model both are exact."""
    vae, W, b = _ppca_vae(shift=0.3, scale_factor=1.6)
    x = _data(n=400)
    torch.manual_seed(0)
    per = {}
    m = evaluate(vae, x, k=3000, batch_size=100, per_image=per)
    q_loc, q_scale = vae.encoder(x)
    p_loc, p_scale = PosteriorEncoder(W, b)(x)
    exact_gap = torch.distributions.kl_divergence(dist.Normal(q_loc, q_scale), dist.Normal(p_loc, p_scale)).sum(-1)
    exact_lpx = _exact_log_px(x, W, b)
    assert m["log_px"]["value"] == pytest.approx(exact_lpx.mean().item(), abs=0.01)
    assert m["gap"]["value"] == pytest.approx(exact_gap.mean().item(), abs=3 * m["gap"]["se"] + 0.01)
    assert "closed form" in m["kl"]["note"]
    # the terms add up per image: log p(x) = recon - KL + gap
    assert torch.allclose(per["recon_log_lik"] - per["kl"] + per["gap"], per["log_px"], atol=1e-4)
    assert set(per) == {"recon_log_lik", "kl", "elbo", "log_px", "gap"}


def test_cli_ae_run_sample_with_both_samplers(tmp_path):
    run = tmp_path / "ae"
    assert (
        main(
            [
                "train",
                "--model",
                "ae",
                "--latent-dim",
                "2",
                "--hidden",
                "32",
                "--epochs",
                "1",
                "--noise",
                "gaussian",
                "--noise-rate",
                "0.2",
                "--out",
                str(run),
                "--eval-k",
                "10",
                "--no-progress",
                "--no-plots",
            ]
        )
        == 0
    )
    assert main(["sample", str(run), "-n", "16", "--sampler", "mixture", "--components", "3"]) == 0
    assert (run / "samples_mixture.png").exists()
    assert main(["sample", str(run), "-n", "16"]) == 0
    assert (run / "samples.png").exists()
    text = (run / "metrics_test.txt").read_text()
    assert "undefined" in text and "recon_log_lik" in text
    assert (
        main(
            [
                "evaluate",
                str(run),
                "--generation",
                "--num-generated",
                "200",
                "--sampler",
                "mixture",
                "--components",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    scores = json.loads((run / "generation_mnist5k_val_mixture_c2_n200.json").read_text())
    assert scores["frechet_distance"]["value"] > 0 and scores["num_generated"]["value"] == 200
    assert (run / "feature_classifier.pt").exists()  # trained once, cached for the next call


def test_generation_scores_need_labels(tmp_path, capsys):
    x = (torch.rand(300, 1, 8, 8) > 0.5).float()
    np_path = tmp_path / "unlabelled.npy"
    import numpy as np

    np.save(np_path, x.numpy())
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(np_path),
                "--latent-dim",
                "2",
                "--hidden",
                "8",
                "--epochs",
                "1",
                "--out",
                str(run),
                "--eval-k",
                "0",
                "--no-progress",
                "--no-plots",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", str(run), "--generation", "--num-generated", "50"]) == 2
    assert "needs a labelled image data set" in capsys.readouterr().err


def test_prior_sampler_draws_m2_class_too_and_refuses_a_conditional_family():
    m2 = build_model(ModelConfig("ssvae", (1, 8, 8), 3, {"latent_dim": 2, "hidden": (8,)}))
    x = generate(m2, 6, "prior", mean=False)
    assert x.shape == (6, 1, 8, 8) and ((x == 0) | (x == 1)).all()
    cvae = build_model(ModelConfig("cvae", (1, 8, 8), 3, {"latent_dim": 2, "hidden": (8,)}))
    with pytest.raises(ValueError, match="conditional"):
        generate(cvae, 6, "prior")

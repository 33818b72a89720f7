"""The evaluator against exact answers.

Probabilistic PCA as a VAE: z ~ N(0, I_d), x | z ~ N(W z + b, s^2 I_D). Its marginal is
N(x; b, W W^T + s^2 I) and its posterior is N(Sigma W^T (x - b) / s^2, Sigma) with
Sigma = (I + W^T W / s^2)^-1. With orthogonal columns in W, Sigma is diagonal, so the
library's diagonal Gaussian guide can represent the exact posterior.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_vae import VAE, Dataset, TrainConfig, fit
from pyro_vae.analysis.evaluate import evaluate, format_table
from pyro_vae.inference import marginal as ev
from pyro_vae.components.likelihoods import GaussianLikelihood
from pyro_vae.components.priors import StandardNormal

D, d, S = 6, 2, 0.5


def _ppca_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, d, generator=g))
    W = q * torch.tensor([2.0, 0.7])  # orthogonal columns, different lengths
    b = torch.randn(D, generator=g)
    return W, b


class LinearDecoder(nn.Module):
    def __init__(self, W, b):
        super().__init__()
        self.lin = nn.Linear(d, D)
        with torch.no_grad():
            self.lin.weight.copy_(W)
            self.lin.bias.copy_(b)

    def forward(self, z):
        return self.lin(z)


class PosteriorEncoder(nn.Module):
    """q(z|x) = the exact posterior, optionally perturbed (mean shift, scale factor)."""

    def __init__(self, W, b, shift=0.0, scale_factor=1.0):
        super().__init__()
        self.W, self.b, self.shift, self.scale_factor = W, b, shift, scale_factor
        self.var = 1.0 / (1.0 + (W * W).sum(0) / S**2)  # diagonal of Sigma

    def forward(self, x):
        loc = (x - self.b) @ self.W * self.var / S**2 + self.shift
        return loc, (self.var.sqrt() * self.scale_factor).expand_as(loc)


def _ppca_vae(shift=0.0, scale_factor=1.0, seed=0):
    W, b = _ppca_params(seed)
    vae = VAE(
        PosteriorEncoder(W, b, shift, scale_factor),
        LinearDecoder(W, b),
        StandardNormal(d),
        GaussianLikelihood((D,), scale=S),
        (D,),
        d,
    )
    return vae, W, b


def _exact_log_px(x, W, b):
    return dist.MultivariateNormal(b, W @ W.T + S**2 * torch.eye(D)).log_prob(x)


def _data(n=7, seed=1):
    W, b = _ppca_params()
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g)
    return z @ W.T + b + S * torch.randn(n, D, generator=g)


def test_exact_posterior_guide_makes_the_elbo_equal_log_px():
    vae, W, b = _ppca_vae()
    x = _data()
    exact = _exact_log_px(x, W, b)
    # every log weight equals log p(x) when q is the posterior: no Monte Carlo error at all
    lw = ev.log_weights(vae.model, vae.guide, x, num_particles=5)
    assert lw.shape == (5, 7)
    assert torch.allclose(lw, exact.expand(5, 7), atol=1e-4)
    assert torch.allclose(ev.elbo(vae.model, vae.guide, x), exact, atol=1e-4)
    ll, kl = ev.elbo_terms(vae.model, vae.guide, x, analytic=False)  # log p(x,z) - log q(z|x): exact
    assert torch.allclose(ll - kl, exact, atol=1e-4)
    info = {}
    _, kl_closed = ev.elbo_terms(vae.model, vae.guide, x, info=info)  # KL(q || p(z)) in closed form
    loc, scale = vae.encoder(x)
    by_hand = 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log()).sum(-1)
    assert torch.allclose(kl_closed, by_hand, atol=1e-5) and info == {"analytic": ["z"], "sampled": []}
    # chunked particles (chunk 3 of 10, uneven) still give the exact value
    assert torch.allclose(ev.log_marginal(vae.model, vae.guide, x, num_particles=10, chunk_size=3), exact, atol=1e-4)


def test_particle_chunks_follow_free_memory(monkeypatch):
    """The automatic chunk shrinks with the free memory the device reports, and the estimate
    does not depend on it."""
    from pyro_vae import devices

    vae, W, b = _ppca_vae()  # the exact posterior as guide: every weight is log p(x), whatever the chunks
    x = _data(n=4)
    exact = _exact_log_px(x, W, b)
    # plenty free (pinned, so the test does not depend on this machine's RAM): the cap decides
    monkeypatch.setattr(devices, "memory_budget", lambda device="cpu": 64 * 2**30)
    assert ev._auto_chunk(5000, 100, 784) == ev.CHUNK_NUMBERS // (100 * 784)
    seen = []
    real = ev.log_marginal_batch

    def spy(*args, **kwargs):
        seen.append(ev._auto_chunk(40, x.shape[0], D))
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "log_marginal_batch", spy)
    torch.manual_seed(0)
    roomy = ev.log_marginal(vae.model, vae.guide, x, num_particles=40)
    monkeypatch.setattr(devices, "memory_budget", lambda device="cpu": 4 * ev.WORKING_COPIES * 3 * 4 * D)
    torch.manual_seed(0)
    tight = ev.log_marginal(vae.model, vae.guide, x, num_particles=40)
    assert seen == [40, 3]  # 3 particles x 4 points x D numbers fit the reported memory
    assert torch.allclose(roomy, exact, atol=1e-4) and torch.allclose(tight, exact, atol=1e-4)
    assert ev.chunk_budget("cpu") == 3 * 4 * D


def test_elbo_is_below_log_px_for_an_imperfect_guide():
    vae, W, b = _ppca_vae(shift=0.3, scale_factor=1.6)
    x = _data(n=20)
    exact = _exact_log_px(x, W, b)
    torch.manual_seed(0)
    k = 20000
    lw = ev.log_weights(vae.model, vae.guide, x, num_particles=k)
    elbo, se = lw.mean(0), lw.std(0) / math.sqrt(k)
    gap = exact - elbo
    # the gap is KL(q || posterior) > 0, here computable exactly: q and p(z|x) are both diagonal
    q_loc, q_scale = vae.encoder(x)
    p_loc, p_scale = PosteriorEncoder(W, b)(x)
    true_gap = torch.distributions.kl_divergence(dist.Normal(q_loc, q_scale), dist.Normal(p_loc, p_scale)).sum(-1)
    assert (gap > 10 * se).all()
    assert ((gap - true_gap).abs() < 5 * se).all(), (gap, true_gap, se)


def test_importance_sampled_log_px_converges_to_the_exact_value():
    vae, W, b = _ppca_vae(shift=0.4, scale_factor=1.5)
    x = _data(n=9)
    exact = _exact_log_px(x, W, b)
    torch.manual_seed(0)
    errors = []
    for k in (1, 30, 3000):
        errors.append((ev.log_marginal(vae.model, vae.guide, x, num_particles=k) - exact).abs().mean().item())
    assert errors[0] > errors[1] > errors[2]
    # Tolerance from the weights themselves: the delta-method standard error of
    # log mean_k w_k is sqrt(Var(w) / K) / E[w]; we allow 5 of them per data point.
    k = 20000
    lw = ev.log_weights(vae.model, vae.guide, x, num_particles=k)
    est = lw.logsumexp(0) - math.log(k)
    w = (lw - lw.max(0).values).exp()
    rel_se = (w.std(0) / w.mean(0)) / math.sqrt(k)
    assert (rel_se < 0.02).all()  # the check is sharp: errors of 0.1 nats would fail
    assert ((est - exact).abs() < 5 * rel_se + 1e-4).all(), (est - exact, rel_se)


def test_estimates_are_per_data_point_not_mixed_with_particles():
    """Data points far apart have very different log p(x); each estimate must match its own."""
    vae, W, b = _ppca_vae(shift=0.1, scale_factor=1.2)
    x = _data(n=3) * torch.tensor([[1.0], [3.0], [0.3]])
    exact = _exact_log_px(x, W, b)
    assert exact.max() - exact.min() > 10
    torch.manual_seed(0)
    est = ev.log_marginal(vae.model, vae.guide, x, num_particles=4000, batch_size=2)
    assert torch.allclose(est, exact, atol=0.05), (est, exact)


def test_discrete_latent_is_summed_out_exactly():
    """Mixture of PPCAs with a class label y: p(x) = sum_y p(y) N(x; W mu_y + b, W W^T + s^2 I).
    The guide enumerates y, so with the exact conditional posterior q(z|x,y) there is no error."""
    W, b = _ppca_params()
    mus = torch.tensor([[2.0, -1.0], [-2.0, 0.5], [0.0, 2.0]])
    pi = torch.tensor([0.2, 0.5, 0.3])
    var = 1.0 / (1.0 + (W * W).sum(0) / S**2)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(pi))
            z = pyro.sample("z", dist.Normal(mus[y], 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T + b, S).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(torch.ones(3) / 3), infer={"enumerate": "parallel"})
            # exact p(z | x, y): precision I + W^T W / s^2, mean var * (mu_y + W^T (x - b) / s^2)
            loc = var * (mus[y] + (x - b) @ W / S**2)
            pyro.sample("z", dist.Normal(loc, var.sqrt()).to_event(1))

    x = _data(n=5)
    cov = W @ W.T + S**2 * torch.eye(D)
    exact = torch.stack(
        [dist.MultivariateNormal(mus[c] @ W.T + b, cov).log_prob(x) + pi[c].log() for c in range(3)]
    ).logsumexp(0)
    assert torch.allclose(ev.log_marginal(model, guide, x, num_particles=4), exact, atol=1e-4)


def test_active_units_and_kl_per_dimension():
    class Enc(nn.Module):
        def forward(self, x):  # dim 0 follows x, dim 1 barely moves, dim 2 constant
            loc = torch.stack([x[:, 0], 0.01 * x[:, 1], torch.zeros_like(x[:, 0])], -1)
            return loc, torch.full_like(loc, 0.5)

    vae = VAE(Enc(), nn.Linear(3, D), StandardNormal(3), GaussianLikelihood((D,)), (D,), 3)
    x = torch.randn(500, D)
    stats = ev.latent_statistics(vae.model, vae.guide, x)["z"]
    assert stats["active_units"] == 1 and stats["dims"] == 3
    # KL(N(m, 0.5^2) || N(0, 1)) = (0.25 + m^2 - 1)/2 - log 0.5, averaged over the data
    base = (0.25 - 1) / 2 - math.log(0.5)
    assert stats["kl_per_dim"][2] == pytest.approx(base, abs=1e-5)
    assert stats["kl_per_dim"][0] == pytest.approx(base + (x[:, 0] ** 2).mean().item() / 2, abs=1e-4)


def test_evaluate_table_is_consistent():
    vae, W, b = _ppca_vae(shift=0.2, scale_factor=1.3)
    x = _data(n=50)
    torch.manual_seed(0)
    m = evaluate(vae, x, k=500, iwae_k=20)
    exact = _exact_log_px(x, W, b).mean().item()
    assert m["elbo"]["value"] < m["iwae_20"]["value"] < exact + 0.05
    assert m["log_px"]["value"] == pytest.approx(exact, abs=0.05)
    assert m["elbo"]["value"] == pytest.approx(m["recon_log_lik"]["value"] - m["kl"]["value"], abs=1e-4)
    assert m["log_px_bpd"]["value"] == pytest.approx(-m["log_px"]["value"] / (D * math.log(2)))
    assert "k=500" in format_table(m)


def test_training_approaches_the_exact_likelihood_of_the_learned_model():
    """Fit a linear-Gaussian VAE on PPCA data; its learned W, b give an exact log p(x) that the
    evaluator must match, and the ELBO must sit below it with a small gap (the guide can
    represent the posterior only approximately since learned W need not have orthogonal columns)."""
    from pyro_vae.components.networks import MLPEncoder

    W, b = _ppca_params()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2000, d, generator=g) @ W.T + b + S * torch.randn(2000, D, generator=g)
    torch.manual_seed(0)
    vae = VAE(
        MLPEncoder((D,), d, ()),
        LinearDecoder(torch.randn(D, d) * 0.1, torch.zeros(D)),
        StandardNormal(d),
        GaussianLikelihood((D,), scale=S),
        (D,),
        d,
    )
    data = Dataset(x[:1800])
    val = Dataset(x[1800:])
    untrained = ev.elbo(vae.model, vae.guide, val.x).mean().item()
    fit(
        vae,
        (data, val),
        TrainConfig(epochs=40, batch_size=100, lr=2e-2, binarize="none", patience=None, device="cpu"),
        progress=False,
    )
    Wl, bl = vae.decoder.lin.weight.detach(), vae.decoder.lin.bias.detach()
    exact_learned = _exact_log_px(val.x, Wl, bl).mean().item()
    exact_true = _exact_log_px(val.x, W, b).mean().item()
    torch.manual_seed(1)
    with torch.no_grad():
        est = ev.log_marginal(vae.model, vae.guide, val.x, num_particles=2000).mean().item()
        elbo = ev.elbo(vae.model, vae.guide, val.x, num_particles=50).mean().item()
    assert exact_learned > exact_true - 0.1  # the fit found (close to) the generating model
    assert est == pytest.approx(exact_learned, abs=0.05)
    assert untrained < elbo < exact_learned
    assert exact_learned - elbo < 0.5

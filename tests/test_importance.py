"""The importance-weighted objectives (pyro_vae.inference.importance) against exact answers on the
linear-Gaussian model (PPCA), whose log p(x) is known in closed form."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import infer
from torch import nn

from pyro_vae import VAE
from pyro_vae.inference.importance import IWAE, FreeBitsELBO, StickingTheLanding, _Weights
from pyro_vae.components.likelihoods import GaussianLikelihood
from pyro_vae.inference.objectives import make_objective
from pyro_vae.components.priors import StandardNormal
from pyro_vae.inference.scaling import Scaled

D, d, S = 6, 2, 0.5


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, d, generator=g))
    return q * torch.tensor([2.0, 0.7]), torch.randn(D, generator=g)


class Encoder(nn.Module):
    """q(z|x) = N((x - b) A + c, exp(s)^2), started at the exact posterior moved by ``shift`` and
    with its scale times ``scale_factor`` (A, c, s learnable)."""

    def __init__(self, W, b, shift=0.3, scale_factor=1.3):
        super().__init__()
        var = 1.0 / (1.0 + (W * W).sum(0) / S**2)
        self.register_buffer("b", b)
        self.A = nn.Parameter(W * var / S**2)
        self.c = nn.Parameter(torch.full((d,), float(shift)))
        self.s = nn.Parameter((var.sqrt() * scale_factor).log())

    def forward(self, x):
        loc = (x - self.b) @ self.A + self.c
        return loc, self.s.exp().expand_as(loc)


def _vae(shift=0.3, scale_factor=1.3):
    W, b = _params()
    dec = nn.Linear(d, D)
    with torch.no_grad():
        dec.weight.copy_(W)
        dec.bias.copy_(b)
    return (
        VAE(Encoder(W, b, shift, scale_factor), dec, StandardNormal(d), GaussianLikelihood((D,), scale=S), (D,), d),
        W,
        b,
    )


def _x(n=5, seed=1):
    W, b = _params()
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) @ W.T + b + S * torch.randn(n, D, generator=g)


def _exact(x, W, b):
    return dist.MultivariateNormal(b, W @ W.T + S**2 * torch.eye(D)).log_prob(x)


def test_iwae_bound_equals_a_hand_computation():
    vae, W, b = _vae()
    x, K, N = _x(), 7, 600
    torch.manual_seed(0)
    s = Scaled(vae)  # the VAE is plain (model(x), guide(x)): the weights come from outside
    w = _Weights(s.model, s.guide, (x,), {"num_data": N}, K, 1, "data", "IWAE")
    z = w.guide_trace.nodes["z"]["value"]  # (K, B, d)
    assert z.shape == (K, x.shape[0], d)
    loc, scale = vae.encoder(x)
    by_hand = (
        dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
        + dist.Normal(z @ W.T + b, S).log_prob(x).sum(-1)
        - dist.Normal(loc, scale).log_prob(z).sum(-1)
    )  # (K, B)
    assert torch.allclose(w.log_w, by_hand, atol=1e-4)
    bound = by_hand.logsumexp(0) - math.log(K)  # per data point
    torch.manual_seed(0)
    loss = IWAE(K).differentiable_loss(s.model, s.guide, x, num_data=N)
    assert loss.item() == pytest.approx(-(N / x.shape[0]) * bound.sum().item(), rel=1e-5)


@pytest.mark.parametrize("estimator", ["plain", "dreg"])
def test_with_one_particle_the_iwae_loss_is_the_elbo(estimator):
    vae, *_ = _vae()
    x, s = _x(), Scaled(vae)
    torch.manual_seed(3)
    elbo = infer.Trace_ELBO().differentiable_loss(s.model, s.guide, x, num_data=100)
    torch.manual_seed(3)
    iwae = IWAE(1, estimator).differentiable_loss(s.model, s.guide, x, num_data=100)
    assert iwae.item() == pytest.approx(elbo.item(), rel=1e-6)
    if estimator == "plain":  # one particle: the same estimator, the same gradient
        g1 = torch.autograd.grad(elbo, list(vae.parameters()))
        g2 = torch.autograd.grad(iwae, list(vae.parameters()))
        for a, c in zip(g1, g2):
            assert torch.allclose(a, c, atol=1e-5)


def test_iwae_bound_lies_between_the_elbo_and_the_exact_log_px_and_closes_in():
    vae, W, b = _vae()
    x = _x(n=4)
    exact = _exact(x, W, b)
    torch.manual_seed(0)
    means = {}
    with torch.no_grad():
        for k in (1, 5, 50, 2000):
            obj = IWAE(k)
            draws = torch.stack([obj.bound(vae.model, vae.guide, x) for _ in range(200 if k < 2000 else 20)])
            means[k] = draws.mean(0)
            lw = obj.log_weights(vae.model, vae.guide, x)
            # for the very same draws, log-mean-exp >= mean (Jensen): never below their ELBO
            assert (lw.logsumexp(0) - math.log(k) >= lw.mean(0) - 1e-5).all()
    gaps = [(exact - means[k]).mean().item() for k in (1, 5, 50, 2000)]
    assert all(g > -0.01 for g in gaps), gaps  # never above log p(x) (within Monte Carlo noise)
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3], gaps  # tighter as k grows
    assert gaps[0] > 0.3 and gaps[3] < 0.02, gaps  # a real gap at k = 1, almost none at k = 2000


def _renyi0(model, guide, x, K, seed, **kwargs):
    """-RenyiELBO(alpha=0).loss after ``pyro.set_rng_seed(seed)``: the same guide draws as an
    IWAE pass with the same seed, K and plate nesting (one vectorized draw of (K, B, d))."""
    pyro.set_rng_seed(seed)
    renyi = infer.RenyiELBO(alpha=0, num_particles=K, vectorize_particles=True, max_plate_nesting=1)
    with torch.no_grad():
        return -renyi.loss(model, guide, x, **kwargs)


def _log_weights(vae, x, K, seed):
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        return IWAE(K).log_weights(vae.model, vae.guide, x)  # (K, B)


def _lme(t):
    return (t.logsumexp(0) - math.log(t.shape[0])).sum().item()


@pytest.mark.parametrize("seed", [0, 1])
def test_renyi_alpha_zero_is_the_per_image_iwae_bound_when_every_site_is_in_the_data_plate(seed):
    """Pyro >= 1.3 (pyro-ppl/pyro#2321) log-mean-exps each element of the plates that every
    site shares, so for a family of the contract RenyiELBO(alpha=0) is sum_b L_K(x_b): with
    the same draws, the same value and the same gradient as IWAE, not the joint bound."""
    vae, *_ = _vae(shift=1.0, scale_factor=1.5)
    x, K = _x(n=8), 10
    lw = _log_weights(vae, x, K, seed)
    per_image, joint = _lme(lw), _lme(lw.sum(1))
    assert per_image - joint > 20  # the two readings are far apart here: the check below is sharp
    r = _renyi0(vae.model, vae.guide, x, K, seed)
    assert r == pytest.approx(per_image, abs=1e-4), (r, per_image, joint)
    # the gradient too: Renyi's loss_and_grads against IWAE's differentiable_loss, same draws
    params = list(vae.parameters())
    for p in params:
        p.grad = None
    pyro.set_rng_seed(seed)
    infer.RenyiELBO(alpha=0, num_particles=K, vectorize_particles=True, max_plate_nesting=1).loss_and_grads(
        vae.model, vae.guide, x
    )
    renyi_grads = [p.grad.clone() for p in params]
    pyro.set_rng_seed(seed)
    iwae_grads = torch.autograd.grad(IWAE(K).differentiable_loss(vae.model, vae.guide, x), params)
    for a, c in zip(renyi_grads, iwae_grads):
        assert torch.allclose(a, c, rtol=1e-4, atol=1e-4)


def test_renyi_alpha_zero_is_the_joint_bound_once_a_site_is_outside_the_data_plate():
    """A site outside the plate (here a factor of log-density 0: the same joint density) makes
    the data plate one that not every site shares: Pyro sums it inside the log-mean-exp, so
    RenyiELBO(alpha=0) becomes the bound of the batch's joint weight (the right bound for a
    global latent, which couples the images). IWAE refuses such a model."""
    vae, *_ = _vae(shift=1.0, scale_factor=1.5)
    x, K = _x(n=8), 10

    def model(x, **kwargs):
        pyro.factor("outside", torch.tensor(0.0))
        return vae.model(x, **kwargs)

    lw = _log_weights(vae, x, K, seed=0)
    r = _renyi0(model, vae.guide, x, K, seed=0)
    assert r == pytest.approx(_lme(lw.sum(1)), abs=1e-4)
    assert _lme(lw) - r > 20  # measured: 54.3 nats looser than sum_b L_K(x_b) on these 8 points
    with pytest.raises(ValueError, match="outside the 'data' plate"):
        IWAE(K).differentiable_loss(model, vae.guide, x)


def test_renyi_puts_the_data_set_scaling_inside_the_log_mean_exp():
    """With num_data = N (or a subsampled plate), every site carries the scale N/B, and Pyro
    1.9's RenyiELBO applies it inside the log-mean-exp: sum_b log mean_k w_kb^(N/B), which lies
    between IWAE's (N/B) sum_b L_K(x_b) and (N/B) sum_b max_k log w_kb (a power mean). IWAE
    keeps N/B outside, as the ELBO does."""
    vae, *_ = _vae(shift=1.0, scale_factor=1.5)
    x, K, N = _x(n=8), 10, 600
    s = N / x.shape[0]
    lw = _log_weights(vae, x, K, seed=0)
    scaled = Scaled(vae)
    r = _renyi0(scaled.model, scaled.guide, x, K, seed=0, num_data=N)
    assert r == pytest.approx(_lme(s * lw), rel=1e-5)
    pyro.set_rng_seed(0)
    with torch.no_grad():
        iwae = -IWAE(K).differentiable_loss(scaled.model, scaled.guide, x, num_data=N).item()
    assert iwae == pytest.approx(s * _lme(lw), rel=1e-5)
    assert iwae + 100 < r <= s * lw.max(0).values.sum().item() + 1e-2  # measured: 1245 nats above


def _grads(vae, objective, x, draws, seed=0):
    params = [vae.encoder.A, vae.encoder.c, vae.encoder.s, vae.decoder.weight]
    torch.manual_seed(seed)
    out = []
    for _ in range(draws):
        loss = objective.differentiable_loss(vae.model, vae.guide, x)
        out.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    g = torch.stack(out)
    n_guide = vae.encoder.A.numel() + 2 * d
    return g[:, :n_guide], g[:, n_guide:]


def _same_mean(a, b, z=4.5):
    se = (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt() + 1e-8
    return ((a.mean(0) - b.mean(0)).abs() / se).max().item() < z


@pytest.mark.parametrize("name", ["dreg", "stl"])
def test_path_gradients_match_the_plain_estimator_in_expectation_with_less_variance(name):
    vae, *_ = _vae(shift=0.15, scale_factor=1.15)
    x = _x(n=3)
    if name == "dreg":
        plain, new = IWAE(5), IWAE(5, "dreg")
    else:
        plain, new = infer.Trace_ELBO(), StickingTheLanding()
    g_plain, m_plain = _grads(vae, plain, x, 1500, seed=0)
    g_new, m_new = _grads(vae, new, x, 1500, seed=1)
    assert _same_mean(g_plain, g_new), "guide gradients differ in expectation"
    assert _same_mean(m_plain, m_new), "decoder gradients differ in expectation"
    ratio = (g_plain.var(0).sum() / g_new.var(0).sum()).item()
    assert ratio > 2.0, f"{name}: guide gradient variance only {ratio:.2f}x lower"


def test_dreg_variance_does_not_grow_with_k_where_the_plain_estimator_signal_fades():
    """Rainforth et al. 2018: the plain IWAE guide gradient's signal-to-noise falls as K grows;
    DReG's does not."""
    vae, *_ = _vae(shift=0.15, scale_factor=1.15)
    x = _x(n=3)

    def snr(obj):
        g, _ = _grads(vae, obj, x, 400)
        return (g.mean(0).abs() / g.std(0)).mean().item()

    assert snr(IWAE(64, "dreg")) > 3 * snr(IWAE(64))


def test_free_bits_at_zero_is_the_analytic_kl_elbo_and_above_it_stops_the_kl_gradient():
    vae, *_ = _vae()
    x, s = _x(), Scaled(vae)
    torch.manual_seed(2)
    mf = infer.TraceMeanField_ELBO().differentiable_loss(s.model, s.guide, x, num_data=50)
    torch.manual_seed(2)
    fb = FreeBitsELBO(0.0).differentiable_loss(s.model, s.guide, x, num_data=50)
    assert fb.item() == pytest.approx(mf.item(), rel=1e-5)
    # a floor above every dimension's KL: the KL term is a constant, only reconstruction trains q
    torch.manual_seed(2)
    big = FreeBitsELBO(100.0).differentiable_loss(s.model, s.guide, x, num_data=50)
    torch.manual_seed(2)
    g = torch.autograd.grad(big, [vae.encoder.c])[0]
    torch.manual_seed(2)
    tr = pyro.poutine.trace(vae.guide).get_trace(x)
    z = tr.nodes["z"]["value"]
    recon = -(50 / x.shape[0]) * dist.Normal(vae.decoder(z), S).log_prob(x).sum()
    assert big.item() == pytest.approx(recon.item() + 50 * d * 100.0, rel=1e-5)
    assert torch.allclose(g, torch.autograd.grad(recon, [vae.encoder.c])[0], atol=1e-4)


def test_objectives_by_name_and_their_errors():
    vae, *_ = _vae()
    assert isinstance(make_objective("iwae", vae, 5), IWAE) and make_objective("iwae", vae, 5).num_particles == 5
    assert make_objective("iwae_dreg", vae, 3).estimator == "dreg"
    assert isinstance(make_objective("stl", vae), StickingTheLanding)
    assert isinstance(make_objective("auto", vae, free_bits=0.5), FreeBitsELBO)
    with pytest.raises(ValueError, match="free bits"):
        make_objective("iwae", vae, 5, free_bits=0.5)
    with pytest.raises(ValueError, match="estimator"):
        IWAE(5, "magic")
    with pytest.raises(ValueError, match="num_particles"):
        IWAE(0)

    def enum_guide(x, **kw):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Categorical(torch.ones(2) / 2), infer={"enumerate": "parallel"})

    def enum_model(x, **kw):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Categorical(torch.ones(2) / 2))

    with pytest.raises(ValueError, match="enum objective"):
        IWAE(2).differentiable_loss(enum_model, enum_guide, _x())
    with pytest.raises(ValueError, match="method of an nn.Module"):
        IWAE(2, "dreg").differentiable_loss(vae.model, lambda x, **kw: vae.guide(x), _x())


@pytest.mark.parametrize("estimator", ["plain", "dreg"])
def test_a_training_step_leaves_nothing_behind(estimator):
    """The DReG hooks must not tie the step's graph into a cycle the garbage collector cannot
    free (that once kept every step's graph: memory grew without bound)."""
    import gc
    import weakref

    vae, *_ = _vae()
    x = _x()
    refs = []
    original = _Weights.__init__

    def recording(self, *a, **k):
        original(self, *a, **k)
        refs.append(weakref.ref(self.log_w))

    _Weights.__init__ = recording
    try:
        loss = IWAE(4, estimator).differentiable_loss(vae.model, vae.guide, x)
        loss.backward()
        del loss
    finally:
        _Weights.__init__ = original
    gc.collect()
    assert refs and refs[0]() is None, "the step's log weights (and graph) are still alive"

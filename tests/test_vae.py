"""The VAE's model/guide pair: every ELBO and both optimizer paths train it; the KL weight and
the data-set scaling do what they say; the analytic and Monte Carlo KL agree."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import kl_divergence

from pyro_vae import Batch, Loss, ModelConfig, build_model
from pyro_vae.inference.objectives import _compiled_count
from pyro_vae.inference.scaling import Scaled

SMALL = dict(data_shape=(1, 28, 28), latent_dim=8, hidden=(64,))


def _val_loss(vae, x):
    with torch.no_grad():
        torch.manual_seed(123)
        return (
            Trace_ELBO(num_particles=4, vectorize_particles=True).differentiable_loss(vae.model, vae.guide, x).item()
            / x.shape[0]
        )


@pytest.mark.parametrize("elbo_cls", [Trace_ELBO, TraceMeanField_ELBO, JitTrace_ELBO])
def test_each_elbo_trains_with_a_torch_optimizer(elbo_cls, mnist_bin):
    train, val = mnist_bin
    vae = build_model(ModelConfig(**SMALL))
    kwargs = {"ignore_jit_warnings": True} if elbo_cls is JitTrace_ELBO else {}
    loss_fn = Loss(vae, elbo_cls(**kwargs))
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    before = _val_loss(vae, val)
    n = train.shape[0]
    for step in range(60):
        idx = torch.randint(0, n, (100,))
        loss = loss_fn(Batch(train[idx]), torch.tensor(1.0), num_data=n) / n
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _val_loss(vae, val)
    assert after < before - 200, (before, after)  # ~543 nats at init; a clear fall


@pytest.mark.parametrize("elbo_cls", [Trace_ELBO, TraceMeanField_ELBO, JitTrace_ELBO])
def test_svi_with_pyro_optim_trains_the_module_parameters(elbo_cls, mnist_bin):
    train, val = mnist_bin
    vae = build_model(ModelConfig(**SMALL))
    kwargs = {"ignore_jit_warnings": True} if elbo_cls is JitTrace_ELBO else {}
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 3e-3}), elbo_cls(**kwargs))
    w0 = vae.decoder.net[0].weight.detach().clone()
    before = _val_loss(vae, val)
    for step in range(60):
        svi.step(train[torch.randint(0, train.shape[0], (100,))])
    assert not torch.equal(w0, vae.decoder.net[0].weight)
    assert _val_loss(vae, val) < before - 200


def test_two_models_in_one_process_do_not_share_parameters(mnist_bin):
    train, _ = mnist_bin
    a, b = build_model(ModelConfig(**SMALL)), build_model(ModelConfig(**SMALL))
    wb = b.decoder.net[0].weight.detach().clone()
    svi = SVI(a.model, a.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(3):
        svi.step(train[:50])
    assert torch.equal(wb, b.decoder.net[0].weight)


def _fixed_encoder_vae():
    torch.manual_seed(1)
    return build_model(ModelConfig(data_shape=(20,), latent_dim=3, hidden=(16,), likelihood="gaussian"))


def test_analytic_and_monte_carlo_kl_agree_in_expectation():
    """TraceMeanField_ELBO uses KL(q||p) in closed form, Trace_ELBO a Monte Carlo estimate.
    With the same seed both draw the same z, so their losses differ only by
    (analytic KL - MC KL): that difference must vanish within the MC error."""
    vae = _fixed_encoder_vae()
    x = torch.randn(10, 20)
    k = 4000
    with torch.no_grad():
        torch.manual_seed(7)
        mc = Trace_ELBO(num_particles=k, vectorize_particles=True).loss(vae.model, vae.guide, x)
        torch.manual_seed(7)
        analytic = TraceMeanField_ELBO(num_particles=k, vectorize_particles=True).loss(vae.model, vae.guide, x)
        loc, scale = vae.encoder(x)
        q = dist.Normal(loc, scale).to_event(1)
        p = dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1)
        exact_kl = kl_divergence(q, p).sum().item()
        z = q.sample((k,))
        mc_kl = (q.log_prob(z) - p.log_prob(z)).sum(-1)  # (k,) total KL over the batch
    se = mc_kl.std().item() / math.sqrt(k)
    assert abs(mc_kl.mean().item() - exact_kl) < 4 * se
    # loss = -ELBO, so loss_mc - loss_analytic = MC KL - analytic KL (same z draws)
    assert abs(mc - analytic) < 4 * se, (mc, analytic, se)
    assert exact_kl > 10 * se  # the test has power: the KL is far from 0 at this precision


def test_kl_weight_scales_only_the_kl_term():
    vae = _fixed_encoder_vae()
    scaled = Scaled(vae)  # the plain VAE with the weights applied from outside, as training applies them
    x = torch.randn(5, 20)
    elbo = TraceMeanField_ELBO()
    with torch.no_grad():
        losses = {}
        for beta in (1.0, 0.25):
            torch.manual_seed(3)
            losses[beta] = elbo.loss(scaled.model, scaled.guide, x, kl_weight=beta)
        loc, scale = vae.encoder(x)
        kl = kl_divergence(dist.Normal(loc, scale), dist.Normal(0.0, 1.0)).sum().item()
    # loss(beta) = -recon + beta * KL  =>  loss(1) - loss(0.25) = 0.75 KL
    assert losses[1.0] - losses[0.25] == pytest.approx(0.75 * kl, rel=1e-4)


def test_num_data_scales_the_loss_to_the_data_set():
    vae = _fixed_encoder_vae()
    x = torch.randn(5, 20)
    with torch.no_grad():
        torch.manual_seed(3)
        per_batch = Trace_ELBO().loss(vae.model, vae.guide, x)
        torch.manual_seed(3)
        scaled = Scaled(vae)
        per_set = Trace_ELBO().loss(scaled.model, scaled.guide, x, kl_weight=1.0, num_data=1000)
    assert per_set == pytest.approx(per_batch * 200, rel=1e-5)


def test_wrong_data_shape_is_a_clear_error():
    vae = build_model(ModelConfig(**SMALL))
    with pytest.raises(ValueError, match=r"expects data of shape \(batch, 1, 28, 28\)"):
        vae.model(torch.zeros(4, 784))


def test_helpers_shapes():
    vae = build_model(ModelConfig(**SMALL))
    x = torch.bernoulli(torch.rand(3, 1, 28, 28))
    loc, scale = vae.encode(x)
    assert loc.shape == (3, 8) and (scale > 0).all()
    assert vae.decode(loc).shape == (3, 1, 28, 28)
    r = vae.reconstruct(x)
    assert r.shape == x.shape and (r >= 0).all() and (r <= 1).all()
    assert vae.sample(5).shape == (5, 1, 28, 28)
    s = vae.sample(5, mean=False)
    assert ((s == 0) | (s == 1)).all()


def test_jit_elbo_compiles_once_per_batch_size_across_steps():
    """JitTrace_ELBO keys its compiled graph on id(model); Loss must keep that id stable,
    or every step retraces (measured 3x slower). The KL weight is a tensor argument, so
    warm-up changes it without recompiling; a new batch size compiles once (a graph
    specialized to that size), and the scale follows the batch size."""
    vae = build_model(ModelConfig(**SMALL))
    elbo = JitTrace_ELBO(ignore_jit_warnings=True)
    loss_fn = Loss(vae, elbo)
    x = torch.bernoulli(torch.rand(50, 1, 28, 28))
    losses, counts = [], []
    for b, w in ((32, 0.1), (32, 0.5), (18, 1.0), (32, 1.0), (18, 0.5)):
        losses.append(loss_fn(Batch(x[:b]), torch.tensor(w), num_data=500).item() / 500)
        counts.append(_compiled_count(loss_fn.objective))
    assert counts[0] >= 1 and counts[1] == counts[0]  # the KL weight changed: no recompile
    assert counts[2] == counts[1] + 1  # a new batch size: one graph of its own
    assert counts[4] == counts[3] == counts[2]  # both sizes reuse their graphs
    # the batch scale follows the batch size (a baked-in 500/32 would give ~18/32 of the loss)
    assert losses[2] == pytest.approx(losses[3], rel=0.05)


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli"])
def test_conv_vae_trains_on_real_digits(likelihood, mnist5k, mnist_bin):
    train = mnist_bin[0] if likelihood == "bernoulli" else mnist5k.x[:1000]
    val = mnist_bin[1] if likelihood == "bernoulli" else mnist5k.x[1000:1500]
    vae = build_model(
        ModelConfig(data_shape=(1, 28, 28), latent_dim=8, hidden=(64,), network="conv", likelihood=likelihood)
    )
    loss_fn = Loss(vae, Trace_ELBO())
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    before = _val_loss(vae, val)
    for step in range(40):
        loss = loss_fn(Batch(train[torch.randint(0, 1000, (100,))]), torch.tensor(1.0), num_data=1000) / 1000
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _val_loss(vae, val)
    assert after < before - 100, (before, after)

"""The family of issue 8: hierarchical and ladder VAEs, the IAF guide, the flow prior, the
VampPrior, the Gaussian-mixture VAE (enumerated and relaxed), the IWAE objectives and free bits.
Each member trains on real digits (its validation ELBO rises), is evaluated, and round-trips
through its checkpoint; the parts are checked against their formulas."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae import Batch, ModelConfig, TrainConfig, build_model, fit, load_checkpoint
from pyro_vae.analysis.evaluate import evaluate
from pyro_vae.inference import marginal as ev
from pyro_vae.cli import main
from pyro_vae.models.gmvae import assignment, cluster_accuracy
from pyro_vae.models.hierarchical import precision_weighted
from pyro_vae.components.priors import DiagonalNormalMixture, FlowPrior, VampPrior

SMALL = {"hidden": (64,)}
MEMBERS = {
    "hvae_bottomup": ("hvae", {"latent_dims": (8, 4), "upper_hidden": (32,), "guide": "bottomup", **SMALL}, {}),
    "hvae_ladder": ("hvae", {"latent_dims": (8, 4), "upper_hidden": (32,), "guide": "ladder", **SMALL}, {}),
    "iaf": ("iaf", {"latent_dim": 8, "flow_steps": 2, **SMALL}, {}),
    "vampprior": ("vae", {"latent_dim": 8, "prior": "vampprior", "prior_kwargs": {"components": 20}, **SMALL}, {}),
    "flow_prior": ("vae", {"latent_dim": 8, "prior": "flow", "prior_kwargs": {"steps": 2}, **SMALL}, {}),
    "gmvae": ("gmvae", {"latent_dim": 8, "clusters": 10, **SMALL}, {}),
    "gmvae_relaxed": ("gmvae", {"latent_dim": 8, "clusters": 10, "discrete": "relaxed", **SMALL}, {}),
    "iwae_dreg": ("vae", {"latent_dim": 8, **SMALL}, {"objective": "iwae_dreg", "num_particles": 3}),
    "free_bits": ("vae", {"latent_dim": 8, **SMALL}, {"free_bits": 0.25}),
}


@pytest.fixture
def digits(mnist_bin, mnist5k):
    x_train, x_val = mnist_bin
    return (
        Batch(x_train[:600], mnist5k.y[:600]),
        Batch(x_val[:200], mnist5k.y[1000:1200]),
        Batch(x_val[200:300], mnist5k.y[1200:1300]),
    )


@pytest.mark.parametrize("member", sorted(MEMBERS))
def test_member_trains_evaluates_and_round_trips(member, digits, tmp_path):
    name, options, train_options = MEMBERS[member]
    train, val, test = digits
    mc = ModelConfig(model=name, data_shape=(1, 28, 28), num_classes=10, **options)
    torch.manual_seed(0)
    fam = build_model(mc)
    cfg = TrainConfig(
        epochs=3, batch_size=100, lr=3e-3, patience=None, device="cpu", binarize="none", eval_k=20, **train_options
    )
    with torch.no_grad():
        untrained = ev.elbo(fam.model, fam.guide, val.x).mean().item()  # about -540 nats
    summary = fit(fam, (train, val), cfg, tmp_path, model_config=mc, progress=False, test=test, plots=False)
    rows = [json.loads(r) for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_elbo"] > untrained + 100, (untrained, [r["val_elbo"] for r in rows])
    assert rows[-1]["val_elbo"] > rows[0]["val_elbo"], [r["val_elbo"] for r in rows]
    t = summary["test"]
    assert t["elbo"] < t["log_px"] < 0
    loaded, _ = load_checkpoint(tmp_path / "checkpoint_best.pt")
    assert type(loaded) is type(fam)
    torch.manual_seed(1)
    a = ev.elbo(loaded.model, loaded.guide, test.x, num_particles=4)
    best = torch.load(tmp_path / "checkpoint_best.pt", weights_only=False)["model_state"]
    fam.load_state_dict(best)
    torch.manual_seed(1)
    b = ev.elbo(fam.model, fam.guide, test.x, num_particles=4)
    assert torch.allclose(a, b, atol=1e-4)  # the rebuilt model is the trained one
    assert loaded.sample(4).shape == (4, 1, 28, 28)


def test_precision_weighted_merge_is_the_product_of_gaussians():
    torch.manual_seed(0)
    l1, l2 = torch.randn(5, 3), torch.randn(5, 3)
    s1, s2 = torch.rand(5, 3) + 0.2, torch.rand(5, 3) + 0.2
    loc, scale = precision_weighted(l1, s1, l2, s2)
    p1, p2 = 1 / s1**2, 1 / s2**2
    assert torch.allclose(scale, (1 / (p1 + p2)).sqrt())
    assert torch.allclose(loc, (l1 * p1 + l2 * p2) / (p1 + p2))
    # and N(l1, s1) N(l2, s2) is proportional to N(loc, scale) in z
    z = torch.randn(7, 5, 3)
    lhs = dist.Normal(l1, s1).log_prob(z) + dist.Normal(l2, s2).log_prob(z) - dist.Normal(loc, scale).log_prob(z)
    assert torch.allclose(lhs, lhs[:1].expand_as(lhs), atol=1e-4)


def test_ladder_guide_merges_its_bottom_up_pass_with_the_models_top_down_prior():
    torch.manual_seed(0)
    fam = build_model(
        ModelConfig(
            model="hvae", data_shape=(1, 28, 28), latent_dims=(6, 3), hidden=(32,), upper_hidden=(16,), guide="ladder"
        )
    )
    x = torch.bernoulli(torch.rand(4, 1, 28, 28))
    tr = pyro.poutine.trace(fam.guide).get_trace(x)
    z2 = tr.nodes["z2"]["value"]
    ups = fam._bottom_up(x)
    p_loc, p_scale = fam.top_down[0](z2)  # the model's own p(z1 | z2)
    loc, scale = precision_weighted(ups[0][0], ups[0][1], p_loc, p_scale)
    q = tr.nodes["z1"]["fn"].base_dist
    assert torch.allclose(q.loc, loc) and torch.allclose(q.scale, scale)
    assert torch.allclose(tr.nodes["z2"]["fn"].base_dist.loc, ups[1][0])
    m = pyro.poutine.trace(pyro.poutine.replay(fam.model, trace=tr)).get_trace(x)
    assert torch.allclose(m.nodes["z1"]["fn"].base_dist.loc, p_loc)


def test_evaluation_reports_kl_and_active_units_per_layer():
    torch.manual_seed(0)
    fam = build_model(
        ModelConfig(model="hvae", data_shape=(1, 28, 28), latent_dims=(6, 3), hidden=(32,), upper_hidden=(16,))
    )
    m = evaluate(fam, torch.bernoulli(torch.rand(30, 1, 28, 28)), k=10)
    for site, dims in (("z1", 6), ("z2", 3)):
        assert m[f"active_units_{site}"]["unit"] == f"of {dims}"
        assert len(m[f"kl_per_dim_{site}"]["value"]) == dims
        assert m[f"kl_{site}"]["value"] == pytest.approx(sum(m[f"kl_per_dim_{site}"]["value"]), abs=1e-2)
    assert m["kl"]["value"] == pytest.approx(m["kl_z1"]["value"] + m["kl_z2"]["value"], rel=0.05, abs=0.05)


def test_vampprior_is_the_mixture_of_the_guide_at_its_pseudo_inputs():
    torch.manual_seed(0)
    fam = build_model(
        ModelConfig(
            model="vae",
            data_shape=(1, 28, 28),
            latent_dim=4,
            hidden=(32,),
            prior="vampprior",
            prior_kwargs={"components": 5},
        )
    )
    z = torch.randn(9, 4)
    u = fam.prior.pseudo_inputs()
    assert u.shape == (5, 1, 28, 28) and (u >= 0).all() and (u <= 1).all()
    loc, scale = fam.encoder(u)
    by_hand = torch.stack([dist.Normal(loc[k], scale[k]).log_prob(z).sum(-1) for k in range(5)]).logsumexp(
        0
    ) - math.log(5)
    assert torch.allclose(fam.prior().log_prob(z), by_hand, atol=1e-5)
    # its parameters are the encoder's and the pseudo-inputs, not a copy of the encoder
    names = [n for n, _ in fam.named_parameters()]
    assert "prior.pseudo_logits" in names and not any(n.startswith("prior._encoder") for n in names)
    with pytest.raises(ValueError, match="encoder"):
        VampPrior(4, components=3, data_shape=(1, 28, 28))()


def test_diagonal_normal_mixture_matches_mixture_same_family_in_value_gradient_and_plate():
    torch.manual_seed(0)
    logits, loc = torch.randn(30, requires_grad=True), torch.randn(30, 6, requires_grad=True)
    log_scale = (0.5 * torch.randn(30, 6) - 1).requires_grad_()
    fast = DiagonalNormalMixture(logits, loc, log_scale.exp())
    slow = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, log_scale.exp()).to_event(1))
    z = 2 * torch.randn(4, 11, 6)
    assert fast.batch_shape == () and fast.event_shape == (6,)
    assert torch.allclose(fast.log_prob(z), slow.log_prob(z), atol=1e-3, rtol=1e-5)
    g_fast = torch.autograd.grad(fast.log_prob(z).sum(), (logits, loc, log_scale))
    g_slow = torch.autograd.grad(slow.log_prob(z).sum(), (logits, loc, log_scale))
    for a, b in zip(g_fast, g_slow):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-4)
    # inside a plate Pyro expands the prior to the batch: the value is the same, per data point
    with pyro.plate("data", 11):
        tr = pyro.poutine.trace(lambda: pyro.sample("z", fast)).get_trace()
    site = tr.nodes["z"]
    assert site["fn"].batch_shape == (11,) and isinstance(site["fn"], DiagonalNormalMixture)
    assert torch.allclose(site["fn"].log_prob(site["value"]), slow.log_prob(site["value"]), atol=1e-3)
    with pytest.raises(ValueError, match="logits"):
        DiagonalNormalMixture(torch.zeros(3), torch.zeros(4, 2), torch.ones(4, 2))


def test_flow_prior_density_is_the_change_of_variables():
    torch.manual_seed(0)
    prior = FlowPrior(3, steps=2)
    for f in prior.flows:  # away from the identity
        for p in f.parameters():
            p.data.normal_(0, 0.5)
    z = torch.randn(6, 3)
    # log p(z) = log N(g(z); 0, I) + log |det dg/dz|, g the inverse of the sampling map
    u, logdet = z, torch.zeros(6)
    for f in prior.flows:
        y = f(u)
        logdet = logdet + f.log_abs_det_jacobian(u, y)
        u = y
    by_hand = dist.Normal(0.0, 1.0).log_prob(u).sum(-1) + logdet
    assert torch.allclose(prior().log_prob(z), by_hand, atol=1e-4)
    draws = prior().sample((5,))
    assert draws.shape == (5, 3) and torch.isfinite(prior().log_prob(draws)).all()


def test_iaf_guide_log_density_is_the_change_of_variables():
    torch.manual_seed(0)
    fam = build_model(ModelConfig(model="iaf", data_shape=(1, 28, 28), latent_dim=4, hidden=(32,), flow_steps=2))
    x = torch.bernoulli(torch.rand(3, 1, 28, 28))
    tr = pyro.poutine.trace(fam.guide).get_trace(x)
    z = tr.nodes["z"]["value"]
    loc, scale = fam.encoder(x)
    # invert the flow step by step (autoregressive), summing the log-Jacobians
    u, logdet = z, torch.zeros(3)
    for f in reversed(fam.flows):
        prev = f.inv(u)
        logdet = logdet + f.log_abs_det_jacobian(prev, u)
        u = prev
    by_hand = dist.Normal(loc, scale).log_prob(u).sum(-1) - logdet
    assert torch.allclose(tr.nodes["z"]["fn"].log_prob(z), by_hand, atol=1e-3)


def test_hungarian_assignment_and_cluster_accuracy():
    cost = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    assert assignment(cost).tolist() == [1, 0, 2]  # 1 + 2 + 2 = 5, the least total
    torch.manual_seed(0)
    for _ in range(5):
        c = torch.rand(6, 6)
        best = min(sum(c[i, p[i]].item() for i in range(6)) for p in _perms(6))
        got = assignment(c)
        assert sum(c[i, got[i]].item() for i in range(6)) == pytest.approx(best)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    clusters = (labels + 1) % 3  # a relabelling: perfect clustering
    assert cluster_accuracy(clusters, labels, 3, 3) == 1.0
    assert cluster_accuracy(torch.zeros(7, dtype=torch.long), labels, 3, 3) == pytest.approx(3 / 7)


def _perms(n):
    import itertools

    return itertools.permutations(range(n))


def test_gmvae_relaxed_temperature_follows_its_schedule():
    fam = build_model(
        ModelConfig(
            model="gmvae",
            data_shape=(1, 28, 28),
            latent_dim=4,
            hidden=(16,),
            discrete="relaxed",
            temperature=1.0,
            temperature_min=0.5,
            anneal_rate=0.1,
        )
    )
    fam.on_epoch(0, 50)
    assert fam.temperature.item() == pytest.approx(1.0)
    fam.on_epoch(3, 50)
    assert fam.temperature.item() == pytest.approx(math.exp(-0.3))
    fam.on_epoch(40, 50)
    assert fam.temperature.item() == pytest.approx(0.5)
    tr = pyro.poutine.trace(fam.guide).get_trace(torch.bernoulli(torch.rand(2, 1, 28, 28)))
    assert tr.nodes["y"]["fn"].temperature.item() == pytest.approx(0.5)


def test_gmvae_sums_the_clusters_out_exactly_in_evaluation():
    """log p(x) = logsumexp_y [log p(y) + log p(x|y)]: with one particle of z per cluster the
    evaluator's weight must equal that sum over the clusters of their own weights."""
    torch.manual_seed(0)
    fam = build_model(ModelConfig(model="gmvae", data_shape=(1, 28, 28), latent_dim=4, hidden=(16,), clusters=3))
    x = torch.bernoulli(torch.rand(2, 1, 28, 28))
    torch.manual_seed(1)
    lw = ev.log_weights(fam.model, fam.guide, x, num_particles=1, max_plate_nesting=1)[0]
    torch.manual_seed(1)
    g = pyro.poutine.trace(pyro.poutine.enum(fam.guide, first_available_dim=-3)).get_trace(x)
    m = pyro.poutine.trace(pyro.poutine.replay(fam.model, trace=g)).get_trace(x)
    terms = (
        m.nodes["y"]["fn"].log_prob(m.nodes["y"]["value"])
        + m.nodes["z"]["fn"].log_prob(m.nodes["z"]["value"])
        + m.nodes["x"]["fn"].log_prob(x)
        - g.nodes["z"]["fn"].log_prob(g.nodes["z"]["value"])
    )
    assert torch.allclose(lw, terms.reshape(3, -1).logsumexp(0), atol=1e-4)


def test_gmvae_reports_how_much_its_clusters_are_used():
    """A collapsed q(y|x) (uniform) shows entropy log K, no information and one cluster; a q(y|x)
    that puts each point on a cluster of its own (two clusters, half the points each) shows
    information log 2 and two clusters."""
    fam = build_model(ModelConfig(model="gmvae", data_shape=(1, 28, 28), latent_dim=4, hidden=(16,), clusters=4))
    x = torch.zeros(10, 1, 28, 28)
    x[5:] = 1.0

    class Fixed(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, v):
            return self.fn(v)

    fam.classifier = Fixed(lambda v: torch.zeros(len(v), 4))
    use = fam.cluster_use(x, batch_size=3)
    assert use["clusters_used"] == 1 and use["cluster_entropy"] == pytest.approx(math.log(4))
    assert use["cluster_information"] == pytest.approx(0.0, abs=1e-6)
    fam.classifier = Fixed(lambda v: torch.tensor([[30.0, 0, 0, 0], [0, 0, 30.0, 0]])[v.flatten(1)[:, 0].long()])
    use = fam.cluster_use(x, batch_size=3)
    assert use["clusters_used"] == 2 and use["cluster_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert use["cluster_information"] == pytest.approx(math.log(2), abs=1e-6)
    metrics = fam.metrics(Batch(x, y=torch.tensor([3] * 5 + [7] * 5)))
    assert metrics["cluster_accuracy"] == 1.0 and metrics["clusters_used"] == 2


def test_gmvae_minimum_information_constraint_replaces_the_cluster_kl_below_its_floor():
    """With lambda above the batch's cluster KL the loss gains kl_weight * N * (lambda - KL): its
    value is the ELBO's with max(lambda, KL) in place of KL, and the cluster KL's gradient is gone."""
    from pyro_vae.inference.objectives import Loss

    torch.manual_seed(0)
    opts = dict(model="gmvae", data_shape=(1, 28, 28), latent_dim=4, hidden=(16,), clusters=3)
    plain = build_model(ModelConfig(**opts))
    floored = build_model(ModelConfig(**opts, cluster_free_bits=5.0))
    floored.load_state_dict(plain.state_dict())
    batch = Batch(torch.bernoulli(torch.rand(6, 1, 28, 28)))
    w = torch.tensor(0.7)
    kl = plain.cluster_kl(batch.x).mean()
    assert 0 <= kl.item() < 5.0
    torch.manual_seed(1)
    base = Loss(plain)(batch, w, num_data=60)
    torch.manual_seed(1)
    got = Loss(floored)(batch, w, num_data=60)
    assert torch.allclose(got - base, w * 60 * (5.0 - kl), rtol=1e-5)
    params = list(floored.classifier.parameters())
    g_got = torch.autograd.grad(got, params, allow_unused=True)  # (the network's unused scale head: None)
    g_want = torch.autograd.grad(
        base - w * 60 * plain.cluster_kl(batch.x).mean(), list(plain.classifier.parameters()), allow_unused=True
    )
    assert sum(a is not None for a in g_got) >= 2
    for a, b in zip(g_got, g_want):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    assert plain.extra_loss(batch) is None
    with pytest.raises(ValueError, match="enumerate"):
        build_model(ModelConfig(**opts, discrete="relaxed", cluster_free_bits=1.0))


def test_free_bits_keep_units_active_that_the_elbo_shuts_down(digits):
    """With beta = 4 the ELBO switches units off within a few epochs (22 of 32 left when this was
    written); free bits keep each unit's KL at the floor, so all stay in use."""
    train, val, _ = digits
    active = {}
    for fb in (0.0, 0.5):
        torch.manual_seed(0)
        mc = ModelConfig(model="vae", data_shape=(1, 28, 28), latent_dim=32, hidden=(64,))
        fam = build_model(mc)
        fit(
            fam,
            (train, val),
            TrainConfig(
                epochs=4, batch_size=100, lr=3e-3, patience=None, device="cpu", binarize="none", free_bits=fb, beta=4.0
            ),
            progress=False,
        )
        st = ev.latent_statistics(fam.model, fam.guide, val.x)["z"]
        active[fb] = st["active_units"]
    assert active[0.5] > active[0.0] + 5, active


def test_cli_trains_the_family_members(tmp_path, capsys):
    rng = torch.Generator().manual_seed(0)
    x = (torch.rand(300, 1, 8, 8, generator=rng) < 0.3).float()
    data = tmp_path / "toy.npz"
    import numpy as np

    np.savez(data, x=x.numpy(), y=(torch.arange(300) % 3).numpy())
    for name, extra in [
        ("hvae", ["--latent-dims", "4", "2", "--guide", "bottomup"]),
        ("iaf", ["--flow-steps", "1", "--latent-dim", "3"]),
        ("gmvae", ["--clusters", "3", "--discrete", "relaxed"]),
        (
            "vae",
            ["--prior", "vampprior", "--prior-components", "7", "--objective", "iwae_dreg", "--num-particles", "2"],
        ),
    ]:
        run = tmp_path / name
        assert (
            main(
                [
                    "train",
                    "--model",
                    name,
                    *extra,
                    "--dataset",
                    str(data),
                    "--epochs",
                    "2",
                    "--hidden",
                    "16",
                    "--eval-k",
                    "5",
                    "--no-plots",
                    "--out",
                    str(run),
                    "--device",
                    "cpu",
                ]
            )
            == 0
        ), name
        assert (run / "metrics_test.json").exists(), name
        assert main(["sample", str(run), "-n", "4", "--out", str(run / "s.png")]) == 0, name


def test_parts_that_do_not_fit_are_refused_by_name():
    with pytest.raises(ValueError, match="attaches its encoder"):
        build_model(ModelConfig(model="hvae", data_shape=(1, 28, 28), latent_dims=(4, 2), prior="vampprior"))
    with pytest.raises(ValueError, match="attaches its encoder"):
        build_model(ModelConfig(model="ae", data_shape=(1, 28, 28), prior="vampprior", prior_term="on"))
    with pytest.raises(ValueError, match="reparameterized"):
        build_model(ModelConfig(model="iaf", data_shape=(1, 28, 28), estimator="score"))
    with pytest.raises(ValueError, match="at least 2 stochastic layers"):
        build_model(ModelConfig(model="hvae", data_shape=(1, 28, 28), latent_dims=(4,)))
    with pytest.raises(ValueError, match="ladder guide is built from MLPs"):
        build_model(ModelConfig(model="hvae", data_shape=(1, 28, 28), network="conv", guide="ladder"))
    with pytest.raises(ValueError, match="prior"):
        build_model(ModelConfig(model="gmvae", data_shape=(1, 28, 28), prior="mixture"))
    with pytest.raises(ValueError, match="free bits"):
        from pyro_vae.inference.objectives import make_objective

        make_objective("auto", build_model(ModelConfig(model="gmvae", data_shape=(1, 28, 28))), free_bits=0.5)

"""The shorter log-densities (pyro_vae.components.distributions) against torch's Normal: same values, same
gradients, same random stream; and the JIT objective's lean graph against Trace_ELBO."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_vae import Batch, ModelConfig, build_model
from pyro_vae.components.distributions import ReparamNormal, UnitNormal
from pyro_vae.inference.objectives import Loss, make_objective


def test_unit_normal_log_prob_and_expand_match_normal():
    z = torch.randn(6, 4) * 3
    ref = dist.Normal(torch.zeros(4), torch.ones(4))
    d = UnitNormal(torch.zeros(4), torch.ones(4))
    assert torch.allclose(d.log_prob(z), ref.log_prob(z), atol=1e-6)
    e = d.expand((6, 4)).to_event(1)
    assert isinstance(e.base_dist, UnitNormal) and e.log_prob(z).shape == (6,)
    assert torch.allclose(e.log_prob(z), ref.expand((6, 4)).to_event(1).log_prob(z), atol=1e-5)


@pytest.mark.parametrize("sample_shape", [(), (3,)])
def test_reparam_normal_at_its_draw_has_normal_value_and_total_gradient(sample_shape):
    loc = torch.randn(5, 4, requires_grad=True)
    raw = torch.randn(5, 4, requires_grad=True)

    def run(cls):
        torch.manual_seed(0)
        q = cls(loc * 2.0, torch.nn.functional.softplus(raw) + 0.1)
        z = q.rsample(sample_shape)
        value = (q.log_prob(z) + z.sin()).sum()  # log q at the draw, plus a term of z alone
        return z, value, torch.autograd.grad(value, (loc, raw))

    (z1, v1, g1), (z2, v2, g2) = run(dist.Normal), run(ReparamNormal)
    assert torch.equal(z1, z2)  # the same random stream and sample
    assert v1.item() == pytest.approx(v2.item(), rel=1e-6)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    # any other value takes the general formula
    q = ReparamNormal(torch.zeros(4), torch.ones(4) * 2)
    q.rsample()
    other = torch.randn(4)
    assert torch.allclose(q.log_prob(other), dist.Normal(torch.zeros(4), torch.ones(4) * 2).log_prob(other))


def _grads(family, objective, x, seed=1):
    loss_fn = Loss(family, objective)
    loss_fn(Batch(x), torch.tensor(0.7), num_data=100)  # compile (rng-neutral)
    pyro.set_rng_seed(seed)
    family.zero_grad()
    loss = loss_fn(Batch(x), torch.tensor(0.7), num_data=100)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in family.parameters()]), loss_fn


@pytest.mark.parametrize(
    "config",
    [
        dict(),
        dict(prior="vampprior", prior_kwargs={"components": 3}),
        dict(model="hvae", latent_dims=(4, 2), upper_hidden=(8,), guide="ladder"),
    ],
)
def test_jit_lean_graph_matches_trace_elbo_across_batch_sizes(config):
    """The default objective of a library VAE compiles the -ELBO as one traced module: its loss and
    gradient are Trace_ELBO's (with torch's own Normal: this also checks the shorter densities in
    a whole program), with a graph specialized to each batch size, and with the shape-generic
    graph used once the specialized ones are spent."""
    torch.manual_seed(0)
    cfg = dict(data_shape=(1, 8, 8), latent_dim=4, hidden=(16,), **config)
    family = build_model(ModelConfig(**cfg))
    x = (torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    jit = make_objective("jit", family)
    jit.max_specialized = 2
    for b in (12, 5, 7):
        lb, gb, loss_fn = _grads(family, jit, x[:b])
        with pytest.MonkeyPatch.context() as mp:  # the reference: torch's Normal everywhere
            mp.setattr(ReparamNormal, "log_prob", dist.Normal.log_prob)
            mp.setattr(UnitNormal, "log_prob", dist.Normal.log_prob)
            la, ga, _ = _grads(family, Trace_ELBO(), x[:b])
        assert la == pytest.approx(lb, rel=1e-5)
        assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-3), (ga - gb).abs().max()
    [(_, graphs)] = jit._lean_graphs.values()
    assert len(graphs) == 3 and None in graphs  # batches of 12 and 5 specialized, 7 on the generic graph


def test_jit_falls_back_to_pyros_graph_for_score_function_guides():
    torch.manual_seed(0)
    family = build_model(ModelConfig(data_shape=(1, 8, 8), latent_dim=4, hidden=(16,), estimator="score"))
    x = (torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    jit = make_objective("jit", family)
    lb, gb, _ = _grads(family, jit, x)
    la, ga, _ = _grads(family, Trace_ELBO(), x)
    assert [g for _, g in jit._lean_graphs.values()] == [None]  # not reparameterized: Pyro's compiled path
    assert la == pytest.approx(lb, rel=1e-5)
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-3)


def test_jit_falls_back_when_a_guide_uses_a_param_store_parameter():
    """A pyro.param outside the module cannot be read by a graph traced over the module: the
    objective must take Pyro's compiled path, and the gradient must reach that parameter."""
    from torch import nn

    from pyro_vae.inference.objectives import JitTraceELBO

    class Own(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def model(self, x, kl_weight=1.0, num_data=None):
            pyro.module("own", self)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
                pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True).expand(-1, 3), 1.0).to_event(1), obs=x)

        def guide(self, x, kl_weight=1.0, num_data=None):
            s = pyro.param("own_scale", torch.ones(2), constraint=dist.constraints.positive)
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Normal(self.lin(x), s).to_event(1))

    pyro.clear_param_store()
    family, objective = Own(), JitTraceELBO(ignore_jit_warnings=True)
    objective.differentiable_loss(family.model, family.guide, torch.randn(5, 3), torch.tensor(1.0)).backward()
    assert [g for _, g in objective._lean_graphs.values()] == [None]
    assert pyro.param("own_scale").unconstrained().grad.abs().sum() > 0
    pyro.clear_param_store()


def test_jit_does_not_specialize_a_graph_with_value_dependent_shapes():
    """A boolean-mask index makes a size depend on the data, not on the input shapes: such a
    graph stays shape-generic (a size folded at tracing would be wrong at the next batch), and
    the loss stays Trace_ELBO's on batches of one shape but different masks."""
    from torch import nn

    from pyro_vae.inference.objectives import JitTraceELBO

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def model(self, x, kl_weight=1.0, num_data=None):
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
                pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True).expand(-1, 3), 1.0).to_event(1), obs=x)
            positive = x[x > 0]  # as many entries as the data has positive values
            pyro.factor("positive", -positive.reshape(positive.shape[0], 1).square().sum())

        def guide(self, x, kl_weight=1.0, num_data=None):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Normal(self.lin(x), 1.0).to_event(1))

    family, objective = Masked(), JitTraceELBO(ignore_jit_warnings=True)
    g = torch.Generator().manual_seed(0)
    objective.differentiable_loss(family.model, family.guide, torch.randn(5, 3, generator=g), torch.tensor(1.0))
    for _ in range(3):  # after the compile (which draws random numbers of its own)
        x = torch.randn(5, 3, generator=g)
        pyro.set_rng_seed(1)
        lean = objective.differentiable_loss(family.model, family.guide, x, torch.tensor(1.0))
        pyro.set_rng_seed(1)
        reference = Trace_ELBO().differentiable_loss(family.model, family.guide, x, torch.tensor(1.0))
        assert lean.item() == pytest.approx(reference.item(), rel=1e-5)
    [(_, graphs)] = objective._lean_graphs.values()
    assert len(graphs) == 1  # one (shape-generic) graph for the one input shape

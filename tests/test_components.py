"""Priors, likelihoods and networks: shapes, supports, errors, and user-written parts."""

import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_vae.components.likelihoods import LIKELIHOODS, build_likelihood
from pyro_vae.components.networks import build_networks
from pyro_vae.components.priors import PRIORS, build_prior, check_prior


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_priors_give_one_latent_vector(name):
    p = build_prior(name, 6, data_shape=(1, 4, 4))
    if getattr(p, "needs_encoder", False):  # the VampPrior: a mixture of an encoder at pseudo-inputs
        from pyro_vae.components.networks import MLPEncoder

        p.attach(MLPEncoder((1, 4, 4), 6, (8,)))
    d = p()
    assert tuple(d.event_shape) == (6,) and tuple(d.batch_shape) == ()
    z = d.sample((4,))
    assert z.shape == (4, 6)
    assert d.log_prob(z).shape == (4,)


def test_standard_normal_log_prob_is_exact():
    z = torch.randn(3, 4)
    expected = -0.5 * (z**2).sum(-1) - 2 * torch.log(torch.tensor(2 * torch.pi))
    assert torch.allclose(build_prior("standard_normal", 4)().log_prob(z), expected, atol=1e-5)


def test_mixture_prior_matches_hand_computed_density():
    p = build_prior("mixture", 2, components=3)
    z = torch.randn(5, 2)
    comps = torch.stack([dist.Normal(p.locs[k], p.log_scales[k].exp()).log_prob(z).sum(-1) for k in range(3)], -1)
    expected = (comps + torch.log_softmax(p.logits, -1)).logsumexp(-1)
    assert torch.allclose(p().log_prob(z), expected, atol=1e-5)


def test_check_prior_rejects_wrong_event_shape():
    class Bad(nn.Module):
        def forward(self):
            return dist.Normal(torch.zeros(3), 1.0)  # forgot .to_event(1)

    with pytest.raises(ValueError, match="to_event"):
        check_prior(Bad(), 3)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_likelihood_event_dim_covers_data_dims(name):
    if name == "tabular":
        pytest.skip("rows of a table with a schema: tests/test_tabular.py")
    lik = build_likelihood(name, (1, 5, 5))
    params = torch.randn(7, 1, 5, 5)
    d = lik(params)
    assert tuple(d.event_shape) == (1, 5, 5) and tuple(d.batch_shape) == (7,)
    x = d.sample()  # a value in the support of each (0/1, [0, 1], reals, counts)
    assert d.log_prob(x).shape == (7,)
    assert lik.mean(params).shape == params.shape


def test_bernoulli_rejects_grey_and_8bit_data():
    lik = build_likelihood("bernoulli", (4,))
    lik.check_data(torch.tensor([[0.0, 1.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="binary"):
        lik.check_data(torch.tensor([[0.0, 0.5, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="binary"):
        lik.check_data(torch.tensor([[0.0, 255.0, 12.0, 0.0]]))


def test_continuous_bernoulli_rejects_values_outside_unit_interval():
    lik = build_likelihood("continuous_bernoulli", (3,))
    lik.check_data(torch.tensor([[0.0, 0.3, 1.0]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lik.check_data(torch.tensor([[0.0, 255.0, 3.0]]))


def test_likelihoods_reject_nan():
    for name in LIKELIHOODS:
        if getattr(LIKELIHOODS[name], "missing_values", False):  # NaN marks a missing entry (tests/test_tabular.py)
            continue
        with pytest.raises(ValueError, match="NaN"):
            build_likelihood(name, (2,)).check_data(torch.tensor([[0.0, float("nan")]]))


def test_gaussian_learned_scale_is_a_parameter_and_fixed_is_not():
    learned = build_likelihood("gaussian", (3,), scale=0.5, learn_scale=True)
    fixed = build_likelihood("gaussian", (3,), scale=0.5)
    assert len(list(learned.parameters())) == 1 and len(list(fixed.parameters())) == 0
    x, mu = torch.zeros(1, 3), torch.ones(1, 3)
    expected = dist.Normal(1.0, 0.5).log_prob(torch.tensor(0.0)) * 3
    assert torch.allclose(fixed(mu).log_prob(x), expected)
    with pytest.raises(ValueError, match="positive"):
        build_likelihood("laplace", (3,), scale=0.0)


@pytest.mark.parametrize(
    "kind,shape",
    [("mlp", (1, 28, 28)), ("mlp", (10,)), ("conv", (1, 28, 28)), ("conv", (3, 32, 32)), ("conv", (1, 30, 26))],
)
def test_networks_shapes_with_extra_leading_dims(kind, shape):
    enc, dec = build_networks(kind, shape, 5, (32,))
    x = torch.rand(4, *shape)
    loc, scale = enc(x)
    assert loc.shape == (4, 5) and (scale > 0).all()
    z = torch.randn(3, 4, 5)  # particles x batch x latent
    assert dec(z).shape == (3, 4, *shape)


def test_conv_networks_need_images():
    with pytest.raises(ValueError, match="C, H, W"):
        build_networks("conv", (784,), 5, (32,))

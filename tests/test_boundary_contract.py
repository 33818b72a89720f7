"""The model contract's boundary (issue 21): plugins checked when they are imported or built,
sizes counted before anything is allocated, every family option checked against its type,
labels checked against the model's classes, keyword per-example arguments sliced like
positional ones, and ``classify``'s numbers and interruption.

Each mistake is one line naming the class or option, what is wrong and the fix: at the command
line ``pyro-vae COMMAND: error: ...`` and exit 2 (see ``test_mistakes.py``), in Python a
ValueError or a ContractError, never a traceback from deep inside training or Pyro.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae import Batch, ContractError, Family, ModelConfig, build_model, data_plate
from pyro_vae.data.batch import DataError
from pyro_vae.inference.marginal import elbo, elbo_terms, latent_statistics, log_marginal
from pyro_vae.analysis.evaluate import evaluate
from pyro_vae.models import MODELS, model_options
from pyro_vae.models.base import batch_size_of
from test_mistakes import TINY, _binary, assert_user_error, cli

FAST = [
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--eval-k",
    "0",
    "--no-plots",
    "--no-progress",
    "--val-fraction",
    "0.25",
    "--binarize",
    "none",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("contract")
    np.save(d / "bin.npy", _binary())
    np.savez(d / "four.npz", x=_binary(), y=np.arange(48) % 4)
    np.savez(d / "five.npz", x=_binary(seed=1), y=np.arange(48) % 5)
    return d


@pytest.fixture(autouse=True)
def _registries():
    """A plugin test registers names; the registries are as they were after it."""
    from pyro_vae.components.likelihoods import LIKELIHOODS
    from pyro_vae.components.priors import PRIORS

    saved = [(r, dict(r)) for r in (MODELS, LIKELIHOODS, PRIORS)]
    yield
    for registry, entries in saved:
        registry.clear()
        registry.update(entries)


# ---------------------------------------------------------------------- 1. plugins against the contract
HEAD = """
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae import Family, data_plate, register_likelihood, register_model, register_prior
from pyro_vae.models.base import batch_size_of, option
from pyro_vae.components.networks import MLPDecoder


@dataclass
class Opts:
    width: int = option(8, "hidden units")


def model(self, x=None, kl_weight=1.0, num_data=None):
    pyro.module(self.pyro_name, self)
    with data_plate(batch_size_of(x), num_data):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        return pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(2), obs=x)


def guide(self, x, kl_weight=1.0, num_data=None):
    with data_plate(x.shape[0], num_data):
        pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))
"""

PLUGINS = {
    # (plugin body, extra flags, words the error line must hold)
    "config_not_a_dataclass": (
        """
class Loose:  # no @dataclass
    width = 8

@register_model("c21_loose")
class LooseFamily(Family):
    Config = Loose
    model, guide = model, guide
    def __init__(self, data_shape):
        super().__init__()
        self.data_shape, self.decoder = tuple(data_shape), MLPDecoder(data_shape, 2, (8,))
    @classmethod
    def from_config(cls, config, data_shape, num_classes=None):
        return cls(data_shape)
""",
        ["--model", "c21_loose"],
        ["LooseFamily.Config is not a dataclass", "@dataclasses.dataclass"],
    ),
    "config_field_without_a_default": (
        """
@dataclass
class Bare:
    width: int  # no default: the flag could not be left out

@register_model("c21_bare")
class BareFamily(Family):
    Config = Bare
    model, guide = model, guide
    def __init__(self, data_shape):
        super().__init__()
        self.data_shape, self.decoder = tuple(data_shape), MLPDecoder(data_shape, 2, (8,))
    @classmethod
    def from_config(cls, config, data_shape, num_classes=None):
        return cls(data_shape)
""",
        ["--model", "c21_bare"],
        ["BareFamily.Config field 'width' has no default"],
    ),
    "family_without_from_config": (
        """
@register_model("c21_nofrom")
class NoFromConfig(Family):
    Config = Opts
    model, guide = model, guide
    def __init__(self, data_shape):
        super().__init__()
        self.data_shape, self.decoder = tuple(data_shape), MLPDecoder(data_shape, 2, (8,))
""",
        ["--model", "c21_nofrom"],
        ["NoFromConfig does not define from_config", "classmethod"],
    ),
    "family_without_a_guide": (
        """
@register_model("c21_noguide")
class NoGuide(Family):
    Config = Opts
    model = model
    def __init__(self, data_shape):
        super().__init__()
        self.data_shape, self.decoder = tuple(data_shape), MLPDecoder(data_shape, 2, (8,))
    @classmethod
    def from_config(cls, config, data_shape, num_classes=None):
        return cls(data_shape)
""",
        ["--model", "c21_noguide"],
        ["NoGuide does not define guide", "guide(self, x, kl_weight=1.0, num_data=None)"],
    ),
    "family_without_parameters": (
        """
@register_model("c21_fixed")
class Fixed(Family):
    Config = Opts
    model, guide = model, guide
    def __init__(self, data_shape):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.decoder = lambda z: torch.zeros(*z.shape[:-1], *self.data_shape)  # no nn.Parameter anywhere
    @classmethod
    def from_config(cls, config, data_shape, num_classes=None):
        return cls(data_shape)
""",
        ["--model", "c21_fixed"],
        ["Fixed has no parameters to train", "nn.Parameter"],
    ),
    "likelihood_without_log_prob": (
        """
@register_likelihood("c21_raw")
class RawLikelihood(nn.Module):
    def __init__(self, data_shape, **_):
        super().__init__()
    def forward(self, params):
        return torch.sigmoid(params)  # a tensor, not a distribution
    def mean(self, params):
        return torch.sigmoid(params)
""",
        ["--likelihood", "c21_raw"],
        ["likelihood RawLikelihood(params) returned a Tensor", "log_prob"],
    ),
    "likelihood_without_forward": (
        """
@register_likelihood("c21_noforward")
class NoForward(nn.Module):
    def __init__(self, data_shape, **_):
        super().__init__()
    def mean(self, params):
        return torch.sigmoid(params)
""",
        ["--likelihood", "c21_noforward"],
        ["likelihood NoForward does not define forward"],
    ),
    "prior_without_forward": (
        """
@register_prior("c21_noprior")
class NoPrior(nn.Module):
    def __init__(self, latent_dim, **_):
        super().__init__()
""",
        ["--prior", "c21_noprior"],
        ["prior NoPrior does not define forward"],
    ),
}


@pytest.mark.parametrize("case", sorted(PLUGINS))
def test_a_plugin_that_breaks_the_contract_is_named_when_imported_or_built(case, data, tmp_path, capsys):
    body, flags, expected = PLUGINS[case]
    plugin = tmp_path / f"c21_{case}.py"
    plugin.write_text(HEAD + textwrap.dedent(body))
    assert_user_error(
        ["train", "--plugin", plugin, "--dataset", data / "bin.npy", *flags, *FAST, "--out", tmp_path / "run"],
        capsys,
        *expected,
    )
    assert not (tmp_path / "run" / "checkpoint_last.pt").exists()


# ---------------------------------------------------------------------- 2. sizes before allocating
@pytest.mark.parametrize(
    "flags, option",
    [
        (["--hidden", "1000000000000"], "hidden"),
        (["--latent-dim", "1000000000000"], "latent_dim"),
        (["--model", "gmvae", "--clusters", "1000000000000"], "clusters"),
        (["--prior", "vampprior", "--prior-components", "1000000000000"], "prior_kwargs"),
    ],
)
def test_a_model_larger_than_memory_is_refused_before_it_is_made(flags, option, data, tmp_path, capsys):
    assert_user_error(
        ["train", "--dataset", data / "bin.npy", *TINY, *flags, "--binarize", "none", "--out", tmp_path / "run"],
        capsys,
        "parameters",
        "more than this machine's memory",
        option,
    )


@pytest.mark.parametrize(
    "config, words",
    [
        (dict(model="iaf", flow_hidden=10**12), ["parameters", "flow_hidden"]),
        (dict(model="ssvae", num_classes=2**31), ["parameters", "2147483648 classes"]),
        (dict(model="hvae", latent_dims=(2,) * 6000), ["more than 5000 layers", "latent_dims"]),
    ],
)
def test_sizes_of_every_kind_are_counted_before_allocating(config, words):
    with pytest.raises(ValueError) as e:
        build_model(ModelConfig(data_shape=(1, 8, 8), hidden=(8,), **config))
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
    # counting builds nothing for real and draws no random numbers: the same weights as ever
    torch.manual_seed(3)
    fam = build_model(ModelConfig(model="iaf", data_shape=(1, 8, 8), latent_dim=3, hidden=(8,)))
    after = torch.rand(1)
    torch.manual_seed(3)
    plain = MODELS["iaf"].from_config(model_options("iaf", {"latent_dim": 3, "hidden": (8,)}), (1, 8, 8))
    assert torch.equal(after, torch.rand(1))
    assert all(torch.equal(a, b) for a, b in zip(fam.state_dict().values(), plain.state_dict().values()))


# ---------------------------------------------------------------------- 3. options against their types
@pytest.mark.parametrize(
    "option, value, words",
    [
        ("hidden", ["x"], ["--hidden must be a list of integers", "'x'"]),  # the CLI says the library's
        ("hidden", [8, 2.5], ["--hidden must be a list of integers", "2.5"]),  # "option hidden" as the flag
        ("latent_dim", 2.5, ["--latent-dim must be an integer, got 2.5"]),
        ("latent_dim", True, ["--latent-dim must be an integer, got True"]),
        ("noise_rate", float("nan"), ["--noise-rate must be a finite number, got nan"]),
        ("network", 3, ["--network must be a string, got 3"]),
    ],
)
def test_a_config_file_with_an_option_of_the_wrong_type_is_refused(option, value, words, data, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model": {"model": "vae", "options": {option: value}},
                "train": {"epochs": 1, "batch_size": 16},
                "data": {"dataset": str(data / "bin.npy"), "val_fraction": 0.25},
            }
        )
    )
    assert_user_error(["train", "--config", config, *FAST, "--out", tmp_path / "run"], capsys, *words)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"hidden": ("x",)}, ["option hidden must be a list of integers"]),
        ({"observed_quadrants": 2.0, "condition": "quadrant"}, ["option observed_quadrants must be an integer"]),
        ({"learned_prior": 1}, ["option learned_prior must be true or false"]),
        (
            {"prior": "mixture", "prior_kwargs": {"componets": 3}},
            ["prior MixtureOfGaussians has no option 'componets'"],
        ),
        (
            {"prior": "mixture", "prior_kwargs": {"components": 2.5}},
            ["prior MixtureOfGaussians option components must be an integer, got 2.5"],
        ),
        ({"prior": "flow", "prior_kwargs": {"hidden": "x"}}, ["prior FlowPrior option hidden must be an integer"]),
        (
            {"likelihood": "gaussian", "likelihood_kwargs": {"learn_scale": "yes"}},
            ["option learn_scale must be true or false"],
        ),
    ],
)
def test_options_of_a_checkpoint_or_model_config_are_checked_by_type(options, words):
    name = "cvae" if "observed_quadrants" in options or "learned_prior" in options else "vae"
    with pytest.raises(ValueError) as e:
        build_model(ModelConfig(model=name, data_shape=(1, 8, 8), num_classes=4, **options))
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


# ---------------------------------------------------------------------- 4. labels against the model's classes
@pytest.mark.parametrize("family", ["ssvae", "cvae"])
def test_data_with_a_class_the_model_does_not_have_are_refused(family):
    fam = build_model(ModelConfig(model=family, data_shape=(1, 8, 8), num_classes=4, latent_dim=2, hidden=(8,)))
    x = torch.from_numpy(_binary(10))[:, None]
    with pytest.raises(DataError, match=r"the data have labels up to 4 but this model has 4 classes \(0\.\.3\)"):
        evaluate(fam, Batch(x, torch.arange(10) % 5), k=2)
    assert evaluate(fam, Batch(x, torch.arange(10) % 4), k=2)["num_images"]["value"] == 10


def test_evaluating_a_4_class_m2_on_5_classes_is_one_line(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        cli(
            ["train", "--model", "ssvae", "--dataset", data / "four.npz", *TINY, "--binarize", "none", "--out", run],
            capsys,
        )[0]
        == 0
    )
    assert_user_error(
        ["evaluate", run, "--dataset", data / "five.npz", "--k", "2", "--no-progress"],
        capsys,
        "labels up to 4 but this model has 4 classes (0..3)",
    )


# ---------------------------------------------------------------------- 5. keyword per-example arguments
S = 0.3


class KeywordPPCA(Family):
    """x = W z + A c + noise; the condition c is a keyword argument; the guide is the exact
    posterior, so every log weight is the exact log p(x | c)."""

    def __init__(self, args_as_dict=False):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.data_shape, self.args_as_dict = (4,), args_as_dict
        w = torch.linalg.qr(torch.randn(4, 2, generator=g))[0] * torch.tensor([1.5, 0.7])
        self.register_buffer("W", w)
        self.register_buffer("A", torch.randn(4, 3, generator=g))
        self.register_buffer("var", 1.0 / (1.0 + (w * w).sum(0) / S**2))

    def args(self, batch):
        return {"x": batch.x, "c": batch.c} if self.args_as_dict else (batch.x,)

    def model(self, x=None, kl_weight=1.0, num_data=None, c=None):
        with data_plate(batch_size_of(x, c), num_data):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            return pyro.sample("x", dist.Normal(z @ self.W.T + c @ self.A.T, S).to_event(1), obs=x)

    def guide(self, x, kl_weight=1.0, num_data=None, c=None):
        with data_plate(x.shape[0], num_data):
            loc = self.var * ((x - c @ self.A.T) @ self.W / S**2)
            pyro.sample("z", dist.Normal(loc, self.var.sqrt()).to_event(1))


def test_keyword_per_example_arguments_are_sliced_with_x():
    fam = KeywordPPCA()
    g = torch.Generator().manual_seed(1)
    c = torch.randn(11, 3, generator=g) * 3  # conditions far apart: a mix-up shows at once
    x = torch.randn(11, 2, generator=g) @ fam.W.T + c @ fam.A.T + S * torch.randn(11, 4, generator=g)
    exact = dist.MultivariateNormal(c @ fam.A.T, fam.W @ fam.W.T + S**2 * torch.eye(4)).log_prob(x)
    assert torch.allclose(log_marginal(fam.model, fam.guide, x, c=c, num_particles=3, batch_size=4), exact, atol=1e-4)
    assert torch.allclose(elbo(fam.model, fam.guide, x, c=c, batch_size=4), exact, atol=1e-4)
    ll, kl = elbo_terms(fam.model, fam.guide, x, c=c, batch_size=4)
    assert ll.shape == kl.shape == (11,)
    stats = latent_statistics(fam.model, fam.guide, x, c=c, batch_size=4)
    assert stats["z"]["dims"] == 2
    # the contract: args(batch) is a tuple; a dict is named, not passed on to fail inside Pyro
    with pytest.raises(ContractError, match=r"KeywordPPCA.args\(batch\) must return a tuple.*got dict"):
        evaluate(KeywordPPCA(args_as_dict=True), Batch(x, c=c), k=2)


# ---------------------------------------------------------------------- 6. classify
@pytest.fixture(scope="module")
def labelled_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("c21run") / "run"
    from pyro_vae.cli import main

    assert main(["train", "--dataset", str(data / "four.npz"), *TINY, "--binarize", "none", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--lr", "inf"], ["--lr", "finite number > 0", "inf"]),
        (["--lr", "nan"], ["--lr", "finite number > 0"]),
        (["--lr", "0"], ["--lr", "> 0"]),
        (["--seed", str(2**70)], ["--seed", "2**32 - 1"]),
        (["--seed", "-1"], ["--seed", "2**32 - 1"]),
        (["--epochs", "0"], ["--epochs", ">= 1"]),
        (["--hidden", "0"], ["--hidden", ">= 1"]),
        (["--hidden", "1000000000000"], ["M1 classifier would have", "parameters", "--hidden"]),
    ],
)
def test_classify_refuses_numbers_that_train_nothing(flags, words, labelled_run, capsys):
    assert_user_error(
        ["classify", labelled_run, "--labels", "4", "--epochs", "1", "--no-progress", *flags], capsys, *words
    )
    assert not list(labelled_run.glob("m1_*.json"))


def test_an_interrupted_classify_does_not_advise_resume(labelled_run, capsys, monkeypatch):
    from pyro_vae.analysis import m1

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(m1, "m1_classify", interrupted)
    code, _, err = cli(["classify", labelled_run, "--labels", "4", "--epochs", "1", "--no-progress"], capsys)
    assert code == 130 and "Traceback" not in err
    assert "with --resume" not in err and "no result was written" in err and "run the same command again" in err, err


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"lr": float("inf")}, "finite lr > 0"),
        ({"weight_decay": float("nan")}, "finite weight_decay"),
        ({"seed": 2**70}, "seed must be an integer from 0"),
    ],
)
def test_m1_classify_refuses_them_in_python_too(kwargs, words):
    from pyro_vae.analysis.m1 import m1_classify

    codes = Batch(torch.zeros(4, 2), torch.arange(4))
    with pytest.raises(ValueError, match=words):
        m1_classify(None, codes, codes, labels=4, **kwargs)

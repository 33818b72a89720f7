"""Tables: the categorical and tabular likelihoods against scipy's densities on hand-made rows
(missing entries included), their support errors, imputation, the penguins table, and a tiny
tabular VAE trained on a few penguins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pyro_vae.components.likelihoods import build_likelihood
from pyro_vae.components.tabular import impute
from pyro_vae.config import ModelConfig, TrainConfig, read_metrics
from pyro_vae.data.batch import Batch, DataError
from pyro_vae.data.tables import (
    PENGUINS_URL,
    Column,
    load_penguins,
    load_table,
    one_hot,
    parse_schema,
    penguins_path,
    read_csv,
)
from pyro_vae.models import build_model

torch.set_num_threads(1)
nan = float("nan")
SCHEMA = "a:real b:positive c:count d:categorical:red|green|blue e:binary"  # 7 entries


def tabular(count="poisson"):
    lik = build_likelihood("tabular", (7,), schema=SCHEMA, count=count)
    with torch.no_grad():  # spreads away from their initial value, so a wrong one is seen
        for kind, value in (("real", 0.7), ("positive", 0.4), ("count", 2.5)):
            if kind in lik.raw:
                lik.raw[kind].fill_(math.log(math.expm1(value - lik.min_scale)))
    return lik


def softmax(v):
    e = np.exp(v - np.max(v))
    return e / e.sum()


def reference(params, row, count="poisson"):
    """log p(row | params) summed over the observed columns with scipy."""
    p = params.double().numpy()
    total = 0.0
    if not math.isnan(row[0]):
        total += stats.norm(p[0], 0.7).logpdf(row[0])
    if not math.isnan(row[1]):
        total += stats.lognorm(s=0.4, scale=math.exp(p[1])).logpdf(row[1])
    if not math.isnan(row[2]):
        if count == "poisson":
            total += stats.poisson(math.exp(p[2])).logpmf(row[2])
        else:  # mean exp(mu), size r: scipy's nbinom(n=r, p=r / (r + mean))
            total += stats.nbinom(2.5, 2.5 / (2.5 + math.exp(p[2]))).logpmf(row[2])
    if not math.isnan(row[3]):
        total += math.log(softmax(p[3:6])[int(np.argmax(row[3:6]))])
    if not math.isnan(row[6]):
        q = 1 / (1 + math.exp(-p[6]))
        total += stats.bernoulli(q).logpmf(row[6])
    return total


ROWS = torch.tensor(
    [
        [0.3, 1.7, 2.0, 0.0, 1.0, 0.0, 1.0],
        [nan, 0.2, 0.0, 1.0, 0.0, 0.0, 0.0],  # a missing real
        [-1.2, nan, nan, nan, nan, nan, 1.0],  # positive, count and categorical missing
        [nan, nan, nan, nan, nan, nan, nan],  # nothing observed: log p = 0
    ]
)


# ---------------------------------------------------------------------- densities
def test_categorical_log_prob_matches_torch_categorical():
    lik = build_likelihood("categorical", (2, 3))
    params = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(0))
    codes = torch.tensor([[0, 2], [1, 1], [2, 0], [0, 0]])
    x = one_hot(codes, 3)
    expected = torch.distributions.Categorical(logits=params).log_prob(codes).sum(-1)
    assert torch.allclose(lik(params).log_prob(x), expected, atol=1e-6)
    assert torch.allclose(lik.mean(params).sum(-1), torch.ones(4, 2))
    assert lik(params).sample().sum(-1).eq(1).all()


@pytest.mark.parametrize("count", ["poisson", "negative_binomial"])
def test_tabular_log_prob_matches_scipy_with_missing_entries_giving_zero(count):
    lik = tabular(count)
    params = torch.randn(4, 7, generator=torch.Generator().manual_seed(1))
    got = lik(params).log_prob(ROWS)
    expected = torch.tensor([reference(params[i], ROWS[i].tolist(), count) for i in range(4)])
    assert torch.allclose(got.double(), expected, atol=1e-4)
    assert got[3] == 0  # a row with nothing observed
    per_column = lik(params).column_log_prob(ROWS)
    assert per_column.shape == (4, 5) and (per_column[2, 1:4] == 0).all() and per_column[1, 0] == 0


def test_tabular_broadcasts_over_particles_and_keeps_gradients_finite():
    lik = tabular()
    params = torch.randn(3, 4, 7, requires_grad=True)  # particles x batch x entries
    d = lik(params)
    assert tuple(d.batch_shape) == (3, 4) and tuple(d.event_shape) == (7,)
    lp = d.log_prob(ROWS)
    assert lp.shape == (3, 4)
    lp.sum().backward()  # missing entries must not leak NaN into a gradient
    assert torch.isfinite(params.grad).all() and torch.isfinite(lik.raw["real"].grad).all()
    assert (params.grad[:, 3] == 0).all()  # nothing observed, nothing learned


def test_tabular_mean_and_samples_follow_each_column():
    lik = tabular()
    params = torch.tensor([[0.5, 0.1, 1.0, 2.0, 0.0, -2.0, 3.0]])
    mean = lik.mean(params)[0]
    assert mean[0] == 0.5 and torch.isclose(mean[1], torch.tensor(math.exp(0.1 + 0.4**2 / 2)), atol=1e-3)
    assert torch.isclose(mean[2], torch.tensor(math.e)) and torch.isclose(mean[3:6].sum(), torch.tensor(1.0))
    draws = lik(params.expand(500, 7)).sample()
    assert (draws[:, 1] > 0).all() and (draws[:, 2] == draws[:, 2].round()).all()
    assert draws[:, 3:6].sum(-1).eq(1).all() and set(draws[:, 6].tolist()) <= {0.0, 1.0}
    lik.check_data(draws)


# ---------------------------------------------------------------------- support
@pytest.mark.parametrize(
    "entry,value,match",
    [
        (1, -1.0, "positive column 'b' needs values > 0"),
        (2, 1.5, "count column 'c' needs whole numbers"),
        (6, 0.5, "binary column 'e' needs 0 or 1"),
        (0, float("inf"), "infinite"),
    ],
)
def test_tabular_support_errors_name_the_column(entry, value, match):
    x = ROWS[:1].clone()
    x[0, entry] = value
    with pytest.raises(ValueError, match=match):
        tabular().check_data(x)


def test_tabular_refuses_a_half_missing_or_not_one_hot_category():
    for block in ([nan, 1.0, 0.0], [1.0, 1.0, 0.0], [0.5, 0.5, 0.0]):
        x = ROWS[:1].clone()
        x[0, 3:6] = torch.tensor(block)
        with pytest.raises(ValueError, match="categorical column 'd' needs one-hot rows"):
            tabular().check_data(x)
    tabular().check_data(ROWS)  # missing entries are fine


def test_categorical_refuses_integer_codes_with_the_fix():
    with pytest.raises(ValueError, match="one_hot"):
        build_likelihood("categorical", (3,)).check_data(torch.tensor([[2.0, 0.0, 1.0]]))


def test_tabular_needs_a_schema_that_fits_the_data():
    with pytest.raises(ValueError, match="needs the table's schema"):
        build_likelihood("tabular", (7,))
    with pytest.raises(ValueError, match=r"need data of shape \(7,\)"):
        build_likelihood("tabular", (6,), schema=SCHEMA)


def test_schema_forms_agree():
    as_text = parse_schema(SCHEMA)
    as_dicts = parse_schema([c.to_dict() for c in as_text])
    assert as_text == as_dicts and as_text[3] == Column("d", "categorical", ("red", "green", "blue"))
    assert parse_schema(["k:categorical:4"])[0].levels == ("0", "1", "2", "3")
    with pytest.raises(DataError, match="unknown kind"):
        parse_schema("a:weird")


# ---------------------------------------------------------------------- imputation
def tiny_tabular_vae(seed=0):
    torch.manual_seed(seed)
    return build_model(
        ModelConfig(
            data_shape=(7,), latent_dim=2, hidden=(16,), likelihood="tabular", likelihood_kwargs={"schema": SCHEMA}
        )
    )


def test_impute_keeps_observed_entries_and_fills_missing_ones():
    vae = tiny_tabular_vae()
    filled = impute(vae, ROWS)
    seen = ~torch.isnan(ROWS)
    assert torch.equal(filled[seen], ROWS[seen]) and not torch.isnan(filled).any()
    vae.likelihood.check_data(filled)  # a filled category is one level, a filled binary 0 or 1
    mean = vae.reconstruct(ROWS)  # what the filled numbers are: E[x|z] at the mean code of the observed part
    assert torch.allclose(filled[~seen][:1], mean[~seen][:1])


# ---------------------------------------------------------------------- the penguins
def test_penguins_table_reads_the_shipped_file():
    s = load_penguins()
    assert len(s.train) + len(s.val) + len(s.test) == 344 and s.train.data_shape == (11,)
    everything = torch.cat([s.train.x, s.val.x, s.test.x])
    missing_cells = sum(int(torch.isnan(everything[:, at]).sum()) for at in (0, 3, 4, 5, 6, 7, 8))
    assert missing_cells == 19 and int(torch.isnan(everything).any(1).sum()) == 11
    assert set(torch.cat([s.train.y, s.val.y, s.test.y]).tolist()) == {0, 1, 2}
    header, rows = read_csv(penguins_path())
    first = s.table.to_original(s.train.x[:1])[0]  # back to millimetres and grams
    body = {r[header.index("body_mass_g")] for r in rows}
    assert f"{first[6]:.0f}" in body


def test_penguins_without_the_package_say_what_to_fetch(monkeypatch, tmp_path):
    import importlib.util
    import urllib.request

    from pyro_vae.data import tables

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="penguins.csv") as e:
        tables.penguins_path(tmp_path, download=False)
    assert PENGUINS_URL in str(e.value)

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="could not download penguins.csv.*offline"):
        tables.penguins_path(tmp_path)
    (tmp_path / "penguins.csv").write_text("species,island\nAdelie,Dream\n")
    assert tables.penguins_path(tmp_path) == tmp_path / "penguins.csv"


def test_load_table_names_a_bad_cell_and_a_missing_column(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("a,b\n1.5,x\n2.5,y\n3.5,z\nNA,x\n")
    s = load_table(f, val_fraction=0.25, test_fraction=0.25)  # schema inferred: a real, b categorical
    assert s.schema == [{"name": "a", "kind": "real"}, {"name": "b", "kind": "categorical", "levels": ["x", "y", "z"]}]
    with pytest.raises(DataError, match="row 2: column 'b' has value 'y', not one of its levels x, z"):
        load_table(f, ["a:real", "b:categorical:x|z"])
    with pytest.raises(DataError, match="no column 'c'"):
        load_table(f, ["c:real"])


# ---------------------------------------------------------------------- training
def test_a_tiny_tabular_vae_trains_on_a_few_penguins(tmp_path):
    from pyro_vae.training.fit import fit

    s = load_penguins()
    few = Batch(s.train.x[:64], s.train.y[:64])
    assert torch.isnan(few.x).any()  # the missing entries go in
    torch.manual_seed(0)
    vae = build_model(
        ModelConfig(
            data_shape=(11,), latent_dim=2, hidden=(16,), likelihood="tabular", likelihood_kwargs={"schema": s.schema}
        )
    )
    summary = fit(
        vae, (few, s.val), TrainConfig(epochs=6, batch_size=16, lr=1e-2, seed=0), tmp_path, progress=False, plots=False
    )
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert math.isfinite(summary["best_val_elbo"]) and rows[-1]["train_loss"] < rows[0]["train_loss"]
    filled = impute(vae, s.test.x)
    assert not torch.isnan(filled).any()


def test_nan_is_refused_unless_the_likelihood_models_missing_values(tmp_path):
    from pyro_vae.training.fit import fit

    x = torch.randn(20, 3)
    x[2, 1] = nan
    torch.manual_seed(0)
    vae = build_model(ModelConfig(data_shape=(3,), latent_dim=2, hidden=(8,), likelihood="gaussian"))
    with pytest.raises(DataError, match="NaN or Inf.*likelihood='tabular'"):
        fit(vae, (Batch(x), Batch(x[:4])), TrainConfig(epochs=1), tmp_path, progress=False, plots=False)


def test_the_cli_gives_the_tables_schema_to_the_likelihood(tmp_path):
    from pyro_vae.cli.app import main
    from pyro_vae.runs.checkpoint import load_checkpoint

    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "penguins",
                "--likelihood",
                "tabular",
                "--epochs",
                "1",
                "--latent-dim",
                "2",
                "--hidden",
                "8",
                "--out",
                str(out),
                "--no-plots",
                "--no-progress",
                "--eval-k",
                "10",
            ]
        )
        == 0
    )
    family = load_checkpoint(out / "checkpoint_best.pt")[0]
    assert [c.name for c in family.likelihood.columns][:2] == ["island", "bill_length_mm"]

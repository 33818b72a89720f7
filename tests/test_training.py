"""The fit loop on real MNIST digits: losses fall, checkpoints reload exactly, a resumed run
matches an uninterrupted one, a NaN stops the run without harming the last checkpoint."""

import json

import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_vae import (
    VAE,
    CheckpointError,
    DataError,
    Dataset,
    ModelConfig,
    TrainConfig,
    TrainingDiverged,
    build_model,
    fit,
    load_checkpoint,
)
from pyro_vae.runs.checkpoint import load_model_state, read_checkpoint
from pyro_vae.components.networks import MLPDecoder, MLPEncoder
from pyro_vae.training import schedules, validation
from pyro_vae.training.validation import validation_elbo

MC = ModelConfig(data_shape=(1, 28, 28), latent_dim=8, hidden=(64,))


def _cfg(**kw):
    base = dict(epochs=2, batch_size=100, lr=3e-3, binarize="static", patience=None, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def grey(mnist5k):
    return Dataset(mnist5k.x[:1000], mnist5k.y[:1000]), Dataset(mnist5k.x[1000:1300], mnist5k.y[1000:1300])


def test_training_on_real_mnist_lowers_validation_loss(grey, tmp_path):
    train, val = grey
    torch.manual_seed(0)
    vae = build_model(MC)
    from pyro_vae.data.batch import binarize

    before = validation_elbo(vae, binarize(val.x, seed=1))
    summary = fit(vae, (train, val), _cfg(epochs=4), tmp_path / "run", model_config=MC, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and summary["epochs_run"] == 4
    assert before < -500  # an untrained decoder: ~543 nats per 784 binary pixels
    assert summary["best_val_elbo"] > before + 250, (before, summary)
    assert rows[-1]["val_elbo"] > rows[0]["val_elbo"]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    for name in ("config.json", "metrics.jsonl", "checkpoint_last.pt", "checkpoint_best.pt", "summary.json"):
        assert (tmp_path / "run" / name).exists()


def test_checkpoint_reloads_to_identical_outputs(grey, tmp_path):
    train, val = grey
    vae = build_model(MC)
    fit(vae, (train, val), _cfg(epochs=1), tmp_path / "run", model_config=MC, progress=False)
    loaded, ckpt = load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    assert ckpt["epoch"] == 1
    x = val.x[:10].round()
    z = torch.randn(4, MC.options["latent_dim"])
    vae.eval()
    assert torch.equal(vae.encode(x)[0], loaded.encode(x)[0])
    assert torch.equal(vae.encode(x)[1], loaded.encode(x)[1])
    assert torch.equal(vae.decode(z), loaded.decode(z))


def test_resumed_run_reaches_the_same_parameters(grey, tmp_path):
    train, val = grey
    cfg = _cfg(epochs=4, binarize="dynamic", warmup_epochs=2.0)
    quiet = dict(progress=False)
    torch.manual_seed(5)
    straight = build_model(MC)
    fit(straight, (train, val), cfg, tmp_path / "a", model_config=MC, **quiet)

    torch.manual_seed(5)
    first = build_model(MC)
    fit(
        first,
        (train, val),
        _cfg(epochs=2, binarize="dynamic", warmup_epochs=2.0),
        tmp_path / "b",
        model_config=MC,
        **quiet,
    )
    torch.manual_seed(999)  # a different process state must not matter
    resumed = build_model(MC)
    fit(resumed, (train, val), cfg, tmp_path / "b", model_config=MC, resume=True, **quiet)

    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    rows = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3, 4]


def test_existing_run_needs_resume(grey, tmp_path):
    train, val = grey
    fit(build_model(MC), (train, val), _cfg(epochs=1), tmp_path, model_config=MC, progress=False)
    with pytest.raises(FileExistsError, match="resume=True"):
        fit(build_model(MC), (train, val), _cfg(epochs=1), tmp_path, model_config=MC, progress=False)
    with pytest.raises(CheckpointError, match="no checkpoint_last.pt"):
        fit(build_model(MC), (train, val), _cfg(), tmp_path / "new", model_config=MC, resume=True, progress=False)


class PoisonedLikelihood(nn.Module):
    """Bernoulli that turns NaN after ``after`` training-time calls."""

    def __init__(self, after):
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, params):
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                params = params * float("nan")
        return dist.Bernoulli(logits=params).to_event(3)

    def mean(self, params):
        return torch.sigmoid(params)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(grey, tmp_path):
    train, val = grey
    vae = build_model(MC)
    vae.likelihood = PoisonedLikelihood(after=15)  # epoch 1 has 10 steps: NaN in epoch 2
    with pytest.raises(TrainingDiverged, match="checkpoint_last.pt"):
        fit(vae, (train, val), _cfg(epochs=3), tmp_path, model_config=MC, progress=False)
    ckpt = read_checkpoint(tmp_path / "checkpoint_last.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model_state"].values())
    assert not (tmp_path / "checkpoint_last.pt.tmp").exists()


def test_early_stopping_stops_after_patience(grey, tmp_path, monkeypatch):
    train, val = grey
    scores = iter([-100.0, -101.0, -102.0, -103.0, -104.0, -105.0])
    monkeypatch.setattr(validation, "validation_elbo", lambda *a, **k: next(scores))
    summary = fit(build_model(MC), (train, val), _cfg(epochs=6, patience=2), tmp_path, model_config=MC, progress=False)
    assert summary["stopped_early"] and summary["epochs_run"] == 3
    assert read_checkpoint(tmp_path / "checkpoint_best.pt")["epoch"] == 1


def test_bad_data_gets_clear_errors(grey):
    train, val = grey
    quiet = dict(progress=False)
    with pytest.raises(DataError, match="binary"):  # grey pixels, Bernoulli, no binarization
        fit(build_model(MC), (train, val), _cfg(binarize="none"), **quiet)
    eight_bit = Dataset(train.x * 255, None)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        fit(build_model(MC), (eight_bit, val), _cfg(binarize="dynamic"), **quiet)
    nan = train.x.clone()
    nan[3, 0, 5, 5] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        fit(build_model(MC), (Dataset(nan), val), _cfg(), **quiet)
    flat = Dataset(train.x.reshape(-1, 784))
    with pytest.raises(ValueError, match="expects data of shape"):
        fit(build_model(MC), (flat, val), _cfg(), **quiet)


def test_corrupt_and_mismatched_checkpoints(tmp_path, grey):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a pyro-vae checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    train, val = grey
    fit(build_model(MC), (train, val), _cfg(epochs=1), tmp_path / "run", model_config=MC, progress=False)
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    other = build_model(ModelConfig(data_shape=(1, 28, 28), latent_dim=4, hidden=(64,)))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model_state(other, ckpt["model_state"])
    # a truncated file (a crash mid-write without the atomic rename) is refused clearly
    raw = (tmp_path / "run" / "checkpoint_last.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "trunc.pt")


class StudentTPrior(nn.Module):
    """A user's prior: heavy-tailed, not known to the library."""

    def __init__(self, latent_dim):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))

    def forward(self):
        return dist.StudentT(4.0, self.loc, torch.ones_like(self.loc)).to_event(1)


class PixelGaussian(nn.Module):
    """A user's likelihood: Gaussian with one learned scale per pixel."""

    def __init__(self, data_shape):
        super().__init__()
        self.log_scale = nn.Parameter(torch.full(data_shape, -1.0))

    def forward(self, params):
        return dist.Normal(params, self.log_scale.exp()).to_event(len(self.log_scale.shape))

    def mean(self, params):
        return params


def test_user_defined_prior_and_likelihood_train_without_library_changes(grey):
    train, val = grey
    shape, d = (1, 28, 28), 8
    vae = VAE(
        MLPEncoder(shape, d, (64,)), MLPDecoder(shape, d, (64,)), StudentTPrior(d), PixelGaussian(shape), shape, d
    )
    before = validation_elbo(vae, val.x)
    summary = fit(vae, (train, val), _cfg(epochs=3, binarize="none"), progress=False)
    assert summary["best_val_elbo"] > before + 200, (before, summary)
    assert vae.likelihood.log_scale.grad is not None


def test_hand_built_model_checkpoints_and_resumes(grey, tmp_path):
    train, val = grey
    shape, d = (1, 28, 28), 4

    def make():
        torch.manual_seed(0)
        return VAE(
            MLPEncoder(shape, d, (32,)), MLPDecoder(shape, d, (32,)), StudentTPrior(d), PixelGaussian(shape), shape, d
        )

    quiet = dict(progress=False)
    fit(make(), (train, val), _cfg(epochs=1, binarize="none"), tmp_path, **quiet)
    with pytest.raises(CheckpointError, match="hand-built"):
        load_checkpoint(tmp_path / "checkpoint_last.pt")
    resumed = make()
    fit(resumed, (train, val), _cfg(epochs=2, binarize="none"), tmp_path, resume=True, **quiet)
    straight = make()
    fit(straight, (train, val), _cfg(epochs=2, binarize="none"), tmp_path / "s", **quiet)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_cosine_learning_rate_schedule(grey, tmp_path):
    """--lr-schedule cosine: the optimizer's rate falls from lr by half a cosine over the run's
    steps (recorded per epoch); the rate is a function of the step alone, so a resumed run
    follows the schedule of its --epochs."""
    cfg = _cfg(epochs=3, lr_schedule="cosine")
    assert schedules.lr_at(0, 30, cfg) == cfg.lr
    assert schedules.lr_at(15, 30, cfg) == pytest.approx(cfg.lr / 2)
    assert schedules.lr_at(29, 30, cfg) < cfg.lr * 0.01
    assert schedules.lr_at(29, 30, _cfg()) == _cfg().lr  # the default stays constant
    with pytest.raises(ValueError, match="lr_schedule must be constant or cosine"):
        _cfg(lr_schedule="linear").check()
    train, val = grey
    torch.manual_seed(0)
    straight = build_model(MC)
    fit(straight, (train, val), cfg, tmp_path / "a", model_config=MC, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == pytest.approx([schedules.lr_at(s - 1, 30, cfg) for s in (10, 20, 30)])
    assert rows[0]["lr"] > rows[1]["lr"] > rows[2]["lr"]
    torch.manual_seed(0)
    first = build_model(MC)
    fit(first, (train, val), _cfg(epochs=1, lr_schedule="cosine"), tmp_path / "b", model_config=MC, progress=False)
    resumed, _ = load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")
    fit(resumed, (train, val), cfg, tmp_path / "b", model_config=MC, resume=True, progress=False)
    # a 1-epoch run extended to 3 on resume: its later epochs follow the 3-epoch schedule
    later = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in later[1:]] == pytest.approx([r["lr"] for r in rows[1:]])


def test_fit_speaks_through_the_pyro_vae_logger_and_installs_no_handler(grey, caplog):
    """Messages of a run reach a handler on the ``pyro_vae`` logger (an application's, or the
    CLI's console); the library itself only adds the NullHandler the logging docs ask for."""
    import logging

    from pyro_vae.cli.logs import console

    def handlers():
        named = [logging.getLogger(n) for n in logging.root.manager.loggerDict if n.startswith("pyro_vae.")]
        return logging.getLogger("pyro_vae").handlers, [h for log in named for h in log.handlers]

    own, below = handlers()
    assert [type(h) for h in own] == [logging.NullHandler] and below == []
    train, val = grey
    caplog.set_level(logging.INFO, logger="pyro_vae")
    fit(build_model(MC), (train, val), _cfg(epochs=2), progress=False)
    lines = [r for r in caplog.records if r.name.startswith("pyro_vae.")]
    assert [r.getMessage()[:9] for r in lines] == ["epoch   1", "epoch   2"]
    assert {r.name for r in lines} == {"pyro_vae.training.loop"} and {r.levelno for r in lines} == {logging.INFO}
    printed = []
    with console(printed.append):  # what the CLI installs for a command, and takes away after it
        fit(build_model(MC), (train, val), _cfg(epochs=1), progress=False)
    assert len(printed) == 1 and printed[0].startswith("epoch   1  train loss")
    assert handlers() == (own, below)


def test_fit_takes_its_data_as_a_pair_or_splits(grey):
    train, val = grey
    with pytest.raises(TypeError, match=r"a \(train, val\) pair or the Splits of load_data, got Batch"):
        fit(build_model(MC), train, _cfg())  # fit(family, train, val, ...) of older versions

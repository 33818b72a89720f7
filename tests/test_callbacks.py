"""Callbacks: the hooks come in a defined order with the run's own numbers, change nothing in the
run, and a failing one stops it as an interrupt does (one line, the checkpoint whole and
resumable); the trackers (TensorBoard, W&B offline, MLflow on a file store) record each epoch;
``pyro-vae train --log-to`` makes them, or says in one line why it cannot."""

import glob
import json
import logging
import random
import struct
import sys

import numpy as np
import pytest
import torch

from pyro_vae import Batch, Callback, CallbackError, ModelConfig, TrainConfig, build_model, fit
from pyro_vae.cli import main
from pyro_vae.runs.checkpoint import read_checkpoint
from pyro_vae.training import tracking

MC = ModelConfig(data_shape=(1, 8, 8), latent_dim=2, hidden=(8,))


def _data(n=100):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, 1, 8, 8, generator=g) < torch.linspace(0.1, 0.9, 64).reshape(1, 1, 8, 8)).float()
    return Batch(x[:80]), Batch(x[80:])


def _cfg(**kw):
    return TrainConfig(**{"epochs": 2, "batch_size": 16, "patience": None, "device": "cpu", **kw})


def _fit(run_dir, callbacks=(), **kw):
    torch.manual_seed(0)
    family = build_model(MC)
    cfg = _cfg(**{k: kw.pop(k) for k in ("epochs",) if k in kw})
    summary = fit(family, _data(), cfg, run_dir, model_config=MC, progress=False, callbacks=callbacks, **kw)
    return family, summary


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


class Recorder(Callback):
    """Writes down every hook and what it received."""

    def __init__(self):
        self.calls = []

    def on_run_start(self, run):
        self.info = run
        self.calls.append(("run_start", run.start_epoch, run.epochs, run.resumed))

    def on_epoch_start(self, epoch):
        self.calls.append(("epoch_start", epoch))

    def on_checkpoint(self, path):
        self.calls.append(("checkpoint", path.name))

    def on_epoch_end(self, epoch, row):
        self.calls.append(("epoch_end", epoch, row))

    def on_run_end(self, summary, error):
        self.calls.append(("run_end", summary, error))


def _expected_epochs(rows, best=-float("inf")):
    """The calls of each epoch: checkpoint_best.pt only when the epoch improved the validation ELBO."""
    calls = []
    for row in rows:
        improved, best = row["val_elbo"] > best, max(best, row["val_elbo"])
        calls += [
            ("epoch_start", row["epoch"]),
            *([("checkpoint", "checkpoint_best.pt")] if improved else []),
            ("checkpoint", "checkpoint_last.pt"),
            ("epoch_end", row["epoch"], row),
        ]
    return calls, best


def test_hooks_are_called_in_order_on_a_run_and_on_its_resume(tmp_path):
    run = tmp_path / "run"
    rec = Recorder()
    _, summary = _fit(run, [rec])
    rows = _rows(run)
    epochs, best = _expected_epochs(rows)
    assert rec.calls == [("run_start", 1, 2, False), *epochs, ("run_end", summary, None)]
    assert summary == json.loads((run / "summary.json").read_text())
    assert rec.info.record == json.loads((run / "config.json").read_text())
    assert rec.info.folder.path == run and rec.info.config.epochs == 2 and len(rec.info.val) == 20

    again = Recorder()
    _, summary = _fit(run, [again], epochs=3, resume=True)
    epochs, _ = _expected_epochs(_rows(run)[2:], best)
    assert again.calls == [("run_start", 3, 3, True), *epochs, ("run_end", summary, None)]
    assert again.info.record["resumes"][0]["at_epoch"] == 2


def test_callbacks_leave_the_run_as_it_is_without_them(tmp_path):
    class Noisy(Callback):  # draws from every random stream in every hook
        def draw(self, *args):
            torch.rand(3), random.random()

        on_run_start = on_epoch_start = on_checkpoint = on_epoch_end = on_run_end = draw

    with_them, _ = _fit(tmp_path / "a", [Noisy()])
    without, _ = _fit(tmp_path / "b")
    assert all(torch.equal(v, without.state_dict()[k]) for k, v in with_them.state_dict().items())
    # without a run folder: no checkpoint hooks, the record is the training config
    rec = Recorder()
    _fit(None, [rec])
    assert [c[0] for c in rec.calls] == ["run_start", "epoch_start", "epoch_end", "epoch_start", "epoch_end", "run_end"]
    assert rec.info.folder is None and rec.info.record["train"]["epochs"] == 2


class Boom(Callback):
    def __init__(self, hook, epoch=2):
        self.hook, self.epoch = hook, epoch

    def fail(self, where):
        if where == (self.hook, self.epoch) or where == (self.hook, None):
            raise RuntimeError("the tracker's server went away")

    def on_run_start(self, run):
        self.fail(("on_run_start", None))

    def on_epoch_end(self, epoch, row):
        self.fail(("on_epoch_end", epoch))

    def on_run_end(self, summary, error):
        self.fail(("on_run_end", None))


def test_a_failing_callback_is_said_stops_the_run_and_its_checkpoint_resumes(tmp_path, caplog):
    run, rec = tmp_path / "run", Recorder()
    with caplog.at_level(logging.ERROR, logger="pyro_vae"), pytest.raises(CallbackError) as e:
        _fit(run, [rec, Boom("on_epoch_end", epoch=2)], epochs=3)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["callback Boom.on_epoch_end failed (RuntimeError: the tracker's server went away)"]
    assert (
        str(e.value) == f"{errors[0]}; the last checkpoint {run / 'checkpoint_last.pt'} stands; continue with "
        f"resume=True"
    )
    assert isinstance(e.value.__cause__, RuntimeError)
    assert rec.calls[-1] == ("run_end", None, e.value)  # the others end, told why
    assert read_checkpoint(run / "checkpoint_last.pt")["epoch"] == 2 and len(_rows(run)) == 2

    # the checkpoint is whole: resuming reaches the parameters of an uninterrupted run, bit for bit
    resumed, _ = _fit(run, [], epochs=3, resume=True)
    straight, _ = _fit(tmp_path / "straight", [], epochs=3)
    assert all(torch.equal(v, straight.state_dict()[k]) for k, v in resumed.state_dict().items())


def test_a_callback_failing_at_the_start_or_the_end(tmp_path):
    rec = Recorder()
    with pytest.raises(
        CallbackError,
        match=r"^callback Boom.on_run_start failed \(RuntimeError: .*\); no "
        r"checkpoint was written yet; start again$",
    ):
        _fit(tmp_path / "a", [rec, Boom("on_run_start"), Recorder()])
    assert rec.calls[0][0] == "run_start" and rec.calls[-1][0] == "run_end" and len(rec.calls) == 2
    assert not (tmp_path / "a" / "checkpoint_last.pt").exists()
    # after a finished run: every callback ends, the first failure is raised, the files are complete
    rec = Recorder()
    with pytest.raises(CallbackError, match="on_run_end failed .*; the run had finished: its files are complete"):
        _fit(tmp_path / "b", [Boom("on_run_end"), rec])
    assert rec.calls[-1][0] == "run_end" and rec.calls[-1][2] is None
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["epochs_run"] == 2
    with pytest.raises(TypeError, match="is not a pyro_vae.Callback"):
        _fit(tmp_path / "c", [object()])


def test_tensorboard_through_the_callbacks(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _fit(None, [tracking.TensorBoard(log_dir=tmp_path / "tb")])
    acc = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert [e.step for e in acc.Scalars("val_elbo")] == [1, 2]
    assert "samples" in acc.Tags()["images"]
    _fit(tmp_path / "run", [tracking.TensorBoard()], tensorboard=True)  # one writer, not two
    assert len(list((tmp_path / "run" / "tensorboard").iterdir())) == 1


def _wandb_records(folder):
    """The records of an offline W&B run: its ``.wandb`` file is a LevelDB-style log (a 7-byte
    header, then in 32 KiB blocks chunks of [crc32, length, kind]) of protobuf ``Record``s."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = glob.glob(str(folder / "wandb" / "offline-run-*" / "run-*.wandb"))
    raw, pos, chunk, block = open(path, "rb").read(), 7, b"", 32768
    assert raw[:4] == b":W&B"
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, n, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if n == kind == 0:
            break
        chunk, pos = chunk + raw[pos + 7 : pos + 7 + n], pos + 7 + n
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def test_wandb_offline_records_each_epoch(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    _, summary = _fit(run, [tracking.WandB(project="test")])
    history, config = {}, {}
    for record in _wandb_records(tmp_path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history[record.history.step.num] = {
                i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item
            }
        elif kind == "run":  # the run's config comes with it
            config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
    rows = _rows(run)
    assert sorted(history) == [1, 2]
    for row in rows:
        for key in ("train_loss", "val_elbo", "kl_weight"):
            assert history[row["epoch"]][key] == pytest.approx(row[key], rel=1e-12)
    assert config["train"]["epochs"] == 2 and config["model"]["options"]["latent_dim"] == 2


def test_mlflow_file_store_records_each_epoch(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this
    uri = f"file:{tmp_path / 'mlruns'}"
    run = tmp_path / "run"
    _, summary = _fit(run, [tracking.MLflow(experiment="test", tracking_uri=uri)])
    client = MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == "run"
    rows = _rows(run)
    for key in ("train_loss", "val_elbo"):
        history = client.get_metric_history(found.info.run_id, key)
        assert sorted((m.step, m.value) for m in history) == [(r["epoch"], r[key]) for r in rows]
    assert found.data.params["train.epochs"] == "2" and found.data.params["model.options.latent_dim"] == "2"
    assert found.data.metrics["best_val_elbo"] == summary["best_val_elbo"]


# ---------------------------------------------------------------------- the command line
@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, _data()[0].x.numpy())
    return path


def _cli(npy, run, *more):
    return [
        "train",
        "--dataset",
        str(npy),
        "--latent-dim",
        "2",
        "--hidden",
        "8",
        "--batch-size",
        "16",
        "--out",
        str(run),
        "--no-progress",
        "--eval-k",
        "0",
        "--no-plots",
        "--epochs",
        "2",
        *more,
    ]


def test_log_to_is_parsed_and_refused_in_one_line(tmp_path, npy, capsys, monkeypatch):
    from pyro_vae.cli.app import build_parser

    a = build_parser().parse_args(["train", "--log-to", "wandb, MLflow", "--log-to", "tensorboard"])
    assert a.log_to == ["wandb", "mlflow", "tensorboard"]
    with pytest.raises(SystemExit) as e:
        main(_cli(npy, tmp_path / "a", "--log-to", "wandb,nope"))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.endswith(
            "argument --log-to: unknown tracker 'nope': choose from tensorboard, wandb, mlflow "
            "(comma-separated) (see pyro-vae train --help)"
        )
        and err.count("\n") == 0
    )
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    assert main(_cli(npy, tmp_path / "b", "--log-to", "wandb")) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(
            "pyro-vae train: error: --log-to: the wandb tracker needs the wandb package: pip install 'pyro-vae[wandb]'"
        )
        and err.count("\n") == 0
    )
    assert not (tmp_path / "b").exists()  # said before any work
    with pytest.raises(ValueError, match=r"pip install 'pyro-vae\[wandb\]'"):
        tracking.WandB()


def test_log_to_trains_with_the_trackers_and_a_failing_one_exits_1(tmp_path, npy, capsys, monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    run = tmp_path / "run"
    assert main(_cli(npy, run, "--log-to", "mlflow", "--tensorboard")) == 0
    assert (run / "tensorboard").is_dir()
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    (found,) = client.search_runs([client.get_experiment_by_name("pyro-vae").experiment_id])
    assert sorted(m.step for m in client.get_metric_history(found.info.run_id, "val_elbo")) == [1, 2]

    def down(self, epoch, row):
        raise ConnectionError("server unreachable")

    monkeypatch.setattr(tracking.MLflow, "on_epoch_end", down)
    capsys.readouterr()
    assert main(_cli(npy, tmp_path / "failed", "--log-to", "mlflow")) == 1
    out, err = capsys.readouterr()
    assert "callback MLflow.on_epoch_end failed (ConnectionError: server unreachable)" in out
    assert err.strip().splitlines()[-1] == (
        f"pyro-vae train: training stopped: callback MLflow.on_epoch_end failed (ConnectionError: "
        f"server unreachable); the last checkpoint {tmp_path / 'failed' / 'checkpoint_last.pt'} "
        f"stands; continue with --resume"
    )
    (failed,) = [r for r in client.search_runs([found.info.experiment_id]) if r.info.run_name == "failed"]
    assert failed.info.status == "FAILED"

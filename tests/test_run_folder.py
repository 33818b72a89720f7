"""A run folder that stays a faithful record: it never writes outside itself (planted links are
refused), I/O errors are one line naming the file (the last checkpoint intact), the checkpoint
is what --resume trusts (config.json a copy, compared with it), the settings that change a
result are recorded (binarization resolved, eval_k), and the library says what it is doing
(a signal ignored stays ignored; an interrupt before any checkpoint says so)."""

import errno
import json
import logging
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vae import Batch, ModelConfig, TrainConfig, build_model, fit
from pyro_vae.runs.checkpoint import read_checkpoint
from pyro_vae.cli import main

import pyro_vae

ROOT = Path(pyro_vae.__file__).resolve().parent.parent  # the package under test, for subprocesses
QUIET = dict(progress=False)


def _data(n=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, 8, 8, generator=g) < torch.linspace(0.1, 0.9, 64).reshape(1, 1, 8, 8)).float()
    return Batch(x[: n - 20]), Batch(x[n - 20 :])


def _grey(n=80):
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1  # never 0 or 1
    return Batch(x[: n - 20]), Batch(x[n - 20 :])


def _config(**opts):
    return ModelConfig(data_shape=(1, 8, 8), **{"latent_dim": 2, "hidden": (8,), **opts})


def _family(**opts):
    torch.manual_seed(0)
    return build_model(_config(**opts))


def _cfg(**kw):
    return TrainConfig(**{"epochs": 1, "batch_size": 16, "patience": None, **kw})


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
        *more,
    ]


def _one_line(err: str) -> str:
    err = err.strip()
    assert err.count("\n") == 0, err
    return err


def _cli_error(err: str) -> str:
    """The CLI's one line about what went wrong (notes may come before it)."""
    lines = [line for line in err.strip().splitlines() if line.startswith("pyro-vae train:")]
    assert len(lines) == 1 and err.strip().endswith(lines[0]), err
    return lines[0]


# ---------------------------------------------------------------------- links planted in a run
@pytest.mark.parametrize("name", [".lock", "tensorboard"])
def test_a_link_planted_in_a_run_folder_is_refused_not_followed(tmp_path, npy, capsys, name):
    pytest.importorskip("tensorboard")
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    if name == ".lock":
        outside.write_text("keep me")
    else:
        outside.mkdir()
    (run / name).symlink_to(outside)
    assert main(_cli(npy, run, "--epochs", "1", "--tensorboard")) == 2
    err = _cli_error(capsys.readouterr().err)
    assert f"{run / name} is a symbolic link; a run folder never writes outside itself: remove it" in err
    assert (outside.read_text() == "keep me") if name == ".lock" else not any(outside.iterdir())


# ---------------------------------------------------------------------- I/O errors
def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_last_checkpoint(
    tmp_path, npy, capsys, monkeypatch
):
    run = tmp_path / "run"
    assert main(_cli(npy, run, "--epochs", "1")) == 0
    before = (run / "checkpoint_last.pt").read_bytes()

    def full(obj, f, *a, **k):  # the disk fills up half-way through the file
        f.write(b"part of a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    capsys.readouterr()
    assert main(_cli(npy, run, "--epochs", "2", "--resume")) == 2
    err = _cli_error(capsys.readouterr().err)
    assert f"cannot write {run}{os.sep}checkpoint_" in err and "No space left on device (ENOSPC); free space" in err
    assert "continue with --resume" in err
    assert (run / "checkpoint_last.pt").read_bytes() == before  # the epoch-1 checkpoint, whole
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()  # space freed: the run continues
    assert main(_cli(npy, run, "--epochs", "2", "--resume")) == 0
    assert read_checkpoint(run / "checkpoint_last.pt")["epoch"] == 2


def _read_only(folder: Path, monkeypatch, code):
    """Make ``folder`` refuse new files (for real where permissions are enforced; as root, by
    making the temporary file's creation fail as the kernel would)."""
    import pyro_vae.files as files

    if code == errno.EACCES:
        folder.chmod(0o500)
        try:
            (folder / "probe").touch()
            (folder / "probe").unlink()  # root: permissions are not enforced
        except PermissionError:
            return
    real = files.tempfile.mkstemp

    def refused(*a, dir=None, **k):
        if Path(dir) == folder:
            raise OSError(code, os.strerror(code))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(files.tempfile, "mkstemp", refused)


@pytest.mark.parametrize(
    "code,fix",
    [
        (errno.ENOSPC, "free space"),
        (errno.EACCES, "make the folder writable, or work on a writable copy"),
        (errno.EROFS, "the file system is read-only: work on a writable copy"),
        (errno.ENAMETOOLONG, "choose a shorter name"),
    ],
    ids=["ENOSPC", "EACCES", "EROFS", "ENAMETOOLONG"],
)
@pytest.mark.parametrize("writer", ["json", "checkpoint", "figure"])
def test_an_io_error_in_any_write_is_one_line_naming_the_file_and_the_old_file_stays(
    tmp_path, monkeypatch, code, fix, writer
):
    from pyro_vae import files

    folder = tmp_path / "run"
    folder.mkdir()
    name = ("x" * 300 if code == errno.ENAMETOOLONG else "result") + {
        "json": ".json",
        "checkpoint": ".pt",
        "figure": ".png",
    }[writer]
    target = folder / name
    if code != errno.ENAMETOOLONG:
        target.write_bytes(b"the old file")
    if writer == "figure":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(1, 1))
        write = lambda: files.save_figure(fig, target)  # noqa: E731
    elif writer == "checkpoint":
        write = lambda: files.torch_save({"w": torch.zeros(3)}, target)  # noqa: E731
    else:
        write = lambda: files.write_json(target, {"k": 1})  # noqa: E731
    if code == errno.ENOSPC:
        real = os.fsync
        monkeypatch.setattr(
            files.os,
            "fsync",
            lambda fd: (_ for _ in ()).throw(OSError(code, os.strerror(code))) if os.fstat(fd).st_size else real(fd),
        )
    elif code != errno.ENAMETOOLONG:  # the real file system refuses the long name
        _read_only(folder, monkeypatch, code)
    try:
        with pytest.raises(ValueError) as err:  # the kind of error the CLI reports in one line, exit 2
            write()
    finally:
        folder.chmod(0o700)
    assert isinstance(err.value, OSError) and err.value.errno == code  # and still an OSError for callers
    message = _one_line(str(err.value))
    assert message == f"cannot write {target}: {os.strerror(code)} ({errno.errorcode[code]}); {fix}"
    if code != errno.ENAMETOOLONG:
        assert target.read_bytes() == b"the old file"
    assert [p.name for p in folder.iterdir()] == ([name] if code != errno.ENAMETOOLONG else [])


# ---------------------------------------------------------------------- signals
IGNORED_SIGINT = """
import os, signal, sys, torch
torch.set_num_threads(1)
from pyro_vae import Batch, ModelConfig, TrainConfig, build_model, fit
from pyro_vae.inference.objectives import make_objective

assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # as in a job started with `&`

class CtrlC:  # Ctrl-C typed in the terminal at the second step
    def __init__(self, family):
        self.inner, self.calls = make_objective("trace", family), 0

    def differentiable_loss(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return self.inner.differentiable_loss(*args, **kwargs)

x = (torch.rand(80, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.4).float()
mc = ModelConfig(data_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
family = build_model(mc)
summary = fit(family, (Batch(x[:60]), Batch(x[60:])), TrainConfig(epochs=1, batch_size=16, patience=None),
              sys.argv[1], model_config=mc, objective=CtrlC(family), progress=False)
assert summary["epochs_run"] == 1 and summary["steps"] == 4, summary
assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
print("trained through")
"""


def test_training_started_with_sigint_ignored_keeps_ignoring_it(tmp_path):
    """A background job (`pyro-vae train ... &`, or the test suite started so) starts with SIGINT
    ignored: training must not take Ctrl-C meant for the foreground job, and leaves it ignored."""
    proc = subprocess.run(
        [sys.executable, "-c", IGNORED_SIGINT, str(tmp_path / "run")],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "trained through" in proc.stdout, proc.stderr[-3000:]


@pytest.fixture
def sigint_as_in_a_terminal():
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_a_second_ctrl_c_before_any_checkpoint_says_to_start_again(
    tmp_path, npy, capsys, monkeypatch, sigint_as_in_a_terminal
):
    import pyro_vae.training.loop as training

    real = training.train_step

    def twice(*a, **k):  # Ctrl-C, and Ctrl-C again before the step is over: stop at once
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(training, "train_step", twice)
    run = tmp_path / "run"
    assert main(_cli(npy, run, "--epochs", "1")) == 130
    err = _cli_error(capsys.readouterr().err)
    assert "no checkpoint was written yet; start again" in err and "--resume" not in err, err
    assert not (run / "checkpoint_last.pt").exists()


@pytest.mark.parametrize("resume", [False, True], ids=["new", "resumed"])
def test_an_interrupt_before_training_says_whether_a_checkpoint_exists(tmp_path, monkeypatch, resume):
    import pyro_vae.training.fit as training

    train, val = _data()
    run = tmp_path / "run"
    if resume:
        fit(_family(), (train, val), _cfg(), run, model_config=_config(), **QUIET)

    def interrupted(*a, **k):  # Ctrl-C while the data are checked
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "prepare_data", interrupted)
    with pytest.raises(KeyboardInterrupt) as err:
        fit(_family(), (train, val), _cfg(epochs=2), run, model_config=_config(), resume=resume, **QUIET)
    assert err.value.signum == signal.SIGINT  # a TrainingInterrupted: the CLI exits 130 with its message
    if resume:
        assert (
            str(err.value) == f"SIGINT: training stopped; the last checkpoint {run / 'checkpoint_last.pt'} "
            f"stands; continue with resume=True"
        )
    else:
        assert str(err.value) == "SIGINT: training stopped; no checkpoint was written yet; start again"


# ---------------------------------------------------------------------- data at the boundary
def test_fit_on_float64_data_trains_and_evaluates(tmp_path):
    train, val = _data()
    as64 = lambda b: b.replace(x=b.x.double())  # noqa: E731
    summary = fit(
        _family(),
        (as64(train), as64(val)),
        _cfg(eval_k=3),
        tmp_path / "run",
        model_config=_config(),
        test=as64(val),
        plots=False,
        **QUIET,
    )
    assert math.isfinite(summary["best_val_elbo"])
    assert (tmp_path / "run" / "metrics_test.json").exists()


@pytest.mark.parametrize(
    "likelihood,mode",
    [("bernoulli", "dynamic"), ("continuous_bernoulli", "none"), ("gaussian", "none"), ("laplace", "none")],
)
def test_the_default_binarizes_only_for_a_likelihood_of_binary_data(tmp_path, likelihood, mode):
    from pyro_vae.training.prepare import prepare_data

    train, val = _grey() if mode == "none" else _data()
    family = _family(likelihood=likelihood)
    assert TrainConfig().binarize == "auto"
    data = prepare_data(family, train, val, _cfg(), "cpu")
    binary = bool(((data.val.x == 0) | (data.val.x == 1)).all())
    assert binary if mode == "dynamic" else torch.equal(data.val.x, val.x)  # grey data seen as given
    run = tmp_path / "run"
    fit(family, (train, val), _cfg(), run, model_config=_config(likelihood=likelihood), **QUIET)
    assert json.loads((run / "config.json").read_text())["train"]["binarize"] == mode  # recorded resolved
    assert read_checkpoint(run / "checkpoint_last.pt")["train_config"]["binarize"] == mode


def test_binarizing_for_a_continuous_likelihood_is_kept_with_one_warning_and_auto_needs_a_declaration(caplog):
    train, val = _grey()
    fit(_family(likelihood="gaussian"), (train, val), _cfg(binarize="dynamic"), progress=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("warning: binarize='dynamic'"), warnings
    assert "GaussianLikelihood" in warnings[0]
    caplog.clear()
    fit(_family(), _data(), _cfg(binarize="dynamic"), progress=False)  # Bernoulli: as meant
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    from pyro_vae.training.prepare import resolve_binarize

    assert resolve_binarize(TrainConfig(), object()).binarize == "none"  # no likelihood: the data as given


# ---------------------------------------------------------------------- the checkpoint is the record
@pytest.mark.parametrize("edit", ["lr", "dataset"])
def test_resume_refuses_a_config_json_edited_since_the_checkpoint(tmp_path, npy, capsys, edit):
    run = tmp_path / "run"
    assert main(_cli(npy, run, "--epochs", "1", "--lr", "0.001")) == 0
    other = tmp_path / "other.npy"  # other data of the same shape
    np.save(other, 1 - np.load(npy))
    config = json.loads((run / "config.json").read_text())
    if edit == "lr":
        config["train"]["lr"] = 0.05
    else:
        config["data"]["dataset"] = str(other)
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert (
        main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress", "--eval-k", "0", "--no-plots"])
        == 2
    )
    err = _cli_error(capsys.readouterr().err)
    key = "train.lr" if edit == "lr" else "data.dataset"
    assert f"{run / 'config.json'} was edited since" in err and key in err and "delete it" in err, err
    assert read_checkpoint(run / "checkpoint_last.pt")["epoch"] == 1  # nothing trained


def test_resume_rewrites_a_deleted_config_json_from_the_checkpoint_and_follows_the_checkpoint(tmp_path, caplog):
    from pyro_vae.training.fit import ConfigMismatch

    train, val = _data()
    run = tmp_path / "run"
    fit(
        _family(),
        (train, val),
        _cfg(lr=1e-3),
        run,
        model_config=_config(),
        record={"data": {"dataset": "x.npy"}},
        **QUIET,
    )
    (run / "config.json").unlink()
    caplog.set_level(logging.INFO, logger="pyro_vae")
    with pytest.raises(ConfigMismatch, match=r"train\.lr: 0\.001 in the run, 0\.05 now"):
        fit(
            _family(),
            (train, val),
            _cfg(epochs=2, lr=0.05),
            run,
            model_config=_config(),
            resume=True,
            progress=False,
            record={"data": {"dataset": "x.npy"}},
        )
    assert caplog.messages == [f"note: {run / 'config.json'} was missing; rewritten from {run / 'checkpoint_last.pt'}"]
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 1e-3
    fit(
        _family(),
        (train, val),
        _cfg(epochs=2, lr=1e-3),
        run,
        model_config=_config(),
        resume=True,
        record={"data": {"dataset": "x.npy"}},
        **QUIET,
    )
    assert json.loads((run / "config.json").read_text())["resumes"][-1]["at_epoch"] == 1


def test_run_record_of_a_checkpoint_is_what_config_json_holds(tmp_path):
    from pyro_vae.runs.checkpoint import run_record

    train, val = _data()
    run = tmp_path / "run"
    extra = {"data": {"dataset": "x.npy", "val_fraction": 0.25}, "command": "pyro-vae train ..."}
    fit(_family(), (train, val), _cfg(), run, model_config=_config(), record=extra, **QUIET)
    fit(_family(), (train, val), _cfg(epochs=2), run, model_config=_config(), resume=True, record=extra, **QUIET)
    stored = json.loads((run / "config.json").read_text())
    assert run_record(run) == run_record(run / "checkpoint_last.pt") == stored
    assert stored["data"] == extra["data"] and stored["train"]["lr"] == 1e-3 and stored["world_size"] == 1
    assert [r["at_epoch"] for r in stored["resumes"]] == [1]


def test_eval_k_is_recorded_so_config_reruns_report_the_same_k(tmp_path, npy, capsys):
    from pyro_vae.cli.app import build_parser

    assert TrainConfig().eval_k == build_parser().parse_args(["train"]).eval_k == 1000  # one default
    run, again = tmp_path / "run", tmp_path / "again"
    args = _cli(npy, run, "--epochs", "1")
    args[args.index("--eval-k") + 1] = "3"
    assert main(args) == 0
    assert json.loads((run / "config.json").read_text())["train"]["eval_k"] == 3
    assert (
        main(["train", "--config", str(run / "config.json"), "--out", str(again), "--no-progress", "--no-plots"]) == 0
    )
    assert json.loads((again / "config.json").read_text())["train"]["eval_k"] == 3
    for folder in (run, again):  # the same test log p(x): same k, same number
        assert json.loads((folder / "metrics_test.json").read_text())["log_px"]["note"] == "importance sampled, k=3"
    log_px = [json.loads((f / "metrics_test.json").read_text())["log_px"]["value"] for f in (run, again)]
    assert log_px[0] == log_px[1]

"""No lost run: resume bit for bit in every objective, checkpoints on SIGINT/SIGTERM at any step,
one writer per run folder, settings of a resumed run checked against the stored ones."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyro
import pytest
import torch

from pyro_vae import Batch, ModelConfig, TrainConfig, build_model, fit
from pyro_vae.runs.checkpoint import read_checkpoint
from pyro_vae.cli import main
from pyro_vae.files import RunLock, RunLocked, atomic_write
from pyro_vae.training.fit import ConfigMismatch, TrainingInterrupted

ROOT = Path(__file__).resolve().parent.parent


def _data(n=90, seed=0, labels=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, 8, 8, generator=g) < torch.linspace(0.1, 0.9, 64).reshape(1, 1, 8, 8)).float()
    y = torch.arange(n) % 2 if labels else None
    return Batch(x[: n - 20], None if y is None else y[: n - 20]), Batch(
        x[n - 20 :], None if y is None else y[n - 20 :]
    )


def _family(model="vae", **opts):
    torch.manual_seed(0)
    return build_model(_config(model, **opts))


def _config(model="vae", **opts):
    return ModelConfig(
        model=model,
        data_shape=(1, 8, 8),
        num_classes=2 if model == "ssvae" else None,
        **{"latent_dim": 2, "hidden": (8,), **opts},
    )


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


MODES = [  # (objective, particles, model, options)
    ("trace", 1, "vae", {}),
    ("trace", 3, "vae", {}),
    ("meanfield", 2, "vae", {}),
    ("graph", 1, "vae", {}),
    ("jit", 1, "vae", {}),
    ("jit", 2, "vae", {}),
    ("jit_meanfield", 1, "vae", {}),
    ("renyi", 2, "vae", {}),
    ("auto", 1, "vae", {"estimator": "score-avg"}),
    ("auto", 1, "vae", {"noise": "mask", "noise_rate": 0.3}),
    ("auto", 1, "ae", {}),
    ("enum", 1, "ssvae", {}),
    ("jit_enum", 1, "ssvae", {}),
]


@pytest.mark.parametrize(
    "objective,particles,model,opts",
    MODES,
    ids=[f"{m}-{o}-{p}" + ("-" + "-".join(map(str, opts.values())) if opts else "") for o, p, m, opts in MODES],
)
def test_resume_is_bit_exact(tmp_path, objective, particles, model, opts):
    train, val = _data(labels=model == "ssvae")
    cfg = TrainConfig(
        epochs=3,
        batch_size=32,
        objective=objective,
        num_particles=particles,
        patience=None,
        labels=20 if model == "ssvae" else None,
    )
    quiet = dict(progress=False)
    pyro.clear_param_store()
    whole = _family(model, **opts)
    fit(whole, (train, val), cfg, tmp_path / "whole", model_config=_config(model, **opts), **quiet)
    pyro.clear_param_store()  # a new process: nothing survives but the run folder
    part = _family(model, **opts)
    fit(
        part,
        (train, val),
        TrainConfig(**{**cfg.__dict__, "epochs": 1}),
        tmp_path / "part",
        model_config=_config(model, **opts),
        **quiet,
    )
    pyro.clear_param_store()
    resumed = _family(model, **opts)
    fit(resumed, (train, val), cfg, tmp_path / "part", model_config=_config(model, **opts), resume=True, **quiet)
    assert _same(whole, resumed)
    rows = [json.loads(line) for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in ref]


@pytest.fixture
def sigint_as_in_a_terminal():
    """SIGINT handled as in a terminal (Python's KeyboardInterrupt) for the test, whatever the
    suite was started with: a background job starts with SIGINT ignored, and training keeps
    ignoring a signal that was ignored (tests/test_run_folder.py checks that case)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


class _SignalAt:
    """An objective that sends ``signum`` to this process at training step ``at`` (deterministic)."""

    def __init__(self, family, signum, at):
        from pyro_vae.inference.objectives import make_objective

        self.inner, self.signum, self.at, self.calls = make_objective("trace", family), signum, at, 0

    def differentiable_loss(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), self.signum)
        return self.inner.differentiable_loss(*args, **kwargs)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_the_first_epoch_leaves_a_checkpoint_that_resumes_exactly(
    tmp_path, signum, sigint_as_in_a_terminal
):
    train, val = _data()
    cfg = TrainConfig(epochs=2, batch_size=16, patience=None, objective="trace")  # what _SignalAt wraps
    quiet = dict(progress=False)
    whole = _family()
    fit(whole, (train, val), cfg, tmp_path / "whole", model_config=_config(), **quiet)
    stopped = _family()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(TrainingInterrupted) as err:
        fit(
            stopped,
            (train, val),
            cfg,
            tmp_path / "run",
            model_config=_config(),
            objective=_SignalAt(stopped, signum, 3),
            **quiet,
        )
    assert err.value.signum == signum
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    assert ckpt["epoch"] == 0 and ckpt["in_epoch"]["batch"] == 3  # stopped after its third step
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # the handlers found, given back
    resumed = _family()
    fit(resumed, (train, val), cfg, tmp_path / "run", model_config=_config(), resume=True, **quiet)
    assert _same(whole, resumed)


def test_cli_sigint_exit_code_and_message(tmp_path, capsys, monkeypatch, sigint_as_in_a_terminal):
    import pyro_vae.training.loop as training

    real = training.train_step
    calls = {"n": 0}

    def step(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(training, "train_step", step)
    npy = tmp_path / "x.npy"
    import numpy as np

    np.save(npy, _data()[0].x.numpy())
    args = [
        "train",
        "--dataset",
        str(npy),
        "--latent-dim",
        "2",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
        "--eval-k",
        "0",
        "--no-plots",
    ]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "SIGINT" in err and "--resume" in err and "checkpoint_last.pt" in err
    monkeypatch.setattr(training, "train_step", real)
    assert main(args + ["--resume"]) == 0


def test_resume_refuses_changed_settings_and_names_them(tmp_path, capsys):
    train, val = _data()
    quiet = dict(progress=False)
    cfg = TrainConfig(epochs=1, batch_size=32, patience=None)
    fit(_family(), (train, val), cfg, tmp_path / "run", model_config=_config(), **quiet)
    changed = TrainConfig(epochs=2, batch_size=16, lr=1e-2, seed=3, patience=None)
    with pytest.raises(ConfigMismatch) as err:
        fit(_family(), (train, val), changed, tmp_path / "run", model_config=_config(), resume=True, **quiet)
    msg = str(err.value)
    for name in ("train.batch_size", "train.lr", "train.seed", "allow_changes=['batch_size', 'lr', 'seed']"):
        assert name in msg
    assert "epochs" not in msg.split("allow_changes=")[1]  # the epoch count may always grow
    with pytest.raises(ConfigMismatch, match="latent_dim"):
        fit(
            _family(latent_dim=3),
            (train, val),
            TrainConfig(epochs=2, batch_size=32, patience=None),
            tmp_path / "run",
            model_config=_config(latent_dim=3),
            resume=True,
            **quiet,
        )
    # a change made on purpose is allowed and recorded
    fit(
        _family(),
        (train, val),
        TrainConfig(epochs=2, batch_size=32, lr=5e-4, patience=None),
        tmp_path / "run",
        model_config=_config(),
        resume=True,
        allow_changes=("lr",),
        **quiet,
    )
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["train"]["lr"] == 5e-4
    assert stored["resumes"][-1]["changed"] == {"train.lr": [0.001, 0.0005], "train.epochs": [1, 2]}


def test_cli_resume_takes_the_stored_settings(tmp_path, capsys):
    npy = tmp_path / "x.npy"
    import numpy as np

    np.save(npy, _data()[0].x.numpy())
    run = tmp_path / "run"
    base = [
        "--dataset",
        str(npy),
        "--latent-dim",
        "2",
        "--hidden",
        "8",
        "--batch-size",
        "16",
        "--lr",
        "0.002",
        "--out",
        str(run),
        "--no-progress",
        "--eval-k",
        "0",
        "--no-plots",
    ]
    assert main(["train", *base, "--epochs", "1"]) == 0
    # only --out, --resume and a new epoch count: every other setting comes from config.json
    assert (
        main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress", "--eval-k", "0", "--no-plots"])
        == 0
    )
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 0.002
    assert main(["train", "--out", str(run), "--resume", "--epochs", "3", "--lr", "0.01", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "train.lr: 0.002 in the run, 0.01 now" in err and "--allow-change lr" in err


def test_a_second_trainer_on_a_folder_is_refused(tmp_path):
    train, val = _data()
    run = tmp_path / "run"
    holder = RunLock(run, command="pyro-vae train ...").acquire()
    try:
        with pytest.raises(RunLocked, match=f"process {os.getpid()} on host"):
            fit(
                _family(),
                (train, val),
                TrainConfig(epochs=1, patience=None),
                run,
                model_config=_config(),
                progress=False,
            )
    finally:
        holder.release()
    fit(
        _family(), (train, val), TrainConfig(epochs=1, patience=None), run, model_config=_config(), progress=False
    )  # free again


def test_two_cli_trainers_on_one_folder(tmp_path, capsys):
    npy = tmp_path / "x.npy"
    import numpy as np

    np.save(npy, _data(n=2000)[0].x.numpy())
    run = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        str(npy),
        "--latent-dim",
        "2",
        "--hidden",
        "8",
        "--epochs",
        "500",
        "--patience",
        "0",
        "--out",
        str(run),
        "--no-progress",
        "--eval-k",
        "0",
        "--no-plots",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "pyro_vae", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.time() + 60
        while not (run / "checkpoint_last.pt").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert main(args + ["--resume"]) == 2
        err = capsys.readouterr().err
        assert f"process {first.pid} on host" in err and "one trainer per run folder" in err
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)
    assert first.returncode == 128 + signal.SIGTERM  # SIGTERM: checkpoint written, then exit
    assert b"continue with --resume" in first.stderr.read()


def test_a_stale_lock_is_explained_and_taken_over(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere", "since": "yesterday"}))
    caplog.set_level(logging.INFO, logger="pyro_vae")
    train, val = _data()
    fit(_family(), (train, val), TrainConfig(epochs=1, patience=None), run, model_config=_config(), progress=False)
    assert any("left locked by process 999999 on host elsewhere" in line for line in caplog.messages)
    assert (run / ".lock").read_text() == ""  # released cleanly


def test_atomic_write_uses_fresh_temporary_names_and_does_not_follow_planted_links(tmp_path):
    target = tmp_path / "config.json"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for guess in (target.with_name("config.json.tmp"), target.with_name(".config.json.tmp")):
        guess.symlink_to(victim)  # the old predictable temporary names
    (tmp_path / "link.json").symlink_to(victim)
    atomic_write(target, lambda f: f.write(b"{}"))
    atomic_write(tmp_path / "link.json", lambda f: f.write(b"new"))  # replaces the link, not its target
    assert victim.read_text() == "keep me" and target.read_bytes() == b"{}"
    assert not (tmp_path / "link.json").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".config.json.tmp",
        "config.json",
        "config.json.tmp",
        "link.json",
        "victim.txt",
    ]
    with pytest.raises(RuntimeError):
        atomic_write(target, lambda f: (f.write(b"half"), (_ for _ in ()).throw(RuntimeError("boom"))))
    assert target.read_bytes() == b"{}"  # a failed write leaves the old file and no temporary


KILL_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from pyro_vae import Batch, ModelConfig, TrainConfig, build_model, fit
x = (torch.rand(400, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.4).float()
mc = ModelConfig(data_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
torch.manual_seed(0)
fam = build_model(mc)
fit(fam, (Batch(x[:350]), Batch(x[350:])), TrainConfig(epochs=int(sys.argv[2]), batch_size=16, patience=None),
    sys.argv[1], model_config=mc, resume=sys.argv[3] == "1", progress=False)
"""


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    """Kill -9 a training process again and again (mid-step, mid-validation, mid-write), resume
    each time: the end result equals an uninterrupted run, bit for bit."""
    import random

    script = tmp_path / "train.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    epochs = 20

    def run(folder, resume):
        return subprocess.Popen(
            [sys.executable, str(script), str(folder), str(epochs), "1" if resume else "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    t0, whole = time.time(), run(tmp_path / "whole", False)
    while not (tmp_path / "whole" / "checkpoint_last.pt").exists() and whole.poll() is None:
        time.sleep(0.02)
    t_first = time.time() - t0  # start-up (imports, compile) and the first epoch
    assert whole.wait(120) == 0
    t_whole = time.time() - t0
    t_epoch = (t_whole - t_first) / (epochs - 1)
    rng = random.Random(0)
    kills, folder = 0, tmp_path / "killed"
    while True:
        last = folder / "checkpoint_last.pt"
        p = run(folder, last.exists())
        if kills < 6:  # kill inside training, then let the last run finish
            # Paced by the run's own progress, not by the clock of the uninterrupted run (a machine
            # busier then than now would let every resumed run finish before its kill): wait for
            # the run's next checkpoint, then kill at a random moment of the next few epochs
            # (at once: mid-write; later: mid-step or mid-validation).
            seen = last.stat().st_mtime_ns if last.exists() else None
            while p.poll() is None and (last.stat().st_mtime_ns if last.exists() else None) == seen:
                time.sleep(0.01)
            time.sleep(max(0.0, rng.uniform(-0.5, 3.0)) * t_epoch)
            if p.poll() is None:
                p.kill()
                p.wait()
                kills += 1
                continue
        assert p.wait(120) == 0, p.stderr.read().decode()
        break
    assert kills >= 2
    a = read_checkpoint(tmp_path / "whole" / "checkpoint_last.pt")["model_state"]
    b = read_checkpoint(folder / "checkpoint_last.pt")["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "whole" / "metrics.jsonl").read_text().count("\n") == epochs
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= kills  # a kill mid-write can leave its temporary file, never a broken target

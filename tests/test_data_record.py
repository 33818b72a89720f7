"""The record of the data a run used (:class:`pyro_vae.config.DataConfig`): typed, filled by the
CLI, built for a Python user by ``DataConfig.of``; and a run folder written by ``fit`` from Python
on the user's own tensors opens in every command: ``evaluate``, ``sample``, ``plot`` and
``compare`` either work or say in one line exactly what to pass (never mnist5k behind the user's
back)."""

import json

import numpy as np
import pytest
import torch

from pyro_vae import Batch, ModelConfig, TrainConfig, build_model, fit
from pyro_vae.cli import main
from pyro_vae.cli.runs import data_record
from pyro_vae.config import DataConfig

QUIET = dict(progress=False)
# what `pyro-vae train` recorded before the record was typed: the same keys, in this order
CLI_KEYS = [
    "dataset",
    "data_dir",
    "val_fraction",
    "split_seed",
    "train_size",
    "val_size",
    "fingerprint",
    "scale",
    "stream",
    "streamed",
    "workers",
    "test",
]


def _tensors(n=100):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, 8, 8, generator=g) < torch.linspace(0.1, 0.9, 64).reshape(1, 1, 8, 8)).float()


def _python_run(path, extra=None):
    """A run trained from Python on the user's own tensors, as a user writes it."""
    x = _tensors()
    config = ModelConfig(data_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
    torch.manual_seed(0)
    fit(
        build_model(config),
        (Batch(x[:80]), Batch(x[80:])),
        TrainConfig(epochs=1, batch_size=16, patience=None),
        path,
        model_config=config,
        record=extra,
        **QUIET,
    )
    return x


def _run(argv, capsys):
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _refused(argv, capsys, *words):
    code, _, err = _run(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for w in ("--dataset", *words):
        assert w in lines[0], (w, lines[0])
    assert "mnist5k" not in lines[0].split("such as")[0]  # named as an example, never used
    return lines[0]


# ---------------------------------------------------------------------- the record
def test_the_cli_record_keeps_its_keys_and_round_trips(tmp_path):
    from pyro_vae.data.datasets import load_data

    path = tmp_path / "x.npy"
    np.save(path, _tensors().numpy())
    splits = load_data(str(path), val_fraction=0.25, seed=3)

    class Flags:
        dataset, data_dir, val_fraction, seed, stream, workers = str(path), None, 0.25, 3, "off", 0

    record = data_record(Flags, splits)
    assert list(record)[: len(CLI_KEYS)] == CLI_KEYS  # resume compares records key by key: none renamed or lost
    assert record["dataset"] == str(path.absolute()) and record["fingerprint"] and record["split_seed"] == 3
    assert record["train_size"] == 75 and record["val_size"] == 25 and record["streamed"] is False
    assert DataConfig.from_dict(record).to_dict() == record
    assert DataConfig.from_dict({"dataset": "mnist5k", "from_a_newer_version": 1}).dataset == "mnist5k"
    assert DataConfig.from_dict({}) == DataConfig.from_dict(None) == DataConfig()
    with pytest.raises(ValueError, match="must be a dict"):
        DataConfig.from_dict(["mnist5k"])


def test_of_records_tensors_from_python_without_a_name():
    x = _tensors()
    record = DataConfig.of(Batch(x[:80]), Batch(x[80:]))
    assert record.dataset is None and record.fingerprint is None
    assert (record.train_size, record.val_size, record.streamed) == (80, 20, False)
    assert json.loads(json.dumps(record.to_dict())) == record.to_dict()  # JSON, as config.json keeps it


# ---------------------------------------------------------------------- a run folder from Python
@pytest.mark.parametrize("recorded", ["nothing", "tensors", "a file"])
def test_every_command_opens_a_run_trained_from_python(tmp_path, capsys, recorded):
    """Today's fit records no data; DataConfig.of(train, val) is what fit records once it does (it
    names no data either); with the file the tensors came from, the commands need nothing more."""
    data_file = tmp_path / "mine.npy"
    x = _tensors()
    np.save(data_file, x.numpy())
    extra = {
        "nothing": None,
        "tensors": {"data": DataConfig.of(Batch(x[:80]), Batch(x[80:])).to_dict()},
        "a file": {
            "data": DataConfig.of(
                Batch(x[:80]), Batch(x[80:]), source=data_file, val_fraction=0.2, split_seed=0
            ).to_dict()
        },
    }[recorded]
    run = tmp_path / "run"
    _python_run(run, extra)

    named = recorded == "a file"
    evaluate = ["evaluate", run, "--k", "2", "--iwae-k", "0", "--no-progress"]
    if named:
        code, out, err = _run(evaluate, capsys)
        assert code == 0, err
        assert "mine.npy/val" in out
    else:
        line = _refused(evaluate, capsys, str(run))
        assert "80 training points" in line or recorded == "nothing"  # a record says what the run trained on
        _refused(["plot", run, "--no-progress"], capsys)
        _refused(
            ["sample", run, "-n", "4", "--sampler", "mixture", "--components", "2", "--out", tmp_path / "m.png"], capsys
        )
    # what the message says to pass, passed: everything works
    given = [] if named else ["--dataset", data_file]
    code, out, err = _run(evaluate + given, capsys)
    assert code == 0, err
    code, _, err = _run(["plot", run, "--no-progress", *given], capsys)
    assert code == 0, err
    assert (run / "report.md").exists() and (run / "samples.png").exists()
    code, _, err = _run(["sample", run, "-n", "4", "--out", tmp_path / "s.png"], capsys)  # the prior: no data
    assert code == 0, err
    code, _, err = _run(
        ["sample", run, "-n", "4", "--sampler", "mixture", "--components", "2", "--out", tmp_path / "m.png", *given],
        capsys,
    )
    assert code == 0, err
    code, _, err = _run(["compare", run, run, "--names", "a", "b", "--out", tmp_path / "cmp"], capsys)
    assert code == 0, err

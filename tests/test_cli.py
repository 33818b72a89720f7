"""The command line end to end on real MNIST digits (the offline mnist5k set)."""

import dataclasses
import gzip
import json
import struct

import numpy as np

from pyro_vae.cli.app import build_parser, main
from pyro_vae.config import TrainConfig


def _fake_test_folder(path, n=60):
    """IDX files in torchvision's format (synthetic digits-shaped data, not MNIST)."""
    path.mkdir()
    rng = np.random.default_rng(0)
    imgs = (rng.random((n, 28, 28)) < 0.15).astype(np.uint8) * 255
    for name, arr in (("t10k-images-idx3-ubyte.gz", imgs), ("t10k-labels-idx1-ubyte.gz", np.arange(n) % 10)):
        arr = np.asarray(arr, dtype=np.uint8)
        with gzip.open(path / name, "wb") as f:
            f.write(bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape) + arr.tobytes())
    return path


TRAIN = [
    "train",
    "--epochs",
    "2",
    "--latent-dim",
    "2",
    "--hidden",
    "64",
    "--batch-size",
    "256",
    "--eval-k",
    "20",
    "--no-progress",
    "--val-fraction",
    "0.5",
]


def test_train_evaluate_sample_plot_resume(tmp_path, capsys):
    run = tmp_path / "run"
    data_dir = _fake_test_folder(tmp_path / "mnist")
    assert main(TRAIN + ["--out", str(run), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "val ELBO" in out and "log_px" in out and "k=20" in out
    for name in (
        "config.json",
        "metrics.jsonl",
        "checkpoint_best.pt",
        "summary.json",
        "metrics_test.json",
        "report.md",
        "curves.png",
        "samples.png",
        "manifold.png",
    ):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["test"]["num_images"] == 60
    assert summary["test"]["elbo"] < summary["test"]["log_px"] < 0

    assert (
        main(
            [
                "evaluate",
                str(run / "checkpoint_best.pt"),
                "--k",
                "10",
                "--iwae-k",
                "5",
                "--limit",
                "30",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "iwae_5" in out and "30" in out
    assert list(run.glob("eval_*_k10.json"))

    assert main(["sample", str(run), "-n", "9", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    assert main(["plot", str(run)]) == 0

    # resume to 3 epochs: one more epoch, appended to the same metrics
    assert main(TRAIN[:2] + ["3"] + TRAIN[3:] + ["--out", str(run), "--resume", "--data-dir", str(data_dir)]) == 0
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["train", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "unknown data set" in capsys.readouterr().err
    assert main(["train", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "t10k-images-idx3-ubyte" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["evaluate", str(bad)]) == 2
    assert "not a readable pyro-vae checkpoint" in capsys.readouterr().err
    assert main(["plot", str(tmp_path)]) == 2
    assert main(["train", "--binarize", "none", "--epochs", "1", "--out", str(tmp_path / "g"), "--no-progress"]) == 2
    assert "binary" in capsys.readouterr().err
    assert main(["train", "--latent-dim", "0", "--out", str(tmp_path / "z")]) == 2
    assert "--latent-dim must be >= 1" in capsys.readouterr().err  # the library's "option latent_dim", as a flag


def _train_parser(parser=None):
    parser = parser or build_parser()
    return parser._subparsers._group_actions[0].choices["train"]


def test_every_train_config_field_is_a_flag_and_every_training_flag_a_field():
    """Derived, not copied: the flags come from TrainConfig's declarations, dest = field name,
    with the field's default, help and (for a bounded field) a type that refuses what check() does."""
    train = _train_parser()
    by_dest = {a.dest: a for a in train._actions}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for name, f in fields.items():
        action = by_dest[name]
        assert "--" + name.replace("_", "-") in action.option_strings, name
        assert action.default == f.default and f.metadata["help"] in action.help, name
    group = next(g for g in train._action_groups if g.title == "training")
    assert {a.dest for a in group._group_actions} | {"eval_k"} == set(fields)  # and nothing else
    for cmd in ("train", "evaluate", "sample", "plot"):
        assert cmd in build_parser().format_help()


def test_flag_and_check_refuse_the_same_values(capsys):
    """One declaration: a value the flag refuses, check() refuses, in the same words."""
    import re

    import pytest

    from pyro_vae.config import OptionError

    for flag, field, value, typed in [
        ("--lr", "lr", "0", 0.0),
        ("--epochs", "epochs", "0", 0),
        ("--seed", "seed", str(2**32), 2**32),
        ("--warmup-epochs", "warmup_epochs", "-1", -1.0),
        ("--clip-norm", "clip_norm", "inf", float("inf")),
        ("--labels", "labels", "0", 0),
        ("--val-batch-size", "val_batch_size", "0", 0),
    ]:
        capsys.readouterr()
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", flag, value])
        rule = re.search(rf"argument {flag}: must be (.*), got", capsys.readouterr().err)[1]
        with pytest.raises(OptionError, match=re.escape(f"{field} must be {rule}")):
            TrainConfig(**{field: typed}).check()
    assert build_parser().parse_args(["train", "--patience", "0"]).patience is None  # 0: off
    assert build_parser().parse_args(["train", "--elbo", "trace"]).objective == "trace"  # the alias


def test_a_new_train_config_field_becomes_a_flag(monkeypatch, capsys):
    """Adding a field to TrainConfig (with option(...)) is all it takes: flag, help, default, bounds,
    and the config built from the flags."""
    import pytest

    import pyro_vae.cli.app as cli
    import pyro_vae.cli.train as train_cli
    from pyro_vae.config import option

    @dataclasses.dataclass
    class Wider(TrainConfig):
        warm_restarts: int = option(0, "restart the cosine schedule this many times", min=0)
        ema: bool = option(False, "keep an exponential moving average of the weights")

    monkeypatch.setattr(train_cli, "TrainConfig", Wider)
    train = _train_parser(cli.build_parser())
    assert "--warm-restarts" in train.format_help() and "restart the cosine" in train.format_help()
    args = cli.build_parser().parse_args(["train", "--warm-restarts", "3", "--ema", "--lr", "0.01"])
    config = train_cli.train_config_from_args(args)
    assert isinstance(config, Wider) and config.warm_restarts == 3 and config.ema is True and config.lr == 0.01
    assert train_cli.train_config_from_args(cli.build_parser().parse_args(["train"])).warm_restarts == 0
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--warm-restarts", "-1"])
    assert "--warm-restarts: must be an integer >= 0, got -1" in capsys.readouterr().err


def test_semi_supervised_training_from_the_cli(tmp_path, capsys):
    import torch

    g = torch.Generator().manual_seed(0)
    y = torch.arange(240) % 4
    x = (torch.rand(240, 1, 12, 12, generator=g) < 0.1 + 0.2 * (y[:, None, None, None] == torch.arange(12) % 4)).float()
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    run = tmp_path / "m2"
    assert (
        main(
            [
                "train",
                "--model",
                "ssvae",
                "--dataset",
                str(tmp_path / "d.pt"),
                "--labels",
                "8",
                "--binarize",
                "none",
                "--epochs",
                "2",
                "--batch-size",
                "50",
                "--latent-dim",
                "2",
                "--hidden",
                "16",
                "--aux-weight",
                "1",
                "--eval-k",
                "5",
                "--no-progress",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "val accuracy" in out and "accuracy" in json.loads((run / "metrics_test.json").read_text())
    for name in ("confusion.png", "analogies.png", "report.md"):
        assert (run / name).exists(), name
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["labels"] == 8 and config["model"]["num_classes"] == 4
    assert config["model"]["options"]["aux_weight"] == 1.0
    assert (
        main(
            [
                "train",
                "--model",
                "ssvae",
                "--dataset",
                str(tmp_path / "d.pt"),
                "--labels",
                "6",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
    assert "multiple of the 4 classes" in capsys.readouterr().err
    assert main(["sample", str(run), "-n", "4", "--condition", "2", "--out", str(tmp_path / "s.png")]) == 0


def test_library_messages_are_said_with_the_commands_flags():
    """The library names a setting as Python does; the CLI, the one place that knows its flags,
    says the flag (and leaves alone what is not a flag of the command, or sits in a call)."""
    from pyro_vae.cli.messages import flags_of, with_flags
    from pyro_vae.config import OptionError

    parser = build_parser()
    train, evaluate = flags_of(parser, "train"), flags_of(parser, "evaluate")
    cases = [
        (
            "binarize='static' needs the whole training set in memory; with streamed data use binarize='dynamic'",
            "--binarize static needs the whole training set in memory; with streamed data use --binarize dynamic",
        ),
        ("val_fraction (--val-fraction) must be between 0 and 1", "--val-fraction must be between 0 and 1"),
        ("model 'vae': option latent_dim must be >= 1, got 0", "model 'vae': --latent-dim must be >= 1, got 0"),
        (
            "continue with resume=True, or turn it off with patience=None",
            "continue with --resume, or turn it off with --patience 0",
        ),
        ("leave it out (learned_prior=False)", "leave it out (--no-learned-prior)"),
        (
            "change them on purpose with allow_changes=['lr', 'seed']",  # fit's keyword, an append flag
            "change them on purpose with --allow-change lr --allow-change seed",
        ),
        ("use hidden=[64, 32]", "use --hidden 64 32"),
        ("pass an objective object to fit(..., objective=obj) instead", None),  # Python, in a call: as it is
        ("cannot read /data/seed=3/x.npy", None),  # a path
        ("the labels must be class indices", None),  # a word, not a setting
    ]
    for text, said in cases:
        assert with_flags(text, train) == (said or text), text
    # a setting of training, reported by another command, is said as the train flag
    assert (
        with_flags("val_fraction=0.2 leaves no training data", evaluate)
        == "pyro-vae train --val-fraction 0.2 leaves no training data"
    )
    error = OptionError([("lr", "must be a finite number > 0, got 'x'"), ("device", "unknown device 'gpu': use cpu")])
    assert (
        with_flags(error, train) == "--lr must be a finite number > 0, got 'x'; --device: unknown device 'gpu': use cpu"
    )
    assert str(error) == "lr must be a finite number > 0, got 'x'; unknown device 'gpu': use cpu"  # for Python


def test_a_config_file_is_checked_by_the_same_declarations_before_any_work(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model": {"model": "vae", "options": {}},
                "train": {"lr": 0, "patience": None, "seed": -1},
                "data": {"dataset": str(tmp_path / "not_read.npy")},
            }
        )
    )
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--seed", "3"]) == 2
    err = capsys.readouterr().err.strip()
    # the flag given (--seed 3) was checked by its type and wins; the file's lr is said as the flag;
    # patience None (off) is allowed; the data were never opened
    assert err == "pyro-vae train: error: --lr must be a finite number > 0, got 0", err

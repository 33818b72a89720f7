"""The command line end to end on real MNIST digits (the offline mnist5k set)."""

import dataclasses
import gzip
import json
import struct

import numpy as np

from pyro_vae.cli import build_parser, main
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


TRAIN = ["train", "--epochs", "2", "--latent-dim", "2", "--hidden", "64", "--batch-size", "256",
         "--eval-k", "20", "--no-progress", "--val-fraction", "0.5"]


def test_train_evaluate_sample_plot_resume(tmp_path, capsys):
    run = tmp_path / "run"
    data_dir = _fake_test_folder(tmp_path / "mnist")
    assert main(TRAIN + ["--out", str(run), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "val ELBO" in out and "log_px" in out and "k=20" in out
    for name in ("config.json", "metrics.jsonl", "checkpoint_best.pt", "summary.json", "metrics_test.json",
                 "report.md", "curves.png", "samples.png", "manifold.png"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["test"]["num_images"] == 60
    assert summary["test"]["elbo"] < summary["test"]["log_px"] < 0

    assert main(["evaluate", str(run / "checkpoint_best.pt"), "--k", "10", "--iwae-k", "5", "--limit", "30",
                 "--no-progress"]) == 0
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
    assert "latent_dim must be >= 1" in capsys.readouterr().err


def test_help_covers_every_training_option():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    flags = {opt for action in train._actions for opt in action.option_strings}
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in flags, field.name
    for cmd in ("train", "evaluate", "sample", "plot"):
        assert cmd in parser.format_help()


def test_semi_supervised_training_from_the_cli(tmp_path, capsys):
    import torch

    g = torch.Generator().manual_seed(0)
    y = torch.arange(240) % 4
    x = (torch.rand(240, 1, 12, 12, generator=g) < 0.1 + 0.2 * (y[:, None, None, None] == torch.arange(12) % 4)).float()
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    run = tmp_path / "m2"
    assert main(["train", "--model", "ssvae", "--dataset", str(tmp_path / "d.pt"), "--labels", "8", "--binarize", "none",
                 "--epochs", "2", "--batch-size", "50", "--latent-dim", "2", "--hidden", "16", "--aux-weight", "1",
                 "--eval-k", "5", "--no-progress", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "val accuracy" in out and "accuracy" in json.loads((run / "metrics_test.json").read_text())
    for name in ("confusion.png", "analogies.png", "report.md"):
        assert (run / name).exists(), name
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["labels"] == 8 and config["model"]["num_classes"] == 4
    assert config["model"]["options"]["aux_weight"] == 1.0
    assert main(["train", "--model", "ssvae", "--dataset", str(tmp_path / "d.pt"), "--labels", "6",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "multiple of the 4 classes" in capsys.readouterr().err
    assert main(["sample", str(run), "-n", "4", "--condition", "2", "--out", str(tmp_path / "s.png")]) == 0

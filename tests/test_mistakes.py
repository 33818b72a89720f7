"""Every user mistake gets one clear message naming the problem and the fix (issue "Reliability",
parts 3 and 4).

Table-driven: each row is one mistake a user can make (an option, a data file, a checkpoint, a run
folder) and the words the message must contain. At the command line a mistake is exit code 2 and
one line ``pyro-vae COMMAND: error: ...`` on stderr, never a traceback; in Python it is a
ValueError (DataError, CheckpointError) with the same message, never another exception, a NaN or a
silent wrong answer.
"""

from __future__ import annotations

import ast
import os
import pathlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vae.runs.checkpoint import FORMAT, RESUME_ENTRIES, CheckpointError, load_checkpoint, read_checkpoint
from pyro_vae.cli import main
from pyro_vae.config import TrainConfig, read_metrics
from pyro_vae.data.batch import DataError, to_float_images
from pyro_vae.data.sources import load_array_file
from pyro_vae.data.datasets import load_data
from pyro_vae.analysis.evaluate import evaluate

TINY = [
    "--latent-dim",
    "2",
    "--hidden",
    "8",
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
]


# ---------------------------------------------------------------------- helpers
def cli(argv, capsys):
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse exits by itself
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(argv, capsys, *expected):
    """Exit code 2 and one line ``pyro-vae COMMAND: error: ...`` holding every ``expected`` text
    (notes printed before it are fine; a traceback or a second error line is not)."""
    code, _, err = cli(argv, capsys)
    command = str(argv[0])
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note:")]
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pyro-vae {command}: error: "), err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def one_line_error(excinfo, *expected):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for text in expected:
        assert text in message, (text, message)
    return message


def _noise(n: int) -> bytes:
    """Random bytes that start like no known file format (seeded: the same every run)."""
    return b"\x42" + np.random.default_rng(n).bytes(n - 1)


def _binary(n=48, shape=(8, 8), seed=0):
    return (np.random.default_rng(seed).random((n, *shape)) < 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small data files: binary 8x8 images, labelled ones (4 classes), grey ones, 0-255 floats,
    flat vectors, 2x2 images."""
    d = tmp_path_factory.mktemp("data")
    out = {}
    np.save(d / "bin.npy", _binary())
    out["bin"] = d / "bin.npy"
    np.savez(d / "labelled.npz", x=_binary(), y=np.arange(48) % 4)
    out["labelled"] = d / "labelled.npz"
    np.save(d / "grey.npy", np.random.default_rng(1).random((48, 8, 8)).astype(np.float32))
    out["grey"] = d / "grey.npy"
    np.save(d / "bytes.npy", np.random.default_rng(2).integers(0, 256, (48, 8, 8)).astype(np.float32))
    out["bytes"] = d / "bytes.npy"
    np.save(d / "negative.npy", np.random.default_rng(3).random((48, 8, 8)).astype(np.float32) - 0.5)
    out["negative"] = d / "negative.npy"
    np.save(d / "vectors.npy", _binary(shape=(7,)))
    out["vectors"] = d / "vectors.npy"
    np.save(d / "tiny.npy", _binary(shape=(2, 2)))
    out["tiny"] = d / "tiny.npy"
    (d / "garbage.npy").write_bytes(_noise(300))
    out["garbage"] = d / "garbage.npy"
    np.savez(d / "nox.npz", images=_binary(), labels=np.arange(48) % 4)
    out["nox"] = d / "nox.npz"
    (d / "empty_folder").mkdir()
    out["empty_folder"] = d / "empty_folder"
    (d / "a_file").write_text("not a folder\n")
    out["a_file"] = d / "a_file"
    return out


@pytest.fixture(scope="module")
def run(files, tmp_path_factory):
    """A trained tiny run (binary 8x8 data, Bernoulli likelihood, --binarize none)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "--dataset", str(files["bin"]), *TINY, "--binarize", "none", "--out", str(out)]) == 0
    return out


def _ckpt(run):
    return torch.load(run / "checkpoint_last.pt", map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------- train options
CUDA = torch.cuda.is_available()
TRAIN_OPTIONS = [
    # (id, arguments, texts the message must hold)
    ("device gpu", ["--device", "gpu"], ["--device", "'gpu'", "cpu"]),
    ("device cuda without CUDA", ["--device", "cuda"], ["--device", "CUDA is not available", "cpu"]),
    ("device cuda:7", ["--device", "cuda:7"], ["--device", "cuda:7"]),
    ("device cuda:x", ["--device", "cuda:x"], ["--device", "'cuda:x'"]),
    ("batch size 0", ["--batch-size", "0"], ["--batch-size", "integer >= 1", "got 0"]),
    ("batch size text", ["--batch-size", "ten"], ["--batch-size", "integer >= 1", "'ten'"]),
    ("epochs -1", ["--epochs", "-1"], ["--epochs", "integer >= 1", "got -1"]),
    ("epochs 0", ["--epochs", "0"], ["--epochs", "integer >= 1"]),
    ("lr 0", ["--lr", "0"], ["--lr", "> 0", "got 0"]),
    ("lr -1", ["--lr", "-1"], ["--lr", "> 0"]),
    ("lr nan", ["--lr", "nan"], ["--lr", "finite", "nan"]),
    ("lr inf", ["--lr", "inf"], ["--lr", "finite", "inf"]),
    ("beta nan", ["--beta", "nan"], ["--beta", "finite"]),
    ("beta inf", ["--beta", "inf"], ["--beta", "finite"]),
    ("beta 0", ["--beta", "0"], ["--beta", "> 0"]),
    ("hidden 0", ["--hidden", "0"], ["--hidden", ">= 1", "0"]),
    ("latent dim -2", ["--latent-dim", "-2"], ["--latent-dim", ">= 1", "-2"]),
    ("val fraction 0", ["--val-fraction", "0"], ["--val-fraction", "between 0 and 1", "got 0"]),
    ("val fraction 1", ["--val-fraction", "1"], ["--val-fraction", "between 0 and 1"]),
    ("val fraction 1.5", ["--val-fraction", "1.5"], ["--val-fraction", "between 0 and 1", "1.5"]),
    ("val fraction nan", ["--val-fraction", "nan"], ["--val-fraction", "between 0 and 1"]),
    ("val fraction leaves no training data", ["--val-fraction", "0.999"], ["--val-fraction", "48 data points"]),
    ("warmup -1", ["--warmup-epochs", "-1"], ["--warmup-epochs", ">= 0", "-1"]),
    ("warmup nan", ["--warmup-epochs", "nan"], ["--warmup-epochs", "finite"]),
    ("eval k -1", ["--eval-k", "-1"], ["--eval-k", ">= 0", "-1"]),
    ("num particles 0", ["--num-particles", "0"], ["--num-particles", "integer >= 1"]),
    ("clip norm 0", ["--clip-norm", "0"], ["--clip-norm", "> 0"]),
    ("patience -1", ["--patience", "-1"], ["--patience", ">= 0"]),
    ("val batch size 0", ["--val-batch-size", "0"], ["--val-batch-size", "integer >= 1"]),
    ("seed -1", ["--seed", "-1"], ["--seed", "2**32"]),
    ("seed 2**70", ["--seed", str(2**70)], ["--seed", "2**32"]),
    ("noise rate 1.5 with mask", ["--noise", "mask", "--noise-rate", "1.5"], ["noise_rate", "[0, 1)", "1.5"]),
    ("noise rate inf", ["--noise", "gaussian", "--noise-rate", "inf"], ["--noise-rate", "finite"]),
    ("likelihood scale 0", ["--likelihood", "gaussian", "--likelihood-scale", "0"], ["--likelihood-scale", "> 0", "0"]),
    (
        "likelihood scale nan",
        ["--likelihood", "gaussian", "--likelihood-scale", "nan"],
        ["--likelihood-scale", "finite"],
    ),
    ("labels 0", ["--labels", "0"], ["--labels", "integer >= 1"]),
    ("labelled batch size -1", ["--labelled-batch-size", "-1"], ["--labelled-batch-size", ">= 0"]),
    ("labels on unlabelled data", ["--model", "ssvae", "--labels", "4"], ["needs labelled data"]),
    ("unknown model", ["--model", "nosuch"], ["--model", "invalid choice: 'nosuch'", "vae"]),
    ("unknown likelihood", ["--likelihood", "nosuch"], ["unknown likelihood 'nosuch'", "bernoulli", "--plugin"]),
    ("unknown objective", ["--objective", "nosuch"], ["--objective", "invalid choice: 'nosuch'", "trace"]),
    ("unknown network", ["--network", "nosuch"], ["network", "'nosuch'", "mlp", "conv"]),
    ("unknown binarize", ["--binarize", "sometimes"], ["--binarize", "invalid choice", "dynamic"]),
    ("unknown option", ["--latent-dimm", "2"], ["unrecognized arguments: --latent-dimm"]),
    ("resume without out", ["--resume"], ["--resume needs --out"]),
    ("config missing", ["--config", "/nonexistent/config.json"], ["--config", "cannot read"]),
]


@pytest.mark.parametrize("args,expected", [pytest.param(*p[1:], id=p[0]) for p in TRAIN_OPTIONS])
def test_train_option_mistakes(files, tmp_path, capsys, args, expected):
    if args == ["--device", "cuda"] and CUDA:
        pytest.skip("this machine has CUDA")
    argv = ["train", "--dataset", files["bin"], *TINY, "--out", tmp_path / "r", *args]
    if args == ["--resume"]:
        argv = ["train", "--resume", "--dataset", files["bin"]]
    assert_user_error(argv, capsys, *expected)
    assert not (tmp_path / "r" / "checkpoint_last.pt").exists()


LABELLED_OPTIONS = [
    ("labels 7 of 4 classes", ["--model", "ssvae", "--labels", "7"], ["--labels 7", "multiple of the 4 classes"]),
    ("labels 100000", ["--model", "ssvae", "--labels", "100000"], ["--labels 100000", "training split has only"]),
]


@pytest.mark.parametrize("args,expected", [pytest.param(*p[1:], id=p[0]) for p in LABELLED_OPTIONS])
def test_label_count_mistakes(files, tmp_path, capsys, args, expected):
    assert_user_error(
        ["train", "--dataset", files["labelled"], *TINY, "--out", tmp_path / "r", *args], capsys, *expected
    )


# ---------------------------------------------------------------------- train data
TRAIN_DATA = [
    ("8-bit values as floats", "bytes", [], ["[0, 1]", "255"]),
    (
        "negative values, continuous Bernoulli",
        "negative",
        ["--binarize", "none", "--likelihood", "continuous_bernoulli"],
        ["[0, 1]", "min -0.4998", "--likelihood gaussian"],
    ),
    ("grey values, Bernoulli, no binarization", "grey", ["--binarize", "none"], ["binary", "--binarize"]),
    ("conv on 2x2 images", "tiny", ["--network", "conv"], ["at least 4x4", "2x2"]),
    ("conv on vectors", "vectors", ["--network", "conv"], ["(C, H, W)", "--network mlp"]),
    ("random bytes named .npy", "garbage", [], ["garbage.npy", "not a NumPy .npy file"]),
    (".npz without x", "nox", [], ["nox.npz", "'x'", "images, labels"]),
    ("empty folder", "empty_folder", [], ["no image files", "empty_folder"]),
]


@pytest.mark.parametrize("key,args,expected", [pytest.param(*p[1:], id=p[0]) for p in TRAIN_DATA])
def test_train_data_mistakes(files, tmp_path, capsys, key, args, expected):
    assert_user_error(["train", "--dataset", files[key], *TINY, "--out", tmp_path / "r", *args], capsys, *expected)


def test_absurd_learning_rate_is_allowed_and_divergence_is_exit_1(files, tmp_path, capsys):
    """--lr 1e30 is absurd but valid; training must then stop with exit 1 and one line."""
    code, _, err = cli(
        [
            "train",
            "--dataset",
            files["bin"],
            *TINY,
            "--epochs",
            "2",
            "--lr",
            "1e30",
            "--batch-size",
            "128",
            "--out",
            tmp_path / "r",
        ],
        capsys,
    )
    lines = [
        line
        for line in err.splitlines()
        if line.strip() and not line.startswith(("note:", " ")) and "Warning" not in line
    ]
    assert code == 1, err
    assert "--lr" in lines[-1]
    assert lines[-1].startswith("pyro-vae train: training stopped: "), err


def test_out_is_a_file(files, capsys):
    assert_user_error(
        ["train", "--dataset", files["bin"], *TINY, "--out", files["a_file"]],
        capsys,
        "--out",
        str(files["a_file"]),
        "is a file",
    )


def test_out_in_a_folder_that_cannot_be_written(files, tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        enforced = True
        try:
            (locked / "probe").mkdir()
            enforced = False  # root: permissions are not enforced; pretend the folder is read-only
            (locked / "probe").rmdir()
        except PermissionError:
            pass
        if not enforced:
            import pyro_vae.cli.train

            real = os.access
            monkeypatch.setattr(
                pyro_vae.cli.train.os,
                "access",
                lambda p, mode, **kw: False if Path(p) == locked else real(p, mode, **kw),
            )
        assert_user_error(
            ["train", "--dataset", files["bin"], *TINY, "--out", locked / "run"],
            capsys,
            "--out",
            "cannot write",
            str(locked),
        )
    finally:
        locked.chmod(0o700)


def test_resume_without_a_run(files, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert_user_error(
        ["train", "--dataset", files["bin"], *TINY, "--resume", "--out", tmp_path / "empty"],
        capsys,
        "--resume",
        "checkpoint_last.pt",
        "nothing to resume",
    )
    assert not (tmp_path / "empty" / ".lock").exists()


def test_no_command_and_unknown_command(capsys):
    code, _, err = cli([], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("pyro-vae: error: "), err
    code, _, err = cli(["trian"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "invalid choice: 'trian'" in err, err


# ---------------------------------------------------------------------- evaluate, sample, plot options
def test_evaluate_mistakes(run, files, tmp_path, capsys):
    (tmp_path / "not_a_run").mkdir()
    cases = [
        (["evaluate", tmp_path / "nope.pt"], ["nope.pt", "does not exist"]),
        (["evaluate", tmp_path / "not_a_run"], ["checkpoint_best.pt", "does not exist", "run folder"]),
        (["evaluate", run, "--limit", "0"], ["--limit", "integer >= 1"]),
        (["evaluate", run, "--k", "-1"], ["--k", ">= 0"]),
        (["evaluate", run, "--batch-size", "0"], ["--batch-size", "integer >= 1"]),
        (["evaluate", run, "--device", "gpu"], ["--device", "'gpu'"]),
        (
            ["evaluate", run, "--dataset", files["vectors"], "--k", "2", "--iwae-k", "0", "--no-progress"],
            ["expects data of shape (batch, 1, 8, 8)", "(12, 7)"],
        ),
        (
            ["evaluate", run, "--dataset", files["grey"], "--k", "2", "--iwae-k", "0", "--no-progress"],
            ["Bernoulli likelihood needs binary data", "pyro-vae train --binarize"],
        ),  # a training setting
        (
            ["evaluate", run, "--dataset", files["bytes"], "--k", "2", "--iwae-k", "0", "--no-progress"],
            ["binary", "max 255"],
        ),
        (["sample", run, "-n", "0"], ["-n", "integer >= 1"]),
        (["plot", run, "--device", "cuda:x"], ["--device", "'cuda:x'"]),
    ]
    for argv, expected in cases:
        assert_user_error(argv, capsys, *expected)


@pytest.fixture(scope="module")
def labelled_run(files, tmp_path_factory):
    """A trained tiny semi-supervised run (4 classes)."""
    out = tmp_path_factory.mktemp("m2") / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "ssvae",
                "--dataset",
                str(files["labelled"]),
                *TINY,
                "--binarize",
                "none",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_sample_and_classify_mistakes(run, labelled_run, tmp_path, capsys):
    assert_user_error(["sample", labelled_run, "--condition", "99"], capsys, "--condition 99", "4 classes", "0..3")
    assert_user_error(["sample", labelled_run, "--condition", "-1"], capsys, "--condition -1", "0..3")
    assert_user_error(["sample", run, "--out", run], capsys, "--out", "is a folder", "samples.png")
    assert_user_error(["classify", run, "--device", "gpu"], capsys, "--device", "'gpu'")


def test_evaluate_when_the_training_data_moved(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    ckpt = _ckpt(copy)
    ckpt["extra"]["data"]["dataset"] = str(tmp_path / "moved.npy")
    torch.save(ckpt, copy / "checkpoint_best.pt")
    assert_user_error(["evaluate", copy, "--k", "2"], capsys, "moved.npy", "--dataset")


def test_vectors_train_end_to_end_with_figures(files, tmp_path, capsys):
    """Data that train but are not images (shape (N, 7)): training, evaluation, figures and
    report all work (vectors drawn as rows, or the figure skipped with a note)."""
    out = tmp_path / "r"
    code, _, err = cli(
        ["train", "--dataset", files["vectors"], *[a for a in TINY if a != "--no-plots"], "--out", out], capsys
    )
    assert code == 0, err
    assert (out / "report.md").exists() and (out / "summary.json").exists() and (out / "samples.png").exists()


# ---------------------------------------------------------------------- data loaders
def _write(path, writer):
    writer(path)
    return path


def _npz_truncated(p):
    np.savez(p, x=_binary(200))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])


def _npy_truncated(p):
    np.save(p, _binary(200))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])


def _npy_object(p):
    np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)


class _Marker:
    """Unpickling this would create the file ``marker`` (code run by a pickle)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


LOADER_CASES = [
    # (id, file name, writer, texts of the DataError)
    ("no data points", "a.npy", lambda p: np.save(p, np.zeros((0, 8, 8))), ["no data points", "(0, 8, 8)"]),
    ("1-D data", "a.npy", lambda p: np.save(p, np.arange(10.0)), ["(N, ...)", "(10,)"]),
    ("0-d data", "a.npy", lambda p: np.save(p, np.float32(3)), ["(N, ...)", "()"]),
    ("strings", "a.npy", lambda p: np.save(p, np.array([["a", "b"], ["c", "d"]])), ["strings", "numbers"]),
    ("complex", "a.npy", lambda p: np.save(p, np.ones((4, 3), dtype=np.complex64)), ["complex", "real"]),
    ("object array", "a.npy", _npy_object, ["Python objects", "numeric"]),
    (
        "structured dtype",
        "a.npy",
        lambda p: np.save(p, np.zeros((4, 3), dtype=[("a", "f4"), ("b", "i4")])),
        ["dtype", "numbers"],
    ),
    ("inf values", "a.npz", lambda p: np.savez(p, x=np.full((4, 3), np.inf)), ["NaN or Inf", "data point 0"]),
    ("too large for float32", "a.npy", lambda p: np.save(p, np.full((4, 3), 1e300)), ["NaN or Inf", "32-bit"]),
    ("random bytes .npy", "a.npy", lambda p: p.write_bytes(_noise(256)), ["not a NumPy .npy file"]),
    ("npz named .npy", "a.npy", lambda p: p.write_bytes(_npz_bytes(p)), ["zip archive", ".npz"]),
    ("truncated .npy", "a.npy", _npy_truncated, ["a.npy", "truncated"]),
    ("random bytes .npz", "a.npz", lambda p: p.write_bytes(_noise(256)), ["not a NumPy .npz file"]),
    ("truncated .npz", "a.npz", _npz_truncated, ["a.npz", "truncated or corrupt"]),
    (
        ".npz without x",
        "a.npz",
        lambda p: np.savez(p, images=_binary(), labels=np.arange(48)),
        ["'x'", "images, labels"],
    ),
    ("empty .npz", "a.npz", lambda p: np.savez(p), ["no arrays"]),
    (
        "labels of wrong length",
        "a.npz",
        lambda p: np.savez(p, x=_binary(), y=np.arange(40)),
        ["48 data points", "40 labels"],
    ),
    ("labels 2-D", "a.npz", lambda p: np.savez(p, x=_binary(), y=np.zeros((48, 2))), ["'y'", "shape (N,)", "(48, 2)"]),
    (
        "labels strings",
        "a.npz",
        lambda p: np.savez(p, x=_binary(4), y=np.array(list("abcd"))),
        ["'y'", "whole numbers"],
    ),
    (
        "labels NaN",
        "a.npz",
        lambda p: np.savez(p, x=_binary(4), y=np.array([0, 1, np.nan, 2])),
        ["'y'", "whole numbers"],
    ),
    ("condition NaN", "a.npz", lambda p: np.savez(p, x=_binary(4), c=np.full((4, 2), np.nan)), ["condition", "NaN"]),
    ("random bytes .pt", "a.pt", lambda p: p.write_bytes(_noise(256)), ["a.pt", "not a torch.save file"]),
    ("empty .pt", "a.pt", lambda p: p.write_bytes(b""), ["a.pt", "empty (0 bytes)"]),
    (".pt holding a list", "a.pt", lambda p: torch.save([1, 2, 3], p), ["a tensor or a dict", "list"]),
    (".pt holding a string", "a.pt", lambda p: torch.save("images", p), ["a tensor or a dict", "str"]),
    (".pt dict with x a string", "a.pt", lambda p: torch.save({"x": "images"}, p), ["'x'", "tensor", "str"]),
    (
        ".pt with pickled code",
        "a.pt",
        lambda p: torch.save({"x": _Marker(p.with_suffix(".marker"))}, p),
        ["Python objects", "weights_only"],
    ),
]


def _npz_bytes(p):
    tmp = p.with_name("tmp.npz")
    np.savez(tmp, x=_binary())
    return tmp.read_bytes()


@pytest.mark.parametrize("name,writer,expected", [pytest.param(*c[1:], id=c[0]) for c in LOADER_CASES])
def test_data_file_mistakes(tmp_path, name, writer, expected):
    path = _write(tmp_path / name, writer)
    with pytest.raises(DataError) as e:
        load_array_file(path)
    one_line_error(e, str(path), *expected)
    with pytest.raises(DataError):  # the entry point says the same
        load_data(str(path))
    assert not path.with_suffix(".marker").exists()


def test_image_folder_mistakes(tmp_path):
    from PIL import Image

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        load_data(str(tmp_path / "empty"))
    one_line_error(e, "no image files", "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as e:
        load_data(str(tmp_path / "text"))
    one_line_error(e, "no image files", "notes.txt")
    (tmp_path / "broken").mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((6, 6), dtype=np.uint8)).save(tmp_path / "broken" / f"{i}.png")
    (tmp_path / "broken" / "3.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as e:
        load_data(str(tmp_path / "broken"))
    one_line_error(e, "3.png", "cannot read")


def test_to_float_images_refuses_what_is_not_numbers():
    for bad, words in (
        (np.array(["1", "2"]), "strings"),
        (np.array([1 + 2j]), "complex"),
        (np.array([object(), None]), "Python objects"),
        ("abc", "strings"),
        (torch.ones(2, dtype=torch.complex64), "complex"),
    ):
        with pytest.raises(DataError) as e:
            to_float_images(bad, "thing")
        one_line_error(e, "thing", words)
    assert torch.equal(to_float_images(np.array([[True, False]]), "b"), torch.tensor([[1.0, 0.0]]))
    assert to_float_images(torch.ones(2, 2, dtype=torch.bfloat16), "b").dtype == torch.float32


def test_val_fraction_is_checked_before_loading(tmp_path):
    with pytest.raises(DataError) as e:
        load_data(str(tmp_path / "does-not-matter.npy"), val_fraction=1.5)
    one_line_error(e, "val_fraction", "between 0 and 1", "1.5")


# ---------------------------------------------------------------------- evaluate (the library)
def test_evaluate_refuses_data_it_cannot_score(run):
    family, _ = load_checkpoint(run / "checkpoint_best.pt")
    x = torch.from_numpy(_binary(10)).unsqueeze(1)
    ok = evaluate(family, x, k=2)
    assert np.isfinite(ok["elbo"]["value"])
    grey = torch.rand(10, 1, 8, 8)
    nan = x.clone()
    nan[3, 0, 2, 2] = float("nan")
    cases = [
        (grey, {}, ["Bernoulli likelihood needs binary data"]),
        (x * 255, {}, ["binary", "max 255"]),
        (x - 1, {}, ["binary", "min -1"]),
        (nan, {}, ["NaN or Inf", "data point 3"]),
        (x.reshape(10, 64), {}, ["expects data of shape (batch, 1, 8, 8)", "(10, 64)"]),
        (x[:0], {}, ["no data points"]),
        (x.to(torch.int64), {}, ["torch.int64", "to_float_images"]),
        (x, {"k": -1}, ["k must be", "-1"]),
        (x, {"iwae_k": -5}, ["iwae_k", "-5"]),
        (x, {"batch_size": 0}, ["batch_size", "0"]),
    ]
    for data, kwargs, expected in cases:
        with pytest.raises(ValueError) as e:
            evaluate(family, data, **({"k": 2} | kwargs))
        one_line_error(e, *expected)


# ---------------------------------------------------------------------- checkpoints
def _del(key):
    def f(c):
        del c[key]

    return f


def _set(key, value):
    def f(c):
        c[key] = value

    return f


def _set_config(key, value):
    def f(c):
        c["model_config"][key] = value

    return f


def _latent_3(c):
    c["model_config"]["options"]["latent_dim"] = 3


def _state_value(c):
    c["model_state"][next(iter(c["model_state"]))] = 3


RAW_CHECKPOINTS = [
    ("random bytes", lambda run: _noise(400), ["not a torch.save file"]),
    ("empty file", lambda run: b"", ["empty (0 bytes)"]),
    ("truncated", lambda run: (run / "checkpoint_last.pt").read_bytes()[:3000], ["truncated or corrupt"]),
    ("JSON renamed .pt", lambda run: (run / "config.json").read_bytes(), ["not a torch.save file"]),
]
OBJECT_CHECKPOINTS = [
    (
        "plain state_dict",
        lambda run: _ckpt(run)["model_state"],
        ["not a pyro-vae checkpoint", "state_dict", "load_model_state"],
    ),
    ("a list", lambda run: [1, 2, 3], ["not a pyro-vae checkpoint", "list"]),
    ("a tensor", lambda run: torch.zeros(3), ["not a pyro-vae checkpoint", "Tensor"]),
    (
        "pickled code",
        lambda run: {"format": FORMAT, "model_state": _Marker(run.parent / "marker")},
        ["Python objects", "weights_only"],
    ),
]
MUTATED_CHECKPOINTS = [
    ("no model_state", _del("model_state"), ["'model_state'", "missing"]),
    ("no model_config", _del("model_config"), ["'model_config'", "missing"]),
    ("no format marker", _del("format"), ["not a pyro-vae checkpoint"]),
    ("model_state a list", _set("model_state", [1, 2]), ["'model_state'", "list"]),
    ("model_state with a number", _state_value, ["'model_state'", "int", "tensor"]),
    ("model_config a string", _set("model_config", "vae"), ["'model_config'", "str"]),
    ("epoch a string", _set("epoch", "3"), ["'epoch'", "str"]),
    ("version a string", _set("version", "one"), ["version", "'one'"]),
    ("newer version", _set("version", 99), ["newer pyro-vae"]),
    ("unknown family", _set_config("model", "nosuch"), ["'nosuch'", "not registered"]),
    ("unknown config field", _set_config("colour", "red"), ["model config", "colour"]),
    ("negative data shape", _set_config("data_shape", [-1, 8]), ["model config", "data_shape"]),
    (
        "another model's weights",
        _latent_3,
        ["shape mismatch", "encoder", "(2, 8) in the checkpoint", "(3, 8) in the model"],
    ),
]


def _save_case(tmp_path, run, kind, make):
    path = tmp_path / "ckpt.pt"
    if kind == "raw":
        path.write_bytes(make(run))
    elif kind == "object":
        torch.save(make(run), path)
    else:
        ckpt = _ckpt(run)
        make(ckpt)
        torch.save(ckpt, path)
    return path


CHECKPOINT_CASES = (
    [pytest.param("raw", *c[1:], id=c[0]) for c in RAW_CHECKPOINTS]
    + [pytest.param("object", *c[1:], id=c[0]) for c in OBJECT_CHECKPOINTS]
    + [pytest.param("mutated", *c[1:], id=c[0]) for c in MUTATED_CHECKPOINTS]
)


@pytest.mark.parametrize("kind,make,expected", CHECKPOINT_CASES)
def test_checkpoint_mistakes(run, tmp_path, capsys, kind, make, expected):
    path = _save_case(tmp_path, run, kind, make)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    one_line_error(e, str(path), *expected)
    assert_user_error(["evaluate", path, "--k", "2"], capsys, str(path))
    assert not (run.parent / "marker").exists()


RESUME_CASES = [
    ("no optimizer_state", _del("optimizer_state"), ["'optimizer_state'", "missing", "resume=True"]),
    ("no rng", _del("rng"), ["'rng'", "missing"]),
    ("no epoch", _del("epoch"), ["'epoch'", "missing"]),
    ("no step", _del("step"), ["'step'", "missing"]),
    ("optimizer_state a string", _set("optimizer_state", "adam"), ["'optimizer_state'", "str"]),
    ("rng a list", _set("rng", [1, 2]), ["'rng'", "list"]),
    ("rng without torch state", lambda c: c["rng"].pop("torch"), ["'rng'", "torch"]),
    ("step negative", _set("step", -4), ["'step'", "-4"]),
]


@pytest.mark.parametrize("make,expected", [pytest.param(*c[1:], id=c[0]) for c in RESUME_CASES])
def test_checkpoint_mistakes_for_resume(run, tmp_path, make, expected):
    path = _save_case(tmp_path, run, "mutated", make)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path, require=RESUME_ENTRIES)
    one_line_error(e, str(path), *expected)


def test_resume_from_a_broken_checkpoint(run, files, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "checkpoint_last.pt").write_bytes(_noise(500))
    argv = ["train", "--dataset", files["bin"], *TINY, "--binarize", "none", "--resume", "--epochs", "2", "--out", copy]
    assert_user_error(argv, capsys, "checkpoint_last.pt", "not a torch.save file")


def test_resume_from_a_checkpoint_without_optimizer_state(run, files, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    ckpt = _ckpt(copy)
    del ckpt["optimizer_state"]
    torch.save(ckpt, copy / "checkpoint_last.pt")
    argv = ["train", "--dataset", files["bin"], *TINY, "--binarize", "none", "--resume", "--epochs", "2", "--out", copy]
    assert_user_error(argv, capsys, "checkpoint_last.pt", "'optimizer_state'")


# ---------------------------------------------------------------------- security
def test_a_checkpoint_naming_a_plugin_does_not_import_it(run, tmp_path, capsys):
    marker = tmp_path / "imported"
    plugin = tmp_path / "evil_plugin.py"
    plugin.write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    ckpt = _ckpt(run)
    ckpt["model_config"]["model"] = "evil_family"
    ckpt["model_config"]["plugins"] = [str(plugin)]
    path = tmp_path / "ckpt.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    one_line_error(e, "evil_family", f"plugin={str(plugin)!r}")  # the CLI says --plugin
    assert_user_error(["evaluate", path], capsys, f"--plugin {plugin}")
    assert_user_error(["sample", path], capsys, f"--plugin {plugin}")
    assert not marker.exists()


def test_every_torch_load_uses_weights_only():
    """No file the library reads can run code: every ``torch.load`` passes ``weights_only=True``."""
    package = Path(__file__).resolve().parents[1] / "pyro_vae"
    calls = 0
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "load"
                and getattr(node.func.value, "id", None) == "torch"
            ):
                calls += 1
                kw = {k.arg: k.value for k in node.keywords}
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, (
                    f"{source.name}:{node.lineno} torch.load without weights_only=True"
                )
    assert calls >= 2


# ---------------------------------------------------------------------- metrics
def test_read_metrics_keeps_only_rows(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(
        b'{"epoch": 1, "train_loss": 5.0, "val_elbo": -5.0}\nnot json\n[1, 2]\n3\n"text"\nnull\n'
        b'\xff\xfe\x00garbage\n{"epoch": 2, "train_loss": 4.0, "val_elbo": -4.5}\n{"epoch": 3, "tr'
    )
    assert [r["epoch"] for r in read_metrics(path)] == [1, 2]
    assert read_metrics(tmp_path / "missing.jsonl") == []
    assert read_metrics(tmp_path) == []  # a folder


def test_plot_with_a_corrupt_metrics_file(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    with open(copy / "metrics.jsonl", "ab") as f:
        f.write(b'garbage\n[1, 2, 3]\n\xff\n{"epoch": "x", "train_loss": "y"}\n{"epo')
    code, _, err = cli(["plot", copy, "--no-progress"], capsys)
    assert code == 0, err
    assert (copy / "curves.png").stat().st_size > 0 and (copy / "report.md").exists()


# ---------------------------------------------------------------------- the library's own checks
def test_train_config_check_names_every_bad_setting():
    nan, inf = float("nan"), float("inf")
    cases = [
        (dict(lr=nan), ["lr", "finite"]),
        (dict(lr=inf), ["lr", "finite"]),
        (dict(beta=inf), ["beta"]),
        (dict(warmup_epochs=nan), ["warmup_epochs"]),
        (dict(warmup_epochs=-1), ["warmup_epochs", ">= 0"]),
        (dict(clip_norm=nan), ["clip_norm"]),
        (dict(epochs=True), ["epochs"]),
        (dict(epochs=2.5), ["epochs"]),
        (dict(seed=-1), ["seed", "2**32"]),
        (dict(device="gpu"), ["device", "'gpu'"]),
        (dict(labels=2.5), ["labels"]),
        (dict(patience=-1), ["patience"]),
    ]
    for kwargs, expected in cases:
        with pytest.raises(ValueError) as e:
            TrainConfig(**kwargs).check()
        one_line_error(e, *expected)
    TrainConfig(lr=1e9, device="cpu", seed=2**32 - 1).check()  # absurd but valid: training says so if it diverges

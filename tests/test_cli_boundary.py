"""The command line's boundary (issue 21): options that would do nothing, sizes that cannot fit,
names the file system refuses, the data a run names (absolute, fingerprinted, never downloaded
into a place the run folder chooses) and what an interrupt says.

Each case is one line ``pyro-vae COMMAND: error: ...`` and exit 2 (see ``test_mistakes.py``).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from pyro_vae.cli import app as cli_module
from pyro_vae.cli import main
from test_mistakes import TINY, _binary, assert_user_error, cli


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("boundary")
    np.save(d / "bin.npy", _binary())
    np.savez(d / "labelled.npz", x=_binary(), y=np.arange(48) % 4)
    return d


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A tiny run trained from a *relative* data path, in another working folder."""
    out = tmp_path_factory.mktemp("brun") / "run"
    cwd = os.getcwd()
    os.chdir(data)
    try:
        assert main(["train", "--dataset", "bin.npy", *TINY, "--out", str(out)]) == 0
    finally:
        os.chdir(cwd)
    return out


@pytest.fixture(scope="module")
def labelled_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("blab") / "run"
    assert main(["train", "--dataset", str(data / "labelled.npz"), *TINY, "--out", str(out)]) == 0
    return out


# ---------------------------------------------------------------------- inert options
@pytest.mark.parametrize(
    "argv, flag, needs",
    [
        (["train", "--labelled-batch-size", "4"], "--labelled-batch-size", "--labels"),
        (["train", "--allow-change", "lr"], "--allow-change", "--resume"),
        (["train", "--stream", "off", "--workers", "2"], "--workers", "--stream"),
    ],
    ids=["labelled batch without labels", "allow-change without resume", "workers without streaming"],
)
def test_train_refuses_options_that_do_nothing(data, tmp_path, capsys, argv, flag, needs):
    full = argv[:1] + ["--dataset", str(data / "bin.npy"), *TINY, "--out", str(tmp_path / "r")] + argv[1:]
    assert_user_error(full, capsys, flag, "does nothing", needs)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "extra, flag, needs",
    [
        (["--num-generated", "50"], "--num-generated", "--generation"),
        (["--sampler", "mixture"], "--sampler", "--generation"),
        (["--generation", "--components", "3"], "--components", "--sampler mixture"),
        (["--generation", "--k", "10"], "--k", "--generation"),
        (["--generation", "--limit", "10"], "--limit", "--generation"),
    ],
    ids=["num-generated", "sampler", "components", "k with generation", "limit with generation"],
)
def test_evaluate_refuses_options_that_do_nothing(run, capsys, extra, flag, needs):
    assert_user_error(["evaluate", run, *extra], capsys, flag, "does nothing", needs)


@pytest.mark.parametrize(
    "extra, flag", [(["--components", "3"], "--components"), (["--dataset", "x.npy"], "--dataset")]
)
def test_sample_refuses_options_that_do_nothing(run, tmp_path, capsys, extra, flag):
    assert_user_error(["sample", run, *extra, "--out", tmp_path / "s.png"], capsys, flag, "--sampler mixture")
    assert not (tmp_path / "s.png").exists()


# ---------------------------------------------------------------------- sizes and names
def test_sizes_too_large_for_memory_are_refused_before_work(run, labelled_run, tmp_path, capsys):
    assert_user_error(["sample", run, "-n", 10**12, "--out", tmp_path / "s.png"], capsys, "-n 1000000000000", "at most")
    assert_user_error(
        ["evaluate", labelled_run, "--generation", "--num-generated", 10**12],
        capsys,
        "--num-generated",
        "GiB",
        "generate fewer",
    )


def test_names_longer_than_the_file_system_allows(data, run, tmp_path, capsys):
    long = "x" * 300
    assert_user_error(
        ["train", "--dataset", data / "bin.npy", *TINY, "--out", tmp_path / long],
        capsys,
        "--out",
        "300 bytes",
        "shorter name",
    )
    assert_user_error(["sample", run, "--out", tmp_path / (long + ".png")], capsys, "--out", "shorter name")


# ---------------------------------------------------------------------- the data a run names
def test_a_relative_data_path_is_stored_absolute_and_read_from_anywhere(data, run, tmp_path, capsys):
    record = json.loads((run / "config.json").read_text())["data"]
    assert record["dataset"] == str(data / "bin.npy") and record["fingerprint"]
    # elsewhere, a different file of the same shape under the same relative name
    np.save(tmp_path / "bin.npy", _binary(seed=5))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code, out, err = cli(["evaluate", run, "--k", "2", "--iwae-k", "0", "--no-progress"], capsys)
    finally:
        os.chdir(cwd)
    assert code == 0, err
    assert "bin.npy/val (12 images)" in out  # the run's own file (12 validation images)


def test_changed_data_behind_the_same_name_is_noticed(data, tmp_path, capsys):
    np.save(tmp_path / "d.npy", _binary())
    out = tmp_path / "r"
    assert main(["train", "--dataset", str(tmp_path / "d.npy"), *TINY, "--out", str(out)]) == 0
    np.save(tmp_path / "d.npy", _binary(seed=9))  # same shape, other content
    assert_user_error(["evaluate", out, "--k", "2"], capsys, "d.npy", "has changed", "--dataset")
    # naming it on purpose is allowed
    code, _, err = cli(
        ["evaluate", out, "--k", "2", "--iwae-k", "0", "--no-progress", "--dataset", tmp_path / "d.npy"], capsys
    )
    assert code == 0, err


def test_a_run_folder_never_chooses_where_data_are_downloaded(run, tmp_path, capsys):
    """A run whose record names a torchvision data set in a folder elsewhere: evaluate reads it
    if it is there and never creates or downloads into it."""
    copy = tmp_path / "sent"
    shutil.copytree(run, copy)
    target = tmp_path / "elsewhere" / "deep"
    for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
        ckpt = torch.load(copy / name, map_location="cpu", weights_only=True)
        ckpt["extra"]["data"].update(dataset="fashion-mnist", data_dir=str(target), fingerprint=None)
        torch.save(ckpt, copy / name)
    code, _, err = cli(["evaluate", copy, "--k", "2"], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert not (tmp_path / "elsewhere").exists()


# ---------------------------------------------------------------------- interrupts
@pytest.mark.parametrize("command", ["evaluate", "sample", "plot", "classify"])
def test_an_interrupt_outside_training_does_not_advise_resume(run, capsys, monkeypatch, command):
    def interrupted(a):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli_module.COMMANDS, command, interrupted)
    argv = [command, run] + (["--labels", "4"] if command == "classify" else [])
    code, _, err = cli(argv, capsys)
    assert code == 130 and "--resume" not in err and "interrupted" in err, err


def test_an_interrupt_before_the_first_checkpoint_says_there_is_nothing_to_resume(data, tmp_path, capsys, monkeypatch):
    def interrupted(a):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli_module.COMMANDS, "train", interrupted)
    code, _, err = cli(["train", "--dataset", data / "bin.npy", "--out", tmp_path / "new"], capsys)
    assert code == 130 and "nothing to resume" in err, err


@pytest.mark.parametrize(
    "argv, flag, needs",
    [
        (["--noise-rate", "0.3"], "--noise-rate", "--noise mask or gaussian"),
        (["--model", "gmvae", "--temperature", "0.7"], "--temperature", "--discrete relaxed"),
        (["--model", "cvae", "--observed-quadrants", "2"], "--observed-quadrants", "--condition quadrant"),
        (["--model", "cvae", "--prior", "mixture"], "--prior", "--no-learned-prior"),
    ],
    ids=[
        "noise rate without noise",
        "temperature when enumerating",
        "quadrants of a class condition",
        "prior of a learned prior",
    ],
)
def test_family_options_that_do_nothing_are_refused(data, tmp_path, capsys, argv, flag, needs):
    full = ["train", "--dataset", data / "labelled.npz", *TINY, "--out", tmp_path / "r", *argv]
    assert_user_error(full, capsys, flag, "does nothing", needs)


@pytest.mark.parametrize("model", ["vae", "cvae"])
def test_labels_for_a_family_that_does_not_train_on_partial_labels(data, tmp_path, capsys, model):
    full = [
        "train",
        "--model",
        model,
        "--dataset",
        data / "labelled.npz",
        *TINY,
        "--labels",
        "8",
        "--out",
        tmp_path / "r",
    ]
    assert_user_error(full, capsys, "--labels 8", "partial_labels = True")  # the library's labels=8, as a flag


def test_classify_results_of_other_settings_keep_their_own_files(labelled_run, data, capsys):
    base = ["classify", labelled_run, "--labels", "8", "--epochs", "2", "--no-progress"]
    for extra in ([], ["--lr", "0.01"], ["--dataset", data / "labelled.npz"]):
        code, _, err = cli(base + extra, capsys)
        assert code == 0, err
    assert len(list(labelled_run.glob("m1_labels8_seed0*.json"))) == 3

"""Any data set: a map-style torch Dataset (items a tensor, (x, y) or a dict), an iterable one and
a DataLoader train through ``fit`` and the CLI (``--dataset module:function`` or a registered
name). A map-style Dataset that fits is read once into memory and trains to the very parameters
of the same tensors; streamed, it does too, and resumes bit for bit, random transforms included.
Float64 data and a float64 model train; unreadable items and empty data sets are one line; a
resumed run on iterated data says what it cannot promise."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, TensorDataset

from pyro_vae import Batch, ModelConfig, TrainConfig, build_model, fit
from pyro_vae.cli import main
from pyro_vae.data import DataError, LoaderData, from_torch, load_data, register_dataset, to_memory
from pyro_vae.data.datasets import DATASETS
from pyro_vae.data.streaming import StreamedData
from pyro_vae.runs.checkpoint import read_checkpoint
from pyro_vae.training.fit import TrainingInterrupted

QUIET = dict(progress=False)
SHAPE = (1, 4, 4)


def _x(n=96, seed=0, dtype=torch.float32):
    """Grey values in [0, 1] with a pattern a VAE can learn."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *SHAPE, generator=g) * torch.linspace(0.1, 0.9, 16).reshape(SHAPE)).to(dtype)


class Items(Dataset):
    """A map-style Dataset whose items are ``x`` alone, ``(x, y)`` or a dict, optionally with a
    random transform (noise drawn from the global stream on every read)."""

    def __init__(self, x, form="tensor", noise=0.0):
        self.x, self.form, self.noise = x, form, noise

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i]
        if self.noise:
            x = (x + self.noise * torch.rand(x.shape, dtype=x.dtype)).clamp(0, 1)
        if self.form == "tuple":
            return x, i % 3
        if self.form == "dict":
            return {"x": x, "y": i % 3, "c": torch.full((2,), float(i % 2)), "id": f"item{i}"}
        return x


class Stream(IterableDataset):
    """An iterable Dataset without a length, yielding ``(x, y)``."""

    def __init__(self, x):
        self.x = x

    def __iter__(self):
        return ((self.x[i], i % 3) for i in range(len(self.x)))


def _family():
    torch.manual_seed(0)
    return build_model(ModelConfig(data_shape=SHAPE, latent_dim=2, hidden=(8,)))


def _train(data, epochs=2, **cfg):
    family = _family()
    fit(family, data, TrainConfig(**{"epochs": epochs, "batch_size": 16, "patience": None, **cfg}), **QUIET)
    return family.state_dict()


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_map_style_dataset_trains_to_the_parameters_of_its_tensors_in_memory_or_streamed():
    x = _x()
    tensors = _train((Batch(x[:80]), Batch(x[80:])))
    memory = from_torch(Items(x[:80]))
    assert isinstance(memory, Batch) and torch.equal(memory.x, x[:80])  # read once: the fast path
    assert _same(tensors, _train((Items(x[:80]), Items(x[80:]))))  # the same batches by indexing
    for workers in (0, 1):  # streamed through the seeded sampler: the same rows, in the same order
        streamed = from_torch(Items(x[:80]), stream="on", workers=workers)
        assert isinstance(streamed, StreamedData)
        assert _same(tensors, _train((streamed, Items(x[80:]))))
    assert not _same(tensors, _train((Items(x[:80]), Items(x[80:])), seed=1))  # (the comparison can fail)


def test_items_are_a_tensor_a_tuple_or_a_dict():
    x = _x(12)
    assert torch.equal(to_memory(Items(x)).x, x) and to_memory(Items(x)).y is None
    pair = to_memory(Items(x, "tuple"))
    assert torch.equal(pair.x, x) and pair.y.tolist() == [i % 3 for i in range(12)] and pair.y.dtype == torch.long
    named = to_memory(Items(x, "dict"))  # other keys ("id") are ignored
    assert (
        torch.equal(named.x, x)
        and torch.equal(named.y, pair.y)
        and named.c[:, 0].tolist() == [i % 2 for i in range(12)]
    )
    assert to_memory(TensorDataset(x, torch.arange(12))).y.tolist() == list(range(12))
    images = to_memory(TensorDataset((x * 255).to(torch.uint8)))  # 8-bit values, as an array file's: / 255
    assert images.x.dtype == torch.float32 and float(images.x.max()) <= 1
    from PIL import Image

    grey = [Image.fromarray(np.full((4, 5), 51 * k, dtype=np.uint8)) for k in range(3)]
    pil = to_memory([(img, k) for k, img in enumerate(grey)])  # a list is a map-style data set too
    assert pil.data_shape == (1, 4, 5) and pil.x[2].max().item() == pytest.approx(0.4)


def test_an_iterable_dataset_and_a_dataloader_train_alike(caplog):
    x = _x()
    stream = from_torch(Stream(x[:80]))
    assert isinstance(stream, LoaderData) and len(stream) == 80 and stream.data_shape == SHAPE  # counted: no len()
    via_iterable = _train((Stream(x[:80]), Stream(x[80:])))
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        via_loader = _train(
            (DataLoader(TensorDataset(x[:80], torch.arange(80) % 3), batch_size=16), TensorDataset(x[80:])),
            batch_size=64,
        )
    assert "the DataLoader's batches are the run's: batch_size=16, not 64" in caplog.text
    assert _same(via_iterable, via_loader)  # the same batches in the same order: the same steps
    assert not _same(via_iterable, _train((Items(x[:80]), Items(x[80:]))))  # another order, other steps
    assert all(torch.isfinite(v).all() for v in via_loader.values())


def test_the_run_records_where_the_data_came_from(tmp_path, capsys):
    x = _x()
    config = ModelConfig(data_shape=SHAPE, latent_dim=2, hidden=(8,))
    fit(
        _family(),
        (Items(x[:80]), Items(x[80:])),
        TrainConfig(epochs=1, batch_size=16, patience=None),
        tmp_path / "a",
        model_config=config,
        **QUIET,
    )
    data = json.loads((tmp_path / "a" / "config.json").read_text())["data"]
    assert data["origin"] == "a map-style torch Dataset test_torch_data.Items" and data["dataset"] is None
    assert data["train_size"] == 80 and data["streamed"] is False
    fit(
        _family(),
        (DataLoader(TensorDataset(x[:80]), batch_size=16), x[80:]),
        TrainConfig(epochs=1, batch_size=16, patience=None),
        tmp_path / "b",
        model_config=config,
        **QUIET,
    )
    data = json.loads((tmp_path / "b" / "config.json").read_text())["data"]
    assert data["origin"].startswith("a torch DataLoader over") and data["streamed"] is True
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "a"), "--k", "2"]) == 2  # a Python object: the command says what it needs
    err = capsys.readouterr().err
    assert "trained from Python on a map-style torch Dataset test_torch_data.Items" in err
    assert "MODULE:FUNCTION" in err and len(err.strip().splitlines()) == 1


def test_float64_data_and_a_float64_model_train():
    x64 = _x(dtype=torch.float64)
    a = _train((Items(x64[:80]), Items(x64[80:])))
    assert _same(a, _train((x64[:80].numpy(), x64[80:].numpy())))  # arrays: the same cast, once
    assert _same(a, _train((Batch(x64[:80].float()), Batch(x64[80:].float()))))  # cast once, to float32
    _train((Stream(x64[:80]), Stream(x64[80:])), epochs=1)
    _train((from_torch(Items(x64[:80]), stream="on"), Items(x64[80:])), epochs=1)
    family = _family().double()  # a float64 model on float32 data: cast at the boundary, not a matmul error
    fit(
        family,
        (Items(x64[:80].float()), Items(x64[80:].float())),
        TrainConfig(epochs=1, batch_size=16, patience=None),
        **QUIET,
    )
    assert all(p.dtype == torch.float64 and torch.isfinite(p).all() for p in family.parameters())


class Empty(IterableDataset):
    def __iter__(self):
        return iter(())


@pytest.mark.parametrize(
    "data,words",
    [
        (["abc", "def"], r"item 0's x is a str \('abc'\), not numbers; an item is x"),
        ([(torch.ones(2), "cat")], r"item 0's y is a str"),
        ([{"image": torch.ones(2)}], r"item 0 is a dict without 'x' \(its keys: 'image'\)"),
        ([(torch.ones(2),) * 4], "item 0 is a tuple of 4 entries"),
        ([torch.ones(2), torch.ones(3)], r"item 1's x has shape \(3,\), item 0's x has \(2,\)"),
        ([(torch.ones(2), 1), torch.ones(2)], "item 1 has no 'y', item 0 has one"),
        ([torch.tensor(1.0)], "each x is a single number"),
        ([object()], "item 0's x is a object, not numbers"),
        ([torch.tensor([1.0, float("nan")])], "NaN or Inf"),
        (TensorDataset(torch.ones(0, 3)), "hold no data points: the Dataset's length is 0"),
        (Empty(), "yielded no data points"),
        ("not data", "validation data is a str"),
        (
            (torch.ones(4, 2), torch.arange(4)),
            r"validation data is a tuple \(for tensors x and y: TensorDataset\(x, y\)",
        ),
    ],
)
def test_unreadable_items_and_empty_data_sets_are_one_line(data, words):
    with pytest.raises(DataError, match=words) as err:
        fit(_family(), (Items(_x(20)), data), TrainConfig(epochs=1, patience=None), **QUIET)
    assert "\n" not in str(err.value)


class _SignalAt:
    """An objective that sends SIGTERM to this process at training step ``at``."""

    def __init__(self, family, at):
        from pyro_vae.inference.objectives import make_objective

        self.inner, self.at, self.calls = make_objective("trace", family), at, 0

    def differentiable_loss(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.inner.differentiable_loss(*args, **kwargs)


def _interrupted_and_resumed(tmp_path, make_train, val, at=3, epochs=2):
    """Parameters of an uninterrupted run, and of the same run stopped by SIGTERM at step ``at``
    and resumed (a new family each time: nothing survives but the run folder)."""
    cfg = TrainConfig(epochs=epochs, batch_size=16, patience=None, objective="trace")
    config = ModelConfig(data_shape=SHAPE, latent_dim=2, hidden=(8,))
    whole = _family()
    fit(whole, (make_train(), val), cfg, tmp_path / "whole", model_config=config, **QUIET)
    stopped = _family()
    with pytest.raises(TrainingInterrupted):
        fit(
            stopped,
            (make_train(), val),
            cfg,
            tmp_path / "run",
            model_config=config,
            objective=_SignalAt(stopped, at),
            **QUIET,
        )
    assert read_checkpoint(tmp_path / "run" / "checkpoint_last.pt")["in_epoch"]["batch"] == at
    resumed = _family()
    fit(resumed, (make_train(), val), cfg, tmp_path / "run", model_config=config, resume=True, **QUIET)
    return whole.state_dict(), resumed.state_dict()


@pytest.mark.parametrize("stream", ["auto", "on"])
def test_a_map_style_dataset_resumes_bit_for_bit_random_transforms_included(tmp_path, stream, caplog):
    x = _x()
    with caplog.at_level(logging.WARNING, logger="pyro_vae"):
        whole, resumed = _interrupted_and_resumed(
            tmp_path, lambda: from_torch(Items(x[:80], noise=0.1), stream=stream), Items(x[80:])
        )
    assert _same(whole, resumed)
    assert "resumed epoch" not in caplog.text


LOADERS = {  # DataLoaders whose order and transforms a resumed run draws again
    "shuffled, with a random transform": lambda ds: DataLoader(ds, batch_size=16, shuffle=True),
    "a DistributedSampler": lambda ds: DataLoader(
        ds, batch_size=16, sampler=DistributedSampler(ds, num_replicas=1, rank=0)
    ),
}


@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_dataloader_resumes_bit_for_bit_and_the_run_says_what_loaders_cannot_promise(tmp_path, kind, caplog):
    x = _x()
    ds = Items(x[:80], noise=0.1)
    with caplog.at_level(logging.WARNING, logger="pyro_vae"):
        whole, resumed = _interrupted_and_resumed(tmp_path, lambda: LOADERS[kind](ds), Batch(x[80:]))
    # the loader's randomness on streams of its own, seeded from the run's data generator each epoch
    assert _same(whole, resumed)
    assert caplog.text.count("the resumed epoch reads it again from its start and skips the batches done") == 1


def test_a_resumed_iterable_dataset_warns(tmp_path, caplog):
    x = _x()
    cfg = TrainConfig(epochs=1, batch_size=16, patience=None)
    config = ModelConfig(data_shape=SHAPE, latent_dim=2, hidden=(8,))
    fit(_family(), (Stream(x[:80]), Stream(x[80:])), cfg, tmp_path / "run", model_config=config, **QUIET)
    with caplog.at_level(logging.WARNING, logger="pyro_vae"):
        fit(
            _family(),
            (Stream(x[:80]), Stream(x[80:])),
            TrainConfig(**{**cfg.__dict__, "epochs": 2}),
            tmp_path / "run",
            model_config=config,
            resume=True,
            **QUIET,
        )
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "is an iterable Dataset: the resumed epoch reads it again" in warning[0].message


MODULE = textwrap.dedent("""
    import torch
    from torch.utils.data import Dataset, IterableDataset

    class Digits(Dataset):
        def __init__(self, n):
            g = torch.Generator().manual_seed(0)
            self.x = torch.rand(n, 1, 4, 4, generator=g) * torch.linspace(0.1, 0.9, 16).reshape(1, 4, 4)
        def __len__(self):
            return len(self.x)
        def __getitem__(self, i):
            return {"x": self.x[i], "y": i % 2}

    class Rows(IterableDataset):
        def __init__(self, x):
            self.x = x
        def __iter__(self):
            return iter(self.x)

    def whole(seed):  # the whole training data: split with --val-fraction and --seed
        return Digits(60)

    def pair():
        x = Digits(60).x.double()
        return Rows(x[:45]), x[45:]

    def broken():
        raise RuntimeError("no such table")
""")


def test_the_cli_trains_on_module_function_and_the_other_commands_call_it_again(tmp_path, monkeypatch, capsys):
    (tmp_path / "tinydata.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    base = [
        "train",
        "--epochs",
        "1",
        "--latent-dim",
        "2",
        "--hidden",
        "8",
        "--eval-k",
        "2",
        "--no-plots",
        "--no-progress",
        "--device",
        "cpu",
        "--batch-size",
        "16",
    ]
    run = tmp_path / "run"
    assert main(base + ["--dataset", "tinydata:whole", "--val-fraction", "0.25", "--out", str(run)]) == 0
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["dataset"] == "tinydata:whole" and (data["train_size"], data["val_size"]) == (45, 15)
    assert data["origin"] == "tinydata:whole gave a map-style torch Dataset tinydata.Digits"
    assert main(["evaluate", str(run), "--k", "2"]) == 0  # the function called again
    assert main(base + ["--dataset", "tinydata:pair", "--out", str(tmp_path / "it")]) == 0  # iterable, float64
    data = json.loads((tmp_path / "it" / "config.json").read_text())["data"]
    assert data["streamed"] is True and data["origin"].startswith("tinydata:pair gave an iterable torch Dataset")
    capsys.readouterr()
    for spec, words in (
        ("tinydata:broken", "data set tinydata:broken: broken raised RuntimeError: no such table"),
        ("tinydata:missing", "tinydata has no function 'missing'"),
        ("nosuchmodule:make", "cannot import nosuchmodule (ModuleNotFoundError"),
    ):
        assert main(base + ["--dataset", spec, "--out", str(tmp_path / "x")]) == 2
        assert words in capsys.readouterr().err


def test_a_registered_name_is_one_decorated_function(tmp_path, capsys):
    x = _x(40)

    @register_dataset("tiny-test-set")
    def tiny(val_fraction, seed):  # called with the keywords it names
        return Items(x, "tuple")

    try:
        splits = load_data("tiny-test-set", val_fraction=0.25, seed=1)
        assert (len(splits.train), len(splits.val)) == (30, 10) and splits.name == "tiny-test-set"
        assert torch.equal(
            torch.sort(torch.cat([splits.train.x, splits.val.x]).flatten(1), 0)[0], torch.sort(x.flatten(1), 0)[0]
        )  # a split of the whole
        assert (
            main(
                [
                    "train",
                    "--dataset",
                    "tiny-test-set",
                    "--epochs",
                    "1",
                    "--latent-dim",
                    "2",
                    "--hidden",
                    "8",
                    "--eval-k",
                    "2",
                    "--no-plots",
                    "--no-progress",
                    "--device",
                    "cpu",
                    "--out",
                    str(tmp_path / "run"),
                ]
            )
            == 0
        )
    finally:
        DATASETS.pop("tiny-test-set")
    with pytest.raises(DataError, match="unknown data set 'tiny-test-set': not one of .*mnist5k"):
        load_data("tiny-test-set")
    with pytest.raises(ValueError, match="a data set name is a word"):
        register_dataset("a:b")
    plugin = tmp_path / "myplugin.py"  # a module outside pyro-vae registers a name through --plugin
    plugin.write_text(
        "import torch\nfrom pyro_vae.data import Batch, register_dataset\n"
        "register_dataset('plugged-in')(lambda: Batch(torch.rand(40, 1, 4, 4)))\n"
    )
    try:
        assert (
            main(
                [
                    "train",
                    "--plugin",
                    str(plugin),
                    "--dataset",
                    "plugged-in",
                    "--epochs",
                    "1",
                    "--latent-dim",
                    "2",
                    "--hidden",
                    "8",
                    "--eval-k",
                    "2",
                    "--no-plots",
                    "--no-progress",
                    "--device",
                    "cpu",
                    "--out",
                    str(tmp_path / "plugged"),
                ]
            )
            == 0
        )
        assert main(["evaluate", str(tmp_path / "plugged"), "--plugin", str(plugin), "--k", "2"]) == 0
    finally:
        DATASETS.pop("plugged-in", None)


WORKER = textwrap.dedent("""
    import os, sys
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    from pyro_vae import ModelConfig, TrainConfig, build_model, fit
    rank, out = dist.get_rank(), sys.argv[1]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 4, 4, generator=g) * torch.linspace(0.1, 0.9, 16).reshape(1, 4, 4)
    ds = TensorDataset(x[:80])
    seen = []
    class Logged(DistributedSampler):
        def __iter__(self):
            order = list(super().__iter__())
            seen.append(order)
            return iter(order)
    torch.manual_seed(rank)
    vae = build_model(ModelConfig(data_shape=(1, 4, 4), latent_dim=2, hidden=(8,)))
    fit(vae, (DataLoader(ds, batch_size=8, sampler=Logged(ds)), x[80:]),
        TrainConfig(epochs=2, batch_size=8, patience=None, device="cpu"), os.path.join(out, "run"), progress=False)
    torch.save({"state": vae.state_dict(), "seen": seen}, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()
""")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_under_torchrun_a_distributed_sampler_gives_each_rank_its_share(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])  # DDP kept the ranks together
    for epoch in range(2):  # each epoch the two ranks' shares are the whole training set, disjoint
        assert sorted(a["seen"][-2 + epoch] + b["seen"][-2 + epoch]) == list(range(80))
    assert a["seen"][-2] != a["seen"][-1]  # set_epoch: another order each epoch
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["batch_size"] == 16  # both ranks' batch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_batches_read_by_workers_are_pinned_and_train():
    from pyro_vae.training.prepare import prepare_data

    x = _x()
    streamed = from_torch(Items(x[:80]), stream="on", workers=1)
    cfg = TrainConfig(batch_size=16, device="cuda")
    assert prepare_data(_family().cuda(), streamed, to_memory(Items(x[80:])), cfg, "cuda").pinned
    batch = next(iter(streamed.loader([torch.arange(16)], pin_memory=True)))
    assert batch.x.is_pinned()
    for train in (streamed, Stream(x[:80])):
        state = _train((train, Items(x[80:])), epochs=1, device="cuda")
        assert all(v.is_cuda and torch.isfinite(v).all() for v in state.values())

"""The data boundary (issue 21): images scaled by their mode, odd tensors in .pt files, paths that
are not files, labels that are not class indices, dtypes, shifts larger than the image, torchvision
sets without downloading, and unreadable or empty files in every loader. Each refusal is a
DataError in one line naming the file and the fix."""

from __future__ import annotations

import builtins
import os
import signal
import socket

import numpy as np
import pytest
import torch

from pyro_vae.data.batch import MAX_CLASSES, Batch, DataError, check_shift, num_classes_of, shift_images

from pyro_vae.data.sources import load_array_file, load_torchvision
from pyro_vae.data.datasets import load_data


def one_line(excinfo, *expected):
    message = str(excinfo.value)
    assert isinstance(excinfo.value, DataError) and "\n" not in message, message
    for text in expected:
        assert str(text) in message, (text, message)
    return message


@pytest.fixture
def no_hang():
    """Fail (instead of hanging the suite) when a loader blocks, e.g. opening a named pipe."""

    def stop(*_):
        raise TimeoutError("the loader blocked")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _save_images(folder, arrays, suffix):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(folder / f"{i}{suffix}")


# ---------------------------------------------------------------------- 1. image modes
GREY = np.arange(16).reshape(4, 4)


@pytest.mark.parametrize("stream", ["off", "on"])
@pytest.mark.parametrize(
    "values, suffix, expected, scale",
    [
        ((GREY * 17).astype(np.uint8), ".png", GREY * 17 / 255, "8-bit images: values / 255"),
        ((GREY * 4000).astype(np.uint16), ".png", GREY * 4000 / 65535, "16-bit images: values / 65535"),
        ((GREY / 15).astype(np.float32), ".tif", GREY / 15, "32-bit float images: values as stored"),
    ],
    ids=["8-bit", "16-bit", "float"],
)
def test_images_load_by_mode_with_the_scale_stated(tmp_path, values, suffix, expected, scale, stream):
    _save_images(tmp_path / "imgs", [values] * 4, suffix)
    s = load_data(str(tmp_path / "imgs"), val_fraction=0.25, stream=stream)
    x = s.val.x if stream == "on" else torch.cat([s.train.x, s.val.x])
    assert x.shape[1:] == (1, 4, 4) and x.dtype == torch.float32
    assert torch.allclose(x[0, 0], torch.tensor(expected, dtype=torch.float32), atol=1e-6)
    assert s.scale.startswith(scale) and "\n" not in s.scale


@pytest.mark.parametrize("stream", ["off", "on"])
def test_images_of_two_kinds_or_without_a_full_scale_are_refused(tmp_path, stream):
    _save_images(tmp_path / "mixed", [(GREY * 17).astype(np.uint8)] * 2, ".png")
    _save_images(tmp_path / "mixed" / "z", [(GREY * 4000).astype(np.uint16)], ".png")
    with pytest.raises(DataError) as e:
        s = load_data(str(tmp_path / "mixed"), val_fraction=0.25, stream=stream)
        s.train.to_batch()  # a streamed split reads (and checks) its images here
    one_line(e, "mix kinds", tmp_path / "mixed" / "0.png", tmp_path / "mixed" / "z" / "0.png", "16-bit", "8-bit")
    _save_images(tmp_path / "int32", [(GREY * 70000).astype(np.int32)] * 2, ".tif")  # mode I, 32 bits
    with pytest.raises(DataError) as e:
        load_data(str(tmp_path / "int32"), val_fraction=0.5, stream=stream)
    one_line(e, tmp_path / "int32" / "0.tif", "32-bit integers", "no agreed full scale")
    nan = (GREY / 15).astype(np.float32)
    nan[1, 2] = np.nan
    _save_images(tmp_path / "nan", [nan] * 2, ".tif")
    with pytest.raises(DataError) as e:
        load_data(str(tmp_path / "nan"), val_fraction=0.5, stream=stream)
    one_line(e, tmp_path / "nan" / "0.tif", "NaN or Inf")


# ---------------------------------------------------------------------- 2. odd tensors in .pt files
def _quantized(t):
    return torch.quantize_per_tensor(t, 0.25, 0, torch.quint8)


@pytest.mark.parametrize(
    "make",
    [
        lambda x, y: x.to_sparse(),
        lambda x, y: {"x": x.to_sparse_csr(), "y": y},
        lambda x, y: {"x": x, "y": y.to_sparse()},
        lambda x, y: {"x": _quantized(x), "y": y},
    ],
    ids=["sparse-coo", "sparse-csr", "sparse-labels", "quantized"],
)
def test_sparse_and_quantized_tensors_load_as_ordinary_ones(tmp_path, make):
    x, y = torch.arange(40.0).reshape(10, 4) / 40, torch.arange(10) % 3
    torch.save(make(x, y), tmp_path / "d.pt")
    ds = load_array_file(tmp_path / "d.pt")
    assert ds.x.layout == torch.strided and torch.allclose(ds.x, x, atol=0.13)
    assert ds.y is None or torch.equal(ds.y, y)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: torch.empty(10, 4, device="meta"), ["holds no data", "meta device"]),
        (
            lambda: {"x": torch.rand(10, 4), "y": torch.empty(10, dtype=torch.long, device="meta")},
            ["labels 'y'", "holds no data", "meta device"],
        ),
        (
            lambda: torch.sparse_coo_tensor(torch.zeros(2, 1, dtype=torch.long), torch.ones(1), (10**6, 10**7)),
            ["sparse tensor of shape (1000000, 10000000)", "GiB"],
        ),
    ],
    ids=["meta", "meta-labels", "sparse-too-large"],
)
def test_tensors_without_values_or_too_large_to_densify_are_refused(tmp_path, make, expected):
    torch.save(make(), tmp_path / "d.pt")
    with pytest.raises(DataError) as e:
        load_data(str(tmp_path / "d.pt"))
    one_line(e, tmp_path / "d.pt", *expected)


# ---------------------------------------------------------------------- 3. paths that are not files
def _special(path, kind, sockets):
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "dangling":
        path.symlink_to(path.parent / "gone.npy")
    else:
        sockets.append(socket.socket(socket.AF_UNIX))
        sockets[-1].bind(str(path))


@pytest.mark.parametrize(
    "kind, words",
    [("fifo", "named pipe"), ("loop", "loop of symbolic links"), ("dangling", "does not exist"), ("socket", "socket")],
)
def test_a_pipe_a_socket_or_a_bad_link_is_named_without_opening_it(tmp_path, kind, words, no_hang):
    _save_images(tmp_path / "imgs", [(GREY * 17).astype(np.uint8)] * 3, ".png")
    loaders = [
        ("a.npy", lambda p: load_data(str(p))),
        ("b.npy", lambda p: load_data(str(p), stream="on")),
        ("c.npy", load_array_file),
        ("d.pt", load_array_file),
        ("imgs/odd.png", lambda p: load_data(str(p.parent))),
    ]  # in a folder: named, not skipped
    sockets = []
    try:
        for name, load in loaders:
            _special(tmp_path / name, kind, sockets)
            with pytest.raises(DataError) as e:
                load(tmp_path / name)
            one_line(e, tmp_path / name, words)
    finally:
        for sock in sockets:
            sock.close()


def test_a_device_file_is_named(no_hang):
    with pytest.raises(DataError) as e:
        load_data("/dev/zero")
    one_line(e, "/dev/zero", "character device")


# ---------------------------------------------------------------------- 4. labels
@pytest.mark.parametrize(
    "label, expected",
    [
        (2**31 - 1, ["largest label is 2147483647", "data point 7", f"below {MAX_CLASSES}", "renumber"]),
        (10**15, ["largest label is 1000000000000000", "renumber"]),
        (MAX_CLASSES, [f"largest label is {MAX_CLASSES}", "renumber"]),
        (1e300, ["largest label is 1e+300"]),
        (-3, ["class indices", "-3"]),
        (2.5, ["whole numbers"]),
        (np.nan, ["whole numbers"]),
    ],
    ids=["2**31-1", "1e15", "cap", "1e300", "negative", "fraction", "nan"],
)
def test_labels_that_are_not_class_indices_are_refused(tmp_path, label, expected):
    y = np.zeros(10, dtype=np.float64 if isinstance(label, float) else np.int64)
    y[7] = label
    np.savez(tmp_path / "d.npz", x=np.random.rand(10, 4), y=y)
    with pytest.raises(DataError) as e:
        load_data(str(tmp_path / "d.npz"))
    one_line(e, tmp_path / "d.npz", *expected)
    if float(label) >= MAX_CLASSES and label < 2**62:  # the same rule for a Batch made in Python
        with pytest.raises(DataError) as e:
            num_classes_of(Batch(torch.rand(10, 4), torch.from_numpy(y.astype(np.int64))))
        one_line(e, f"largest label is {int(label)}", "data point 7")
    y[7] = MAX_CLASSES - 1
    np.savez(tmp_path / "ok.npz", x=np.random.rand(10, 4), y=y.astype(np.int64))
    assert num_classes_of(load_data(str(tmp_path / "ok.npz"), val_fraction=0.1, seed=1).train) in (1, MAX_CLASSES)


# ---------------------------------------------------------------------- 5. dtypes
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint16, np.int32, np.int64, np.float16, np.float64])
def test_arrays_of_any_numeric_dtype_load_as_float32(tmp_path, dtype):
    a = (np.arange(40) % 2).reshape(10, 4).astype(dtype)
    np.save(tmp_path / "d.npy", a)
    s = load_data(str(tmp_path / "d.npy"), val_fraction=0.2)
    assert s.train.x.dtype == torch.float32 and set(s.train.x.unique().tolist()) <= {0.0, 1.0}
    assert np.dtype(dtype).name in s.scale


def test_a_float64_batch_made_in_python_trains():
    from pyro_vae import ModelConfig, TrainConfig, build_model, fit

    x = (torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    b = Batch(x, torch.arange(20, dtype=torch.int32) % 2, c=torch.zeros(20, 2, dtype=torch.float64))
    assert b.x.dtype == b.c.dtype == torch.get_default_dtype() and b.y.dtype == torch.int64
    assert b.subset(slice(0, 5)).x.dtype == torch.float32
    vae = build_model(ModelConfig(data_shape=(1, 4, 4), latent_dim=2, hidden=(8,)))
    cfg = TrainConfig(epochs=1, batch_size=10, patience=None, device="cpu", binarize="none")
    summary = fit(vae, (Batch(x), Batch(x[:10])), cfg, progress=False)
    assert summary["epochs_run"] == 1


# ---------------------------------------------------------------------- 6. shifts
@pytest.mark.parametrize("shift", [10**9, 28, 30])
def test_a_shift_as_large_as_the_image_is_refused(shift):
    with pytest.raises(DataError) as e:
        shift_images(torch.rand(2, 1, 28, 28), shift)
    one_line(e, f"augment_shift {shift} must be smaller than the image size 28", "at most 27")
    with pytest.raises(DataError):
        check_shift(shift, (1, 28, 28))
    assert shift_images(torch.rand(2, 1, 28, 28), 27).shape == (2, 1, 28, 28)
    check_shift(27, (1, 28, 28))


# ---------------------------------------------------------------------- 7. torchvision without downloading
@pytest.mark.parametrize(
    "name, files",
    [
        ("mnist", ["MNIST/raw", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
        ("fashion-mnist", ["FashionMNIST/raw", "train-images-idx3-ubyte"]),
        ("kmnist", ["KMNIST/raw", "train-images-idx3-ubyte"]),
        ("cifar10", ["cifar-10-batches-py"]),
    ],
)
def test_without_download_a_missing_set_is_named_and_nothing_is_written(tmp_path, name, files):
    for data_dir in (tmp_path / "nowhere" / "deeper", tmp_path):
        with pytest.raises(DataError) as e:
            load_data(name, data_dir, download=False)
        one_line(e, data_dir, *files, "downloading is off", "nothing is fetched or written")
    assert os.listdir(tmp_path) == []  # no folder made, nothing written


def test_without_download_idx_files_present_load_and_nothing_is_written(tmp_path):
    import gzip
    import struct

    raw = tmp_path / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 5)):
        for kind, arr in (("images-idx3", rng.integers(0, 256, (n, 28, 28))), ("labels-idx1", np.arange(n) % 10)):
            arr = np.asarray(arr, dtype=np.uint8)
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
            with gzip.open(raw / f"{split}-{kind}-ubyte.gz", "wb") as f:
                f.write(header + arr.tobytes())
    before = sorted(p.name for p in raw.iterdir())
    s = load_data("kmnist", tmp_path, val_fraction=0.25, download=False)
    assert len(s.train) == 15 and len(s.test) == 5 and s.test.x.shape == (5, 1, 28, 28)
    assert s.scale.startswith("8-bit images")
    assert sorted(p.name for p in raw.iterdir()) == before and os.listdir(tmp_path) == ["KMNIST"]


def test_a_failed_download_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):  # what torchvision raises offline, one block per mirror tried
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
            "<urlopen error [Errno -2] Name or service not known>\n"
        )

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError) as e:
        load_torchvision("mnist", tmp_path, train=True, download=True)
    one_line(e, tmp_path / "MNIST" / "raw", "Name or service not known", "offline?")


# ---------------------------------------------------------------------- 8. every loader: unreadable, empty, bad values
def _write(path, kind):
    x = (np.arange(40) % 2).reshape(10, 4).astype(np.float32)
    if kind == ".npy":
        np.save(path, x)
    elif kind == ".npz":
        np.savez(path, x=x)
    elif kind == ".pt":
        torch.save(torch.from_numpy(x), path)
    else:
        _save_images(path, [(GREY * 17).astype(np.uint8)] * 3, ".png")
        return path / "1.png"
    return path


LOADERS = [(".npy", "off"), (".npy", "on"), (".npz", "off"), (".pt", "off"), ("images", "off"), ("images", "on")]


@pytest.mark.parametrize("kind, stream", LOADERS)
def test_a_file_that_cannot_be_opened_is_named_in_one_line(tmp_path, monkeypatch, kind, stream):
    path = tmp_path / f"data{kind if kind != 'images' else ''}"
    target = _write(path, kind)
    real_open = builtins.open

    def denied(file, *args, **kwargs):  # as chmod 000 would (the tests may run as root)
        if os.fspath(file) == str(target):
            raise PermissionError(13, "Permission denied", str(target))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    with pytest.raises(DataError) as e:
        s = load_data(str(path), val_fraction=0.2, stream=stream)
        s.train.to_batch()  # a streamed split reads its files here
    one_line(e, target, "Permission denied")


@pytest.mark.parametrize("stream", ["off", "on"])
def test_an_image_folder_that_cannot_be_listed_is_named(tmp_path, monkeypatch, stream):
    _write(tmp_path / "imgs", "images")
    real = os.scandir

    def denied(path="."):
        if os.fspath(path) == str(tmp_path / "imgs"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(DataError) as e:
        load_data(str(tmp_path / "imgs"), stream=stream)
    one_line(e, tmp_path / "imgs", "Permission denied")


@pytest.mark.parametrize("kind", [".npy", ".npz", ".pt", ".png"])
@pytest.mark.parametrize(
    "content, words",
    [
        (b"", ["empty"]),
        (b"\x00garbage bytes that are no format at all", ["cannot read"]),
    ],
    ids=["0-bytes", "garbage"],
)
def test_empty_or_foreign_files_are_named_by_every_loader(tmp_path, kind, content, words):
    if kind == ".png":
        _write(tmp_path / "imgs", "images")
        path, bad = tmp_path / "imgs", tmp_path / "imgs" / "2.png"
    else:
        path = bad = tmp_path / f"d{kind}"
    bad.write_bytes(content)
    with pytest.raises(DataError) as e:
        load_data(str(path))
    message = one_line(e, bad)
    assert any(w in message for w in words + ["not a", "corrupt", "cannot identify"]), message


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros((0, 4)), ["no data points"]),
        (np.zeros(5), ["shape (N, ...)"]),
        (np.array([[1.0, np.inf]] * 3), ["NaN or Inf"]),
        (np.array([[1e300, 0.0]] * 3), ["too large for 32-bit floats"]),
        (np.array([["a", "b"]] * 3), ["strings"]),
        (np.array([[1 + 1j, 0]] * 3), ["complex"]),
    ],
    ids=["empty", "1-d", "inf", "overflow", "strings", "complex"],
)
@pytest.mark.parametrize("kind", [".npy", ".npz", ".pt"])
def test_bad_arrays_are_refused_by_every_array_loader(tmp_path, array, words, kind):
    path = tmp_path / f"d{kind}"
    if kind == ".npy":
        np.save(path, array)
    elif kind == ".npz":
        np.savez(path, x=array)
    else:
        if array.dtype.kind in "US":
            torch.save({"x": array.tolist()}, path)
            words = ["must be a tensor"]
        else:
            torch.save(torch.from_numpy(array), path)
    with pytest.raises(DataError) as e:
        load_data(str(path))
    one_line(e, path, *words)

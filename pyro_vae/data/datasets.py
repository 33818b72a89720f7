"""Data sets by name or path: the one entry point, :func:`load_data`, which reads a named set
(mnist5k, the torchvision sets) or a file or folder, in memory or streamed from disk
(:mod:`pyro_vae.data.streaming`), and splits off a seeded validation set."""

from __future__ import annotations

from pathlib import Path

from pyro_vae.data.sources import (TORCHVISION, image_scale, load_mnist5k, load_mnist_test_files, load_torchvision,
                                   path_problem, read_array_file, read_image_folder)
from pyro_vae.data.batch import DataError, Splits, check_val_fraction, split, split_positions
from pyro_vae.data.streaming import ImageFolderSource, NpySource, StreamedData, should_stream
from pyro_vae.data.tables import load_penguins


def load_data(name: str, data_dir=None, val_fraction: float = 0.1, seed: int = 0,
              download: bool = True, stream: str = "off", workers: int = 0) -> Splits:
    """Load a named data set or a path, and split off a seeded validation set.

    ``data_dir`` is where torchvision data sets live (default ``./data``); for ``mnist5k`` it is
    where to look for the official MNIST test-set files. ``stream`` (``off``, ``on``, ``auto``:
    when the data would not fit the memory budget) makes the training split of a ``.npy`` file or
    an image folder a :class:`~pyro_vae.data.streaming.StreamedData`, read batch by batch by
    ``workers`` processes (:mod:`pyro_vae.data.streaming`); the validation split is loaded.
    ``download=False`` never fetches a torchvision set: missing files are a DataError naming the
    folder and the files, and nothing is created (for a ``data_dir`` read from a run folder).
    """
    check_val_fraction(val_fraction)
    if stream not in ("off", "on", "auto"):
        raise DataError(f"option stream must be off, on or auto, got {stream!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise DataError(f"option workers must be a whole number >= 0, got {workers!r}")
    if not isinstance(name, (str, Path)):
        raise DataError(f"a data set is a name or a path, got {type(name).__name__}")
    name = str(name)
    if name == "mnist5k":
        train, val = split(load_mnist5k(), val_fraction, seed)
        test = load_mnist_test_files(data_dir) if data_dir is not None else None
        if data_dir is not None and test is None:
            raise DataError(
                f"no MNIST test files in {data_dir}: expected t10k-images-idx3-ubyte.gz (and "
                f"t10k-labels-idx1-ubyte.gz) there, in raw/ or in MNIST/raw/"
            )
        src = f"official MNIST test set ({data_dir})" if test is not None else ""
        return Splits(train, val, test, name, src, image_scale("8-bit"))
    if name == "penguins":  # a table with its schema (pyro_vae.data.tables)
        return load_penguins(data_dir=data_dir, val_fraction=val_fraction, seed=seed, download=download)
    if name in TORCHVISION:
        root = Path(data_dir) if data_dir is not None else Path("data")
        full = load_torchvision(name, root, train=True, download=download)
        test = load_torchvision(name, root, train=False, download=download)
        train, val = split(full, val_fraction, seed)
        return Splits(train, val, test, name, f"official {name} test set", image_scale("8-bit"))
    path = Path(name)
    problem = path_problem(path, folder_ok=True)
    if problem == "no such file or folder":
        raise DataError(
            f"unknown data set {name!r}: not one of mnist5k, {', '.join(TORCHVISION)}, and no such "
            f"file or folder"
        )
    if problem is not None:
        raise DataError(f"cannot read data set {path}: {problem}; pass a .npy, .npz or .pt file or a folder of images")
    is_dir = path.is_dir()
    streamable = is_dir or path.suffix.lower() == ".npy"
    if stream == "on" and not streamable:
        raise DataError(f"stream='on' reads a .npy file or a folder of images batch by batch; {path} is neither "
                        f"(save the images with numpy.save, or use stream='off')")
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


__all__ = ["load_data"]

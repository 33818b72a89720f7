"""Data in memory: a :class:`Batch` of tensors (x, labels y, their mask, a condition c), the checks
every source passes through, splits, binarizing, and the index batches that training cuts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

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
        for name in self.FIELDS:
            t = getattr(self, name)
            if t is None or torch.is_tensor(t):
                continue
            if name == "x" or not isinstance(t, (np.ndarray, list, tuple)):
                raise DataError(
                    f"Batch field {name!r} must be a tensor with one entry per data point, got "
                    f"{type(t).__name__}"
                    + ("; make one with pyro_vae.data.batch.to_float_images(array, 'x')" if name == "x" else "")
                )
            try:
                setattr(self, name, torch.as_tensor(np.asarray(t)))
            except (TypeError, ValueError, RuntimeError) as e:
                raise DataError(f"Batch field {name!r}: cannot make a tensor of it ({first_line(e)})") from None
        self._cast()
        self._check_lengths()

    def _check_lengths(self):
        if self.x.dim() == 0:
            raise DataError("Batch field 'x' must have a first dimension over the data points, got a 0-d tensor")
        n = self.x.shape[0]
        for name in self.FIELDS[1:]:
            t = getattr(self, name)
            if t is not None and (t.dim() == 0 or t.shape[0] != n):
                if t.dim() == 0:
                    raise DataError(
                        f"{n} data points but {name!r} is a 0-d tensor: every per-example tensor "
                        f"needs one entry per data point"
                    )
                raise DataError(
                    f"{n} data points but {t.shape[0]} entries in {name!r}: every "
                    f"per-example tensor needs one entry per data point"
                )

    def _cast(self):
        """Floating ``x`` and ``c`` in torch's default dtype and integer labels as int64, cast once
        here (no copy when they already are): float64 arrays from NumPy, or half-precision data,
        then meet float32 networks without a dtype error. A float64 model sets
        ``torch.set_default_dtype(torch.float64)``, and its data follow."""
        default = torch.get_default_dtype()
        for name in ("x", "c"):
            t = getattr(self, name)
            if t is not None and t.is_floating_point() and t.dtype != default:
                setattr(self, name, t.to(default))
        if self.y is not None and self.y.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32):
            self.y = self.y.long()  # index and one-hot functions need int64 labels

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
        """The same data with ``fields`` replaced. Tensors are kept as given, in their dtype (a
        float64 model's data stay float64: the cast to the default dtype is for data coming in);
        other values are converted as ``Batch(...)`` converts them."""
        if not all(v is None or torch.is_tensor(v) for v in fields.values()):
            return dataclasses.replace(self, **fields)
        unknown = set(fields) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"Batch has no field {', '.join(sorted(unknown))}; its fields: {', '.join(self.FIELDS)}")
        new = self._derived({**{f: getattr(self, f) for f in self.FIELDS}, **fields})
        new._check_lengths()
        return new

    @classmethod
    def _derived(cls, fields: dict) -> "Batch":
        """A Batch of tensors made from a checked one (a slice, a copy on a device), as they are:
        no conversion, no cast, no check (training slices one per step)."""
        new = object.__new__(cls)
        new.__dict__.update(fields)
        return new

    def _map(self, fn) -> "Batch":
        return self._derived({f: None if getattr(self, f) is None else fn(getattr(self, f)) for f in self.FIELDS})

    def to(self, device, non_blocking: bool = False):
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        """The same data in page-locked host memory (a DataLoader with ``pin_memory=True`` calls
        it), so that the copy to a GPU can overlap the work before it."""
        return self._map(lambda t: t.pin_memory())

    def subset(self, idx):
        """The data points at ``idx`` (an index tensor or a slice), every field sliced alike."""
        return self._map(lambda t: t[idx])

    def unlabelled(self) -> "Batch":
        """The same data with no label visible to a model (evaluation of log p(x) sums y out)."""
        return self.replace(
            labelled=None if self.y is None else torch.zeros(len(self), dtype=torch.bool, device=self.x.device)
        )


Dataset = Batch  # the name training code and users know; one class for data sets and batches


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset | None = None
    name: str = ""
    test_source: str = ""  # what the test split is, in words
    scale: str = ""  # how the stored values became x, in words (e.g. "16-bit images: values / 65535 -> [0, 1]")
    origin: str = (
        ""  # where the data came from, in words (e.g. "mymod:make gave a map-style torch Dataset mymod.Digits")
    )


# ---------------------------------------------------------------------- helpers
def first_line(e) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_finite(x: torch.Tensor, what: str = "data", allow_nan: bool = False) -> None:
    """Raise a DataError naming how many values of ``x`` are NaN or Inf and the first data point
    holding one (only Inf with ``allow_nan``: NaN marks a missing entry for a likelihood that
    declares ``missing_values``)."""
    bad = torch.isinf(x) if allow_nan else ~torch.isfinite(x)
    if bad.any():
        where = ""
        if x.dim() > 0:
            first = int(bad.reshape(x.shape[0], -1).any(1).nonzero()[0, 0])
            where = f" (the first in data point {first})"
        raise DataError(
            f"{what} contain {int(bad.sum())} {'Inf' if allow_nan else 'NaN or Inf'} values{where}; clean "
            f"them before training"
            + (
                ""
                if allow_nan
                else " (missing entries of a table: a likelihood that models them, likelihood='tabular')"
            )
        )


def numeric_array(arr, what: str) -> np.ndarray:
    """``arr`` as a NumPy array of numbers (bool, int, float), or a DataError saying what it holds."""
    try:
        a = np.asarray(arr)
    except Exception as e:  # ragged lists, objects NumPy cannot hold
        raise DataError(f"{what}: cannot make an array of numbers of it ({first_line(e)})") from None
    kind = a.dtype.kind
    if kind in "US":
        raise DataError(
            f"{what} holds strings (dtype {a.dtype}), not numbers; convert them to numbers first "
            f"(e.g. array.astype(float))"
        )
    if kind == "c":
        raise DataError(
            f"{what} holds complex numbers (dtype {a.dtype}); pass real numbers (e.g. abs(array) or array.real)"
        )
    if kind == "O":
        raise DataError(f"{what} holds Python objects (dtype object), not numbers; pass a numeric array")
    if kind not in "biuf":
        raise DataError(
            f"{what} has dtype {a.dtype}; pyro-vae needs an array of numbers (integers, floats or booleans)"
        )
    return a


_SPARSE = (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc)


def dense_tensor(t: torch.Tensor, what: str) -> torch.Tensor:
    """``t`` as an ordinary (dense, strided) CPU tensor: a sparse tensor made dense when that fits
    the memory budget, a quantized one dequantized; a meta tensor (a shape without values) and
    other layouts are refused with a DataError in one line."""
    if t.device.type == "meta":
        raise DataError(
            f"{what} holds no data: a tensor on the meta device (a shape {tuple(t.shape)} without "
            f"values); save the tensor that holds the values"
        )
    if getattr(t, "is_nested", False):
        raise DataError(f"{what} is a nested tensor (rows of different sizes); save a tensor of shape (N, ...)")
    if t.is_quantized:
        t = t.dequantize()
    if t.layout in _SPARSE:
        from pyro_vae.devices import memory_budget

        need, budget = t.numel() * 4, memory_budget()
        if need > budget:
            raise DataError(
                f"{what} is a sparse tensor of shape {tuple(t.shape)}: made dense it would take "
                f"{need / 2**30:.3g} GiB, more than the {budget / 2**30:.3g} GiB this machine can hold "
                f"comfortably; save a smaller dense array"
            )
        t = t.to_dense()
    elif t.layout != torch.strided:
        raise DataError(f"{what} has layout {t.layout}; save an ordinary dense tensor (tensor.to_dense())")
    return t.detach().cpu()


def to_float_images(arr, what: str) -> torch.Tensor:
    """Data as a float32 tensor: uint8 -> [0, 1] (divided by 255), bool -> 0/1, other integer and
    float arrays as they are. Strings, complex numbers, Python objects and records are refused
    with a DataError, and so are NaN and Inf values (also values too large for 32-bit floats)."""
    if torch.is_tensor(arr):
        src = dense_tensor(arr, what)
        if src.is_complex():
            raise DataError(
                f"{what} holds complex numbers (dtype {src.dtype}); pass real numbers (e.g. "
                f"tensor.abs() or tensor.real)"
            )
        if src.dtype == torch.uint8:
            return src.float() / 255.0
        try:
            t = src.float()
        except (RuntimeError, TypeError) as e:  # a dtype without a float conversion
            raise DataError(
                f"{what}: cannot read values of dtype {src.dtype} ({first_line(e)}); save float32 or integer tensors"
            ) from None
        # only float64 values can overflow float32: any other NaN or Inf was in the data
        finite_before = (lambda: bool(torch.isfinite(src).all())) if src.dtype == torch.float64 else (lambda: False)
        largest = (lambda: float(src.double().abs().max())) if src.numel() else (lambda: 0.0)
    else:
        a = numeric_array(arr, what)
        if a.dtype == np.uint8:
            return torch.from_numpy(np.array(a, dtype=np.float32)) / 255.0
        finite_before = (lambda: bool(np.isfinite(a).all())) if a.dtype.kind == "f" else (lambda: True)
        largest = (lambda: float(np.abs(a.astype(np.float64)).max())) if a.size else (lambda: 0.0)
        with np.errstate(over="ignore"):  # too large for float32: said below
            t = torch.from_numpy(np.array(a, dtype=np.float32))
    if not torch.isfinite(t).all():
        if finite_before():
            raise DataError(
                f"{what} contain NaN or Inf values once stored as 32-bit floats: values up to "
                f"{largest():.3g} are too large for 32-bit floats; rescale the data"
            )
        check_finite(t, what)
    return t


def check_shift(max_shift, data_shape) -> None:
    """Raise a DataError unless a shift of up to ``max_shift`` pixels is smaller than the images
    (``data_shape`` = (C, H, W)): a larger one would move whole images out of view, and its
    zero-padded copy could need more memory than there is."""
    if max_shift and len(data_shape) == 3 and max_shift >= min(data_shape[1:]):
        h, w = data_shape[1:]
        raise DataError(
            f"augment_shift {max_shift} must be smaller than the image size {h} x {w} (height x width): "
            f"use at most {min(h, w) - 1} (a few pixels is usual)"
        )


def shift_images(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) moved by its own random whole-pixel offset, up to
    ``max_shift`` pixels in each direction (uniform), the uncovered border filled with 0: the
    translation augmentation of image classifiers. One gather over a zero-padded copy."""
    if max_shift <= 0 or x.numel() == 0:
        return x
    if x.dim() != 4:
        raise DataError(f"shifting images needs data of shape (N, C, H, W), got {tuple(x.shape)}")
    check_shift(max_shift, x.shape[1:])
    n, _, h, w = x.shape
    s = int(max_shift)
    off = torch.randint(0, 2 * s + 1, (2, n), generator=generator, device=x.device)
    padded = torch.nn.functional.pad(x, (s, s, s, s))
    rows = (off[0][:, None] + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
    cols = (off[1][:, None] + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
    return padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def binarize(x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
    """Draw x_bin ~ Bernoulli(x) for grey values in [0, 1]; seeded (static) when ``seed`` is given."""
    if x.numel() == 0:
        return x.clone()
    check_finite(x, "data to binarize")
    if x.min() < 0 or x.max() > 1:
        hint = (
            " 8-bit pixel values (0-255)? Divide them by 255, or save the array as uint8 (scaled to [0, 1] "
            "when loaded)."
            if x.max() > 1 and x.min() >= 0
            else ""
        )
        raise DataError(
            f"binarization treats pixel values as probabilities and needs them in [0, 1]; "
            f"got min {x.min().item():.4g}, max {x.max().item():.4g}.{hint} For real-valued data use "
            f"binarize='none' with a likelihood for them (likelihood='gaussian')"
        )
    if seed is None:
        return torch.bernoulli(x)
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.bernoulli(x.cpu(), generator=g).to(x.device)


def check_val_fraction(val_fraction) -> None:
    """Raise a DataError unless ``val_fraction`` is a number strictly between 0 and 1."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise DataError(
            f"option val_fraction must be between 0 and 1, exclusive: the share of the "
            f"training data held out for validation; got {val_fraction!r}"
        )


def split(ds: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Seeded random split into (train, validation)."""
    train_pos, val_pos = split_positions(len(ds), val_fraction, seed)
    return ds.subset(train_pos), ds.subset(val_pos)


def split_positions(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions of the training and validation points of a seeded split of ``n`` points."""
    check_val_fraction(val_fraction)
    if n < 2:
        raise DataError(
            f"cannot split {n} data point{'s' if n != 1 else ''} into train and validation: need at least 2"
        )
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise DataError(
            f"val_fraction={val_fraction} leaves no training data: cannot split {n} data points "
            f"into train and validation; lower option val_fraction or use more data"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


# ---------------------------------------------------------------------- entry point
def batches(n: int, batch_size: int, shuffle: bool, device=None, generator=None):
    """Yield index tensors cutting range(n) into batches (random order when ``shuffle``,
    drawn from ``generator`` if given: it must live on ``device``)."""
    idx = torch.randperm(n, device=device, generator=generator) if shuffle else torch.arange(n, device=device)
    for start in range(0, n, batch_size):
        yield idx[start : start + batch_size]


def mixed_batches(n: int, batch_size: int, labelled_idx: torch.Tensor, labelled_per_batch: int, generator=None):
    """Batches for semi-supervised training: every data point once per epoch (in random order),
    and to each batch ``labelled_per_batch`` more points drawn from ``labelled_idx`` (cycling
    through shuffled passes of it), so that a few labels are seen in every step."""
    device = labelled_idx.device
    steps = math.ceil(n / batch_size)
    need = steps * labelled_per_batch
    passes = math.ceil(need / max(1, labelled_idx.numel()))
    extra = torch.cat(
        [labelled_idx[torch.randperm(labelled_idx.numel(), device=device, generator=generator)] for _ in range(passes)]
    )[:need]
    for i, idx in enumerate(batches(n, batch_size, True, device, generator)):
        yield torch.cat([idx, extra[i * labelled_per_batch : (i + 1) * labelled_per_batch]])


# ---------------------------------------------------------------------- labels and evaluation data
EVAL_BINARIZATION_SEED = 0  # validation and test data: binarized once, with this seed, everywhere


def for_evaluation(ds: Batch, binarize_mode: str) -> Batch:
    """The one rule for validation and test data: when training binarizes (``static`` or
    ``dynamic``), they are binarized once with seed :data:`EVAL_BINARIZATION_SEED`, so every
    evaluation of a run (each epoch's validation, ``evaluate``, the figures) sees the same
    binary images; with ``none`` they are used as given."""
    if binarize_mode not in ("none", "static", "dynamic"):  # "auto" is resolved by fit, per likelihood
        raise ValueError(
            f"for_evaluation needs the binarize mode a run resolved (none, static or dynamic; a "
            f"checkpoint's train_config holds it), got {binarize_mode!r}"
        )
    if hasattr(ds, "to_batch"):  # a streamed split: the commands that ask for it need it in memory
        ds = ds.to_batch()
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
        raise DataError(
            f"{what} must lie in [0, {num_classes - 1}] for {num_classes} classes; got values "
            f"from {y.min().item()} to {y.max().item()}"
        )


MAX_CLASSES = 10_000  # more classes than this: labels that are ids or values, not class indices


def check_class_count(largest, where: int | None = None, what: str = "the data") -> None:
    """Raise a DataError when the largest label implies more than :data:`MAX_CLASSES` classes:
    a model would be sized by it (one output per class), so a stray label of 2**31 - 1 would ask
    for gigabytes."""
    if largest >= MAX_CLASSES:
        at = f" (data point {where})" if where is not None else ""
        whole = isinstance(largest, (int, np.integer))
        shown, count = (f"{largest}", f"{int(largest) + 1}") if whole else (f"{largest:.15g}", f"{largest + 1:.15g}")
        raise DataError(
            f"{what}: the largest label is {shown}{at}, which would make {count} classes; labels must be "
            f"class indices 0, 1, ... below {MAX_CLASSES}: renumber them (e.g. "
            f"numpy.unique(y, return_inverse=True)[1])"
        )


def num_classes_of(ds: Batch) -> int | None:
    """Number of classes of a labelled data set (largest label + 1), None without labels; a
    DataError when that is more than :data:`MAX_CLASSES`."""
    if ds.y is None or ds.y.numel() == 0:
        return None
    largest = int(ds.y.max().item())
    if largest >= MAX_CLASSES:
        check_class_count(largest, int(ds.y.long().argmax().item()), "labels 'y'")
    return largest + 1


def select_labels(ds: Batch, num_labels: int, seed: int = 0, num_classes: int | None = None) -> Batch:
    """Keep ``num_labels`` labels visible, ``num_labels / num_classes`` per class, drawn with
    ``seed``; every other label stays in ``y`` (for evaluation) but is hidden from the model
    (``labelled`` False)."""
    if ds.y is None:
        raise DataError(
            f"labels={num_labels} needs a data set with labels (mnist5k, a torchvision set, an .npz "
            f"file with 'y', or a folder of class sub-folders)"
        )
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise DataError(f"option labels must be a whole number >= 1 (labels kept for training), got {num_labels!r}")
    num_classes = num_classes or num_classes_of(ds)
    if num_classes is None:
        raise DataError(
            f"labels={num_labels} needs labelled training data, but the training split holds no data points"
        )
    check_labels(ds.y, num_classes)
    if num_labels < num_classes or num_labels % num_classes:
        raise DataError(
            f"labels={num_labels}: the labelled subset is drawn per class, so it must be a "
            f"positive multiple of the {num_classes} classes (e.g. {10 * num_classes})"
        )
    per_class = num_labels // num_classes
    g = torch.Generator().manual_seed(seed)
    y = ds.y.cpu()
    chosen = []
    for c in range(num_classes):
        members = (y == c).nonzero().reshape(-1)
        if members.numel() < per_class:
            raise DataError(
                f"labels={num_labels} asks for {per_class} labels of class {c}, but the "
                f"training split has only {members.numel()} examples of it; ask for at most "
                f"{num_classes * int(torch.bincount(y, minlength=num_classes).min())}"
            )
        chosen.append(members[torch.randperm(members.numel(), generator=g)[:per_class]])
    mask = torch.zeros(len(ds), dtype=torch.bool)
    mask[torch.cat(chosen)] = True
    return ds.replace(labelled=mask.to(ds.y.device))

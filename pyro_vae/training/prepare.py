"""Data preparation: the data of a run checked against the family once, before the first step.

``fit``'s data become training and validation splits (:func:`splits_of`); ``binarize="auto"`` is
resolved for the family's likelihood (:func:`resolve_binarize`); :func:`prepare_data` then checks
both splits at the boundary (shape, finite values, the likelihood's support), casts floating data
to the model's dtype, binarizes statically where asked, draws the label subset, and moves the
data to the device when they fit. What comes out, :class:`TrainData`, is what
:mod:`pyro_vae.training.batches` cuts into batches.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from functools import partial

import torch

from pyro_vae.contract import check_data, traits
from pyro_vae.config import TrainConfig
from pyro_vae.data.batch import (
    Batch,
    DataError,
    Splits,
    binarize,
    check_finite,
    check_shift,
    for_evaluation,
    select_labels,
)
from pyro_vae.data.loaders import LoaderData
from pyro_vae.data.torch_data import from_torch, origin_of, to_memory
from pyro_vae.devices import memory_budget

logger = logging.getLogger(__name__)


def splits_of(data) -> tuple:
    """``(train, val)`` from what ``fit`` was given: a :class:`~pyro_vae.data.batch.Splits` (its
    test split is left alone) or a ``(train, val)`` pair. Each may be a Batch, a streamed split, a
    torch Dataset (map-style or iterable), a DataLoader, or a tensor or array (x): the training
    split is read by the rule of :mod:`pyro_vae.data.torch_data` (a map-style Dataset that fits
    the memory budget read once into memory, a larger one streamed, an iterable one or a
    DataLoader iterated each epoch), the validation split into memory."""
    if isinstance(data, Splits):
        train, val = data.train, data.val
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        train, val = data
    else:
        raise TypeError(
            f"fit needs training and validation data: a (train, val) pair or the Splits of load_data, "
            f"got {type(data).__name__}; each may be a Batch, a torch Dataset or a DataLoader: hold out "
            f"some training data for validation (e.g. torch.utils.data.random_split)"
        )
    return from_torch(train), to_memory(val)


def origin_of_data(data) -> str | None:
    """Where ``fit``'s data came from, in words, for the run's record (None for tensors)."""
    if isinstance(data, Splits):
        return data.origin or origin_of(data.train)
    return origin_of(data[0]) if isinstance(data, (tuple, list)) and data else None


def resolve_batch_size(cfg: TrainConfig, train, world: int = 1, note: bool = True) -> TrainConfig:
    """``cfg`` with the batch size of a user's DataLoader (times the ranks under a
    DistributedSampler: the batch of all ranks together), whose batches are the run's: the
    schedules count steps with it, and the run records it."""
    size = getattr(train, "batch_size", None) if isinstance(train, LoaderData) else None
    if size is None:
        return cfg
    size *= world if train.sharded else 1
    if size != cfg.batch_size and note:
        logger.info(f"note: the DataLoader's batches are the run's: batch_size={size}, not {cfg.batch_size}")
    return dataclasses.replace(cfg, batch_size=size) if size != cfg.batch_size else cfg


def needs_binary_data(family) -> bool:
    """Whether ``family``'s likelihood models binary data: it declares ``binary_data = True``
    (the Bernoulli likelihood does). The one place that reads the declaration; a family without
    a ``likelihood`` (or one that declares nothing) is taken to model its data as given."""
    return traits(family).binary_data


def resolve_binarize(cfg: TrainConfig, family, warn: bool = False) -> TrainConfig:
    """``cfg`` with ``binarize="auto"`` made concrete for ``family``: ``dynamic`` when its
    likelihood needs binary data (:func:`needs_binary_data`), else ``none`` (a continuous
    likelihood sees the data as given). The resolved mode is what a run records, so evaluation
    and figures read a concrete one. An explicit ``static``/``dynamic`` with a likelihood that
    does not need binary data is kept, with a warning when ``warn``."""
    binary = needs_binary_data(family)
    if cfg.binarize == "auto":
        return dataclasses.replace(cfg, binarize="dynamic" if binary else "none")
    likelihood = traits(family).likelihood
    if cfg.binarize != "none" and not binary and likelihood is not None and warn:
        logger.warning(
            f"warning: binarize={cfg.binarize!r} turns the data into 0/1 images, but the likelihood "
            f"{type(likelihood).__name__} models the data as given (not binary data); leave "
            f"binarize='auto' (here: none) unless binary images are what you mean to model"
        )
    return cfg


def model_dtype(family) -> torch.dtype:
    """The floating dtype of ``family``'s parameters (the default dtype when it has none)."""
    p = next((p for p in family.parameters() if p.is_floating_point()), None)
    return p.dtype if p is not None else torch.get_default_dtype()


def as_dtype(ds: Batch, dtype: torch.dtype) -> Batch:
    """Floating data (``x`` and a condition ``c``) cast to the model's dtype (float64 arrays for
    a float32 model): once, at the boundary, instead of a dtype error deep inside a matrix product."""
    cast = {
        name: t.to(dtype)
        for name, t in (("x", ds.x), ("c", ds.c))
        if t is not None and t.is_floating_point() and t.dtype != dtype
    }
    return ds.replace(**cast) if cast else ds


@dataclass
class TrainData:
    """The data of a run, checked; on the device, or read batch by batch (``streamed``)."""

    train: Batch  # statically binarized if asked; the labelled mask set by --labels (or a StreamedData)
    val: Batch  # binarized by the evaluation rule (data.for_evaluation)
    labelled_idx: torch.Tensor | None = None  # semi-supervised: the labelled training points
    labelled_batch_size: int = 0
    device: torch.device = torch.device("cpu")
    likelihood_check: object = None  # checks a streamed batch against the likelihood's support
    on_host: bool = False  # in host memory (too large for the GPU): each batch is moved when used
    dtype: torch.dtype = torch.float32  # the model's: floating data are cast to it (a streamed batch when read)

    @property
    def n(self) -> int:
        return len(self.train)

    @property
    def streamed(self) -> bool:
        return not isinstance(self.train, Batch)

    @property
    def iterated(self) -> bool:
        """Read by iterating an iterable Dataset or a DataLoader (:class:`~pyro_vae.data.loaders.LoaderData`)."""
        return isinstance(self.train, LoaderData)

    @property
    def moved_per_batch(self) -> bool:
        return self.streamed or self.on_host

    @property
    def pinned(self) -> bool:
        """Batches read in pinned host memory, copied to the GPU without blocking."""
        return self.streamed and self.device.type == "cuda"

    @property
    def resume_note(self) -> str | None:
        """What a resumed run cannot promise about these data, or None when it continues bit for bit."""
        return getattr(self.train, "resume_note", None)


def _check_x(family, ds: Batch, cfg: TrainConfig, seed_offset: int, what: str) -> torch.Tensor:
    """Check the data at the boundary, cast floating data to the model's dtype, binarize
    statically (seeded) where asked, and check the result against the likelihood's support, so
    bad data fail here with a clear message."""
    if len(ds) == 0:
        raise DataError(f"{what} data are empty")
    ds = as_dtype(ds, model_dtype(family))
    check_finite(ds.x, f"{what} data", allow_nan=traits(family).missing_values)
    x = binarize(ds.x, seed=cfg.seed + seed_offset) if cfg.binarize == "static" else ds.x
    # dynamic binarization: check one binarized draw (binarize() checks the [0, 1] range)
    sample = binarize(x, seed=0) if cfg.binarize == "dynamic" else x
    try:
        check_data(family, sample)
    except ValueError as e:
        raise DataError(f"{what} data: {e}") from None
    return x


def prepare_data(family, train: Batch, val: Batch, cfg: TrainConfig, device) -> TrainData:
    """Checked training and validation data on ``device``; the labelled subset drawn (seeded)
    when ``cfg.labels`` is set. A streamed training split (:class:`pyro_vae.data.streaming.StreamedData`,
    or :class:`pyro_vae.data.loaders.LoaderData`) stays where it is: its first rows are checked
    here, every batch when it is read.
    ``cfg.binarize="auto"`` is resolved for ``family`` (:func:`resolve_binarize`)."""
    if cfg.binarize == "auto":
        cfg = resolve_binarize(cfg, family)
    streamed = not isinstance(train, Batch)
    if cfg.augment_shift and len(train.data_shape) != 3:
        raise DataError(
            f"augment_shift={cfg.augment_shift} moves images: it needs image data (C, H, W), got data "
            f"of shape {tuple(train.data_shape)}; leave it at 0"
        )
    if cfg.augment_shift:
        check_shift(cfg.augment_shift, train.data_shape)  # before any work, not at the first batch
    for ds, what in ((train.head(16) if streamed else train, "training"), (val, "validation")):
        try:
            family.check_batch(ds)
        except ValueError as e:
            raise ValueError(f"{what} data: {e}") from None
    if streamed:
        if cfg.binarize == "static":
            raise DataError(
                "binarize='static' needs the whole training set in memory; with streamed data use "
                "binarize='dynamic', or binarize the file once beforehand and use binarize='none'"
            )
        _check_x(family, train.head(256), cfg, 0, "training")
    else:
        train = as_dtype(train, model_dtype(family)).replace(x=_check_x(family, train, cfg, 0, "training"))
    check_finite(val.x, "validation data", allow_nan=traits(family).missing_values)
    val = for_evaluation(val, cfg.binarize)
    val = as_dtype(val, model_dtype(family)).replace(
        x=_check_x(family, val, dataclasses.replace(cfg, binarize="none"), 1, "validation")
    )
    labelled_idx, per_batch = None, 0
    t = traits(family)
    if cfg.labels is not None and not t.partial_labels:  # a mask it would ignore
        raise DataError(
            f"labels={cfg.labels} keeps only some training labels, but {type(family).__name__} does "
            f"not train on partly labelled data (a family with partial_labels = True does); "
            f"leave labels unset"
        )
    if cfg.labels is not None and streamed and train.y is None:
        raise DataError(
            f"labels={cfg.labels} draws the labelled subset from the training labels, which {train!r} "
            f"does not hold in memory (it is read batch by batch); use a map-style Dataset that fits "
            f"in memory, or leave labels unset"
        )
    if cfg.labels is not None:
        train = select_labels(train, cfg.labels, seed=cfg.seed, num_classes=t.num_classes)
        labelled_idx = train.labelled.nonzero().reshape(-1).to(device)
        per_batch = cfg.labelled_batch_size
        if per_batch is None:
            per_batch = min(len(labelled_idx), max(1, cfg.batch_size // 2))
    check = partial(check_data, family)
    device, dtype = torch.device(device), model_dtype(family)
    if not streamed and device.type == "cuda":
        if train.x.numel() * train.x.element_size() > memory_budget(device):
            # more than the GPU can hold beside the model: the data stay in host memory, batches move
            return TrainData(train, val.to(device), labelled_idx, per_batch, device, check, on_host=True, dtype=dtype)
    return TrainData(
        train if streamed else train.to(device), val.to(device), labelled_idx, per_batch, device, check, dtype=dtype
    )


__all__ = [
    "splits_of",
    "origin_of_data",
    "resolve_batch_size",
    "needs_binary_data",
    "resolve_binarize",
    "model_dtype",
    "as_dtype",
    "TrainData",
    "prepare_data",
]

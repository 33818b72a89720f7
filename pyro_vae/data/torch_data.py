"""torch Datasets and DataLoaders as pyro-vae data: the one rule for how each is read.

* A **map-style** ``Dataset`` (``__getitem__`` and ``__len__``) that fits the memory budget
  (:func:`pyro_vae.devices.memory_budget`, measured as 32-bit floats from its first item) is read
  once, in one pass, into a :class:`~pyro_vae.data.batch.Batch`: training then takes the fast
  path of data in memory (batches by indexing, no per-item work). One that does not fit (or
  ``stream="on"``) is streamed: a :class:`~pyro_vae.data.streaming.StreamedData` over a
  :class:`DatasetSource` reads each batch's items, in the batch's seeded order, by ``workers``
  processes, so a resumed run continues bit for bit.
* An **iterable** ``Dataset`` or a **DataLoader** you built is iterated each epoch
  (:class:`~pyro_vae.data.loaders.LoaderData`), in its own order.
* Validation and test data are always read into memory (:func:`to_memory`).

Items are read by :mod:`pyro_vae.data.items` (a tensor, ``(x, y)``, ``(x, y, c)`` or a dict);
every read of rows runs on random streams seeded from the rows (:func:`~pyro_vae.data.rng.seeded`),
so a random transform draws the same numbers in a worker or in the training process, before or
after a resume, and never moves the run's Monte Carlo draws. Read into memory, a random
transform is drawn once; streamed, anew for each batch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from pyro_vae.data.batch import Batch, DataError
from pyro_vae.data.items import as_batch, collate, concat
from pyro_vae.data.rng import rows_seed, seeded
from pyro_vae.data.loaders import LoaderData
from pyro_vae.data.streaming import StreamedData, should_stream
from pyro_vae.devices import memory_budget

CHUNK = 1024  # items read at once when a data set is read into memory


def class_path(obj) -> str:
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ in ("builtins", "__main__") else f"{cls.__module__}.{cls.__qualname__}"


def is_map_style(obj) -> bool:
    """A map-style data set: items by position (``__getitem__``) and a length, not an iterable
    torch Dataset, a tensor or an array."""
    if isinstance(obj, (IterableDataset, DataLoader, Batch, StreamedData, str, bytes, dict, tuple)):
        return False  # a tuple is more likely (x, y) than a data set: TensorDataset(x, y) says it
    if torch.is_tensor(obj) or isinstance(obj, np.ndarray):
        return False
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__")


def origin_of(obj) -> str | None:
    """Where data given to pyro-vae came from, in words (the class a command needs to rebuild
    them), or None for tensors and pyro-vae's own Batches."""
    if isinstance(obj, DataLoader):
        return f"a torch DataLoader over {class_path(obj.dataset)}"
    if isinstance(obj, LoaderData):
        return obj.origin
    if isinstance(obj, StreamedData):
        return getattr(obj.source, "origin", None)
    if isinstance(obj, IterableDataset):
        return f"an iterable torch Dataset {class_path(obj)}"
    if is_map_style(obj):
        return f"a map-style {'torch Dataset' if isinstance(obj, Dataset) else 'data set'} {class_path(obj)}"
    return None


class DatasetSource:
    """A map-style Dataset as rows for :class:`~pyro_vae.data.streaming.StreamedData`: the items
    of a batch are read when the batch is needed and collated into a Batch, on random streams
    seeded from their positions (:func:`~pyro_vae.data.rng.rows_seed`)."""

    def __init__(self, dataset, what: str = "training data"):
        self.dataset, self.origin = dataset, origin_of(dataset)
        self.what = f"{what} ({class_path(dataset)})"
        self.num_rows = len(dataset)
        if self.num_rows == 0:
            raise DataError(f"{self.what} hold no data points: the Dataset's length is 0")
        first = self.read([0])
        self.data_shape = first.data_shape
        self.point_bytes = 4 * (first.x[0].numel() + (0 if first.c is None else first.c[0].numel()))
        self.scale = ""

    def __len__(self):
        return self.num_rows

    @property
    def float_bytes(self) -> int:
        return self.num_rows * self.point_bytes

    def read(self, rows) -> Batch:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        with seeded(rows_seed(rows)):
            items = [self.dataset[int(i)] for i in rows]
        return collate(items, self.what, rows)


def from_torch(obj, *, stream: str = "auto", workers: int = 0, what: str = "training data"):
    """The training split pyro-vae reads from ``obj`` (see the module docstring): a Batch (a
    map-style Dataset that fits, read once; a tensor or array as ``x``), a StreamedData (a
    map-style Dataset too large for memory, or ``stream="on"``) or a LoaderData (an iterable
    Dataset or a DataLoader). A Batch, StreamedData or LoaderData is returned as it is.
    ``workers``: processes that read items ahead of use (a map-style or iterable Dataset)."""
    if isinstance(obj, (Batch, StreamedData, LoaderData)):
        return obj
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise DataError(f"option workers must be a whole number >= 0, got {workers!r}")
    if isinstance(obj, (DataLoader, IterableDataset)):
        return LoaderData(obj, what, workers=workers, origin=origin_of(obj))
    if not is_map_style(obj):
        return to_memory(obj, what)
    source = DatasetSource(obj, what)
    if should_stream(source, stream):
        return StreamedData(source, workers=workers)
    return read_rows(source, workers)


def read_rows(source: DatasetSource, workers: int = 0) -> Batch:
    """Every row of ``source`` in memory, read in chunks (by ``workers`` processes when > 0)."""
    chunks = [torch.arange(i, min(i + CHUNK, len(source))) for i in range(0, len(source), CHUNK)]
    return concat(list(StreamedData(source, workers=workers).loader(chunks)))


def to_memory(obj, what: str = "validation data", workers: int = 0) -> Batch:
    """``obj`` read into memory as a Batch: a map-style or iterable Dataset or a DataLoader (one
    pass), a tensor or array (as ``x``), or a Batch (as it is). A DataError when it would take
    more than the memory budget (:func:`pyro_vae.devices.memory_budget`)."""
    if isinstance(obj, Batch):
        return obj
    if isinstance(obj, StreamedData):
        return obj.to_batch()
    if torch.is_tensor(obj) or isinstance(obj, np.ndarray):
        return as_batch(obj, what=what)
    if isinstance(obj, (DataLoader, IterableDataset, LoaderData)):
        data = obj if isinstance(obj, LoaderData) else LoaderData(obj, what, workers=workers)
        return data.to_batch()
    if not is_map_style(obj):
        hint = " (for tensors x and y: TensorDataset(x, y) or Batch(x, y))" if isinstance(obj, tuple) else ""
        raise DataError(
            f"{what} is a {class_path(obj)}{hint}; pass a torch Dataset (map-style or iterable), a "
            f"DataLoader, a tensor or array (x), or a pyro_vae Batch"
        )
    source = DatasetSource(obj, what)
    if source.float_bytes > memory_budget():
        raise DataError(
            f"{source.what}: {len(source)} data points would take {source.float_bytes / 2**30:.3g} GiB, "
            f"more than the {memory_budget() / 2**30:.3g} GiB this machine holds comfortably; they are "
            f"read into memory, so keep them smaller (a subset)"
        )
    return read_rows(source, workers)


__all__ = ["DatasetSource", "from_torch", "to_memory", "origin_of", "is_map_style", "class_path", "read_rows", "CHUNK"]

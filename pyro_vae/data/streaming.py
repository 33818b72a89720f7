"""Training data larger than memory, read from disk batch by batch.

``load_data(PATH, stream="on")`` for a ``.npy`` file (memory-mapped) or a folder of images (each
file opened when its batch needs it) gives a training split that is a :class:`StreamedData`:
only the labels (and the list of files) are in memory; :func:`pyro_vae.fit` reads each batch's
rows, in the batch's order, through a ``torch.utils.data.DataLoader`` (``workers`` processes
read ahead; 0 reads in the training process), checks them, moves them to the device and
binarizes them there. ``stream="auto"`` (the CLI's default) streams when the data as 32-bit floats
would take more than half the memory available (:func:`memory_budget`); the validation split is
loaded into memory (keep it small with ``--val-fraction``).

Batches are drawn exactly as for data in memory (the same shuffled indices from the same seeded
generator, the same per-batch binarization), so on data that fits, the two paths train to the
same parameters (``tests/test_streaming.py``). Under ``torchrun`` every rank draws the same
permutation and reads only its own slice of each batch: the work of a ``DistributedSampler``,
arranged so that the sum over ranks is the single-process batch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from pyro_vae.devices import MEMORY_SHARE, memory_budget  # noqa: F401 (the streaming decision reads them)


def _layout(a: np.ndarray) -> np.ndarray:
    """Rows as (N, C, H, W) for images stored (N, H, W) or (N, H, W, C), as ``load_array_file`` does."""
    if a.ndim == 4 and a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):
        return a.transpose(0, 3, 1, 2)
    if a.ndim == 3:
        return a[:, None]
    return a


class NpySource:
    """The rows of a ``.npy`` file, memory-mapped (opened again in each worker process)."""

    def __init__(self, path):
        from pyro_vae.data.sources import NPY_MAGIC, ZIP_MAGICS, file_head, array_scale
        from pyro_vae.data.batch import DataError

        self.path = Path(path)
        head = file_head(self.path, "a NumPy .npy file")
        if head.startswith(ZIP_MAGICS) or not head.startswith(NPY_MAGIC):
            raise DataError(f"{self.path} is not a NumPy .npy file (no .npy signature); write it with numpy.save")
        try:
            array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise DataError(
                f"{self.path} cannot be memory-mapped ({str(e).splitlines()[0]}); save a numeric array with numpy.save"
            ) from None
        if array.dtype.kind not in "biuf":
            raise DataError(f"{self.path} has dtype {array.dtype}; pyro-vae needs an array of numbers")
        if array.ndim < 2 or array.shape[0] == 0:
            raise DataError(
                f"{self.path}: need an array of shape (N, ...) with one data point per row, got {array.shape}"
            )
        self.num_rows = int(array.shape[0])
        self.data_shape = tuple(_layout(array[:1]).shape[1:])
        self.what = str(self.path)
        self.scale = array_scale(array.dtype)
        self._array = array

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_array"] = None  # a memory map is not copied into worker processes: each opens its own
        return state

    def __len__(self):
        return self.num_rows

    @property
    def float_bytes(self) -> int:
        return self.num_rows * math.prod(self.data_shape) * 4

    def read(self, rows) -> torch.Tensor:
        """The rows ``rows`` (in that order) as float32, uint8 scaled to [0, 1]."""
        from pyro_vae.data.batch import to_float_images

        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        a = _layout(np.asarray(self._array[np.asarray(rows, dtype=np.int64)]))
        return to_float_images(np.ascontiguousarray(a), f"{self.what} (rows {_rows_text(rows)})")


class ImageFolderSource:
    """The image files below a folder (sub-folders become labels), each read when asked for, and
    scaled by the kind of the first (:func:`pyro_vae.data.sources.read_image`): a file of another kind, or
    of another shape, is refused when read."""

    def __init__(self, path):
        from pyro_vae.data.sources import image_files, image_scale

        self.path = Path(path)
        self.files, classes = image_files(self.path)
        index = {c: i for i, c in enumerate(classes)}
        self.labels = (
            torch.tensor([index[p.parent.relative_to(self.path).as_posix()] for p in self.files])
            if len(classes) > 1
            else None
        )
        self.num_rows = len(self.files)
        first = self._read(0)
        self.kind, self.mode = first[1], first[2]
        self.data_shape = tuple(first[0].shape)
        self.scale = image_scale(self.kind)
        self.what = str(self.path)

    def __len__(self):
        return self.num_rows

    @property
    def float_bytes(self) -> int:
        return self.num_rows * math.prod(self.data_shape) * 4

    def _read(self, i: int):
        from pyro_vae.data.sources import read_image

        return read_image(self.files[int(i)])

    def _image(self, i: int) -> np.ndarray:
        from pyro_vae.data.batch import DataError
        from pyro_vae.data.sources import check_image_kind

        arr, kind, mode = self._read(i)
        check_image_kind((self.files[0], self.kind, self.mode), (self.files[int(i)], kind, mode), self.path)
        if tuple(arr.shape) != self.data_shape:
            raise DataError(
                f"image {self.files[int(i)]} has shape {arr.shape} but the first image of {self.path} "
                f"has {self.data_shape}; resize them to one shape"
            )
        return arr

    def read(self, rows) -> torch.Tensor:
        from pyro_vae.data.sources import images_as_x

        return images_as_x([self._image(i) for i in np.asarray(rows, dtype=np.int64)], self.kind)


def _rows_text(rows) -> str:
    rows = np.asarray(rows).reshape(-1)
    return ", ".join(map(str, rows[:5])) + (", ..." if rows.size > 5 else "")


class _Rows(torch.utils.data.Dataset):
    """A DataLoader's view of a StreamedData: item ``idx`` (a tensor of positions) is its rows."""

    def __init__(self, data: "StreamedData"):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        return self.data.read(idx)


class StreamedData:
    """A training split read from disk batch by batch (see the module docstring): ``source`` rows
    ``index`` (positions in the file), with labels ``y`` and the ``labelled`` mask in memory.

    A source reads rows as x (a tensor), or as a whole :class:`~pyro_vae.data.batch.Batch` with
    their own labels and conditions (a torch Dataset's items, :mod:`pyro_vae.data.torch_data`)."""

    streamed = True  # read batch by batch (what a run records)

    def __init__(self, source, index=None, y=None, labelled=None, workers: int = 0):
        self.source = source
        self.index = torch.arange(len(source)) if index is None else torch.as_tensor(index).long().cpu()
        self.y, self.labelled, self.workers = y, labelled, int(workers)

    def __len__(self):
        return int(self.index.numel())

    def __repr__(self):
        return f"StreamedData({self.source.what}, {len(self)} rows, data shape {self.data_shape})"

    @property
    def data_shape(self):
        return self.source.data_shape

    @property
    def num_labelled(self) -> int:
        if self.y is None:
            return 0
        return len(self) if self.labelled is None else int(self.labelled.sum())

    @property
    def c(self):
        return None

    @property
    def x(self):
        from pyro_vae.data.batch import DataError

        raise DataError(
            f"{self!r} is read batch by batch; use .subset(idx), .head(n) or .to_batch() (which loads "
            f"it all into memory)"
        )

    def replace(self, **fields) -> "StreamedData":
        unknown = set(fields) - {"y", "labelled", "workers"}
        if unknown:
            raise ValueError(
                f"a streamed data set keeps its images on disk; only y, labelled and workers can be "
                f"replaced, not {', '.join(sorted(unknown))}"
            )
        merged = {"y": self.y, "labelled": self.labelled, "workers": self.workers, **fields}
        return StreamedData(self.source, self.index, **merged)

    def read(self, idx):
        """The data points at positions ``idx``, a Batch of CPU tensors."""
        from pyro_vae.data.batch import Batch

        idx = torch.as_tensor(idx).long().cpu()
        got = self.source.read(self.index[idx].numpy())
        if isinstance(got, Batch):  # the source's own labels and conditions
            return got
        pick = lambda t: None if t is None else t[idx.to(t.device)].cpu()  # noqa: E731
        return Batch(got, pick(self.y), pick(self.labelled))

    def subset(self, idx):
        return self.read(idx)

    def head(self, n: int = 16):
        return self.subset(torch.arange(min(n, len(self))))

    def to_batch(self):
        """Everything in memory (for the commands that need the whole training split as a tensor)."""
        return self.subset(torch.arange(len(self)))

    def split(self, positions_train, positions_val):
        """(train, val): the train positions streamed, the validation positions loaded."""
        return (
            StreamedData(
                self.source,
                self.index[positions_train],
                None if self.y is None else self.y[positions_train],
                workers=self.workers,
            ),
            self.subset(positions_val),
        )

    def loader(self, index_batches, workers: int | None = None, pin_memory: bool = False):
        """An iterator of Batches for ``index_batches`` in order, read by ``workers`` processes
        ahead of use (0: in this process), in pinned memory with ``pin_memory`` (for a GPU)."""
        workers = self.workers if workers is None else workers
        if workers <= 0:
            return (self.read(idx) for idx in index_batches)
        # its own generator: a DataLoader draws its workers' base seed from it, which would otherwise
        # come from the global random stream (the Monte Carlo draws) and change the run
        return iter(
            torch.utils.data.DataLoader(
                _Rows(self),
                batch_size=None,
                sampler=list(index_batches),
                num_workers=workers,
                prefetch_factor=2,
                pin_memory=pin_memory,
                generator=torch.Generator().manual_seed(0),
            )
        )


def should_stream(source, stream: str, device="cpu") -> bool:
    """Whether to stream ``source``: ``on``, ``off``, or ``auto`` (more than the memory budget)."""
    if stream not in ("auto", "on", "off"):
        raise ValueError(f"stream must be auto, on or off, got {stream!r}")
    if stream != "auto":
        return stream == "on"
    return source.float_bytes > memory_budget(device)


__all__ = ["StreamedData", "NpySource", "ImageFolderSource", "memory_budget", "should_stream", "MEMORY_SHARE"]

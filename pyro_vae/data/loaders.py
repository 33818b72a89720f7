"""Data that are iterated, not indexed: an iterable torch ``Dataset`` or a ``DataLoader`` you
built, read anew every epoch, in the order it gives (:class:`LoaderData`).

* An **iterable Dataset** yields items (:mod:`pyro_vae.data.items`); pyro-vae batches them with
  the run's ``batch_size`` in a DataLoader of its own (``workers`` processes; each worker runs the
  whole iterator, so a Dataset read by several shards itself with
  ``torch.utils.data.get_worker_info()``).
* A **DataLoader** yields batches (a tensor, a tuple ``(x, y[, c])`` or a dict of tensors): its
  batch size, sampler, workers, ``pin_memory`` and ``collate_fn`` are the user's. Its sampler's
  ``set_epoch`` (a ``DistributedSampler``'s) is called each epoch with a number drawn from the
  run's data generator, the same on every rank and restored on resume.

The loader's randomness (a shuffling sampler, the workers' seeds, a transform run in this
process) draws from random streams of its own, seeded each epoch from the run's data generator
(:class:`~pyro_vae.data.rng.Streams`): it never moves the run's Monte Carlo draws, a run is
reproduced by its seed, and every rank under ``torchrun`` draws the same order.

The number of data points N (the ELBO's N/B scale) is ``len(dataset)``, or counted in one pass
when the data set has no length. Under ``torchrun`` a DataLoader with a ``DistributedSampler``
gives each rank its own batches; otherwise every rank reads every batch and trains on its slice
(``rank::world``).

**Resume.** A resumed run reads the interrupted epoch again from its start, with the same seed,
and skips the batches it had done. It continues bit for bit when the loader's randomness comes
from the global streams (as above) or from a ``DistributedSampler``. It cannot when the data
keep state of their own that a checkpoint does not hold: a sampler or transform with its own
``torch.Generator``, an iterable that goes on where its last pass stopped, data that change on
disk. :attr:`LoaderData.resume_note` says so; training logs it as a warning when such a run resumes.
"""

from __future__ import annotations

import itertools

import torch
from torch.utils.data import DataLoader, DistributedSampler

from pyro_vae.data.batch import Batch, DataError
from pyro_vae.data.items import batch_of, collate, concat
from pyro_vae.data.rng import Streams
from pyro_vae.devices import memory_budget

HEAD = 256  # data points kept from the first batches: the data shape and the checks before training


class LoaderData:
    """A training split read by iterating ``source`` (an iterable Dataset or a DataLoader) once
    per epoch; ``what`` names it in messages, ``origin`` is what the run records of it."""

    streamed = True  # read batch by batch (what a run records)
    y = labelled = c = None  # no labels in memory: each batch brings its own
    num_labelled = 0

    def __init__(self, source, what: str = "training data", workers: int = 0, origin: str | None = None):
        self.source, self.workers, self.origin = source, int(workers), origin
        self.is_loader = isinstance(source, DataLoader)
        self.what = f"{what} ({origin or type(source).__name__})"
        sampler = getattr(source, "batch_sampler", None) or getattr(source, "sampler", None)
        self.sampler = getattr(sampler, "sampler", sampler)  # a BatchSampler's sampler
        self.sharded = isinstance(self.sampler, DistributedSampler)  # each rank reads its own share
        self._head = self._first(HEAD)
        self.n = self._length()

    def __len__(self):
        return self.n

    def __repr__(self):
        return f"LoaderData({self.what}, {self.n} data points, data shape {self.data_shape})"

    @property
    def data_shape(self):
        return self._head.data_shape

    @property
    def batch_size(self) -> int | None:
        """The batch size of a user's DataLoader, or None for an iterable Dataset (the run's then)."""
        return getattr(self.source, "batch_size", None) if self.is_loader else None

    @property
    def resume_note(self) -> str:
        kind = "a DataLoader" if self.is_loader else "an iterable Dataset"
        return (
            f"warning: {self.what} is {kind}: the resumed epoch reads it again from its start and skips the "
            f"batches done; the run continues as it would have only if the data come again in the same order "
            f"(their randomness from the global random streams or a DistributedSampler, which the run seeds; "
            f"not a generator of their own, nor state kept from pass to pass). A map-style Dataset resumes "
            f"exactly"
        )

    def _iterate(self, batch_size: int, pin_memory: bool = False, seed: int = 0):
        """The Batches of one pass over the data. The loader's own randomness (a shuffling
        sampler's order, the workers' seeds, a transform run here) draws from streams of its own
        seeded with ``seed`` (:class:`~pyro_vae.data.rng.Streams`), never from the run's."""
        if self.is_loader:
            loader, name = self.source, "batch"
        else:
            loader, name = (
                DataLoader(
                    self.source,
                    batch_size=batch_size,
                    collate_fn=self._collate,
                    num_workers=self.workers,
                    pin_memory=pin_memory,
                ),
                None,
            )
        streams = Streams(seed)
        with streams.active():
            batches = iter(loader)
        for k in itertools.count():
            with streams.active():
                item = next(batches, None)
            if item is None:
                return
            yield batch_of(item, f"{self.what}, batch {k}") if name else item

    def _collate(self, items):
        return collate(items, self.what)

    def _first(self, n: int) -> Batch:
        parts, got = [], 0
        for part in self._iterate(n):
            parts.append(part)
            got += len(part)
            if got >= n:
                break
        if not parts:
            raise DataError(f"{self.what} yielded no data points")
        return concat(parts)

    def _length(self) -> int:
        dataset = self.source.dataset if self.is_loader else self.source
        try:
            return len(dataset)
        except TypeError:  # no __len__: count one pass
            return sum(len(part) for part in self._iterate(HEAD))

    def head(self, n: int = 16) -> Batch:
        """The first ``n`` data points (of the first batches read)."""
        return self._head if n >= len(self._head) else self._head.subset(slice(0, n))

    def to_batch(self) -> Batch:
        """One pass in memory (validation data, or a command that needs the whole split); a
        DataError when it grows past the memory budget (:func:`pyro_vae.devices.memory_budget`)."""
        parts, size, budget = [], 0, memory_budget()
        for part in self._iterate(HEAD):
            parts.append(part)
            size += part.x.numel() * part.x.element_size()
            if size > budget:
                raise DataError(
                    f"{self.what} would take more than the {budget / 2**30:.3g} GiB this machine "
                    f"holds comfortably; they are read into memory, so keep them smaller"
                )
        return concat(parts)

    def epoch(
        self, batch_size: int, generator, rank: int = 0, world: int = 1, first: int = 0, pin_memory: bool = False
    ):
        """Yield ``(size, batch)`` for one epoch from batch ``first`` on: this rank's batch and
        the number of data points in the batch of all ranks together. A DistributedSampler is set
        to an epoch drawn from ``generator``; without one each rank takes its slice of every batch."""
        seed = int(torch.randint(0, 2**31, (1,), generator=generator, device=generator.device).item())
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(seed)
        for i, part in enumerate(self._iterate(batch_size, pin_memory, seed)):
            if i < first:
                continue  # done before the interruption
            if self.sharded:
                yield len(part) * world, part
            else:
                yield len(part), part if world == 1 else part.subset(slice(rank, None, world))


__all__ = ["LoaderData", "HEAD"]

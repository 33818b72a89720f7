"""The data's own random streams, kept apart from the run's.

A torch Dataset's random transform, a shuffling sampler or a DataLoader's worker seeds draw from
the global random streams (torch's CPU generator, Python's ``random``, NumPy's). Left there, they
would move the run's Monte Carlo draws, and depend on where and when the data are read. Here every
read of data runs on streams of its own, seeded from something the run controls:

* :func:`seeded`: a body run on fresh streams seeded with one number (reading rows of a
  map-style Dataset: the number is :func:`rows_seed` of the rows, so the same rows draw the same
  transforms in a worker or in the training process, before or after a resume);
* :class:`Streams`: streams seeded once (an epoch of a DataLoader, from the run's data generator)
  and swapped in around each use, so their state runs on from batch to batch between the steps.
"""

from __future__ import annotations

import contextlib
import hashlib
import random

import numpy as np
import torch


def capture() -> tuple:
    """The global random streams' states: torch's CPU generator, Python's, NumPy's."""
    return torch.get_rng_state(), random.getstate(), np.random.get_state()


def restore(states: tuple) -> None:
    torch.set_rng_state(states[0])
    random.setstate(states[1])
    np.random.set_state(states[2])


def seed_all(seed: int) -> None:
    """Seed the global streams (torch's CPU generator only: the GPU's stay the run's)."""
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


@contextlib.contextmanager
def seeded(seed: int):
    """Run the body on streams seeded with ``seed``; the caller's streams are given back after it."""
    caller = capture()
    seed_all(seed)
    try:
        yield
    finally:
        restore(caller)


def rows_seed(rows) -> int:
    """A seed for reading ``rows`` (positions in a data set): the same rows, the same seed."""
    data = np.ascontiguousarray(np.asarray(rows, dtype=np.int64)).tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


class Streams:
    """Global streams of their own, seeded with ``seed``: :meth:`active` swaps them in for its
    body and keeps where they got to for the next use (about 20 us a swap)."""

    def __init__(self, seed: int):
        with seeded(seed):
            self.state = capture()

    @contextlib.contextmanager
    def active(self):
        caller = capture()
        restore(self.state)
        try:
            yield
        finally:
            self.state = capture()
            restore(caller)


__all__ = ["capture", "restore", "seed_all", "seeded", "rows_seed", "Streams"]

"""Callbacks: code of the user's that a run calls between its epochs.

``fit(..., callbacks=[...])`` takes instances of :class:`Callback`, a base class whose hooks do
nothing; a callback overrides the ones it needs. The hooks and what each receives, in the order
a run calls them (epochs counted from 1, as ``metrics.jsonl`` counts them)::

    on_run_start(run)              # run: RunInfo (folder, record, config, family, validation data, ...)
    for each epoch trained:
        on_epoch_start(epoch)
        on_checkpoint(path)        # checkpoint_best.pt when the epoch improved, then checkpoint_last.pt
        on_epoch_end(epoch, row)   # row: the epoch's metrics row, validation included
    on_run_end(summary, error)     # however the run ended

For example, a callback that keeps the validation ELBO of each epoch::

    class Elbos(Callback):
        def on_run_start(self, run):
            self.elbos = {}

        def on_epoch_end(self, epoch, row):
            self.elbos[epoch] = row["val_elbo"]

    fit(family, data, config, run_dir, callbacks=[Elbos()])

A resumed run starts again with ``on_run_start`` (``run.resumed`` true, ``run.start_epoch`` the
first epoch it trains). ``on_checkpoint`` comes only with a run folder; the checkpoint a Ctrl-C
or SIGTERM writes inside an epoch is not announced (``on_run_end`` follows, with the interrupt
as ``error``). Validation is part of the epoch: its values are in ``row`` (``val_elbo``, the
family's measures as ``val_NAME``).

**Rules.** Nothing is called per step, so a step is as fast with callbacks as without. Each
hook runs with the random streams (torch's, Python's, CUDA's) saved and put back, so a run is
the same, bit for bit, with or without callbacks (that leave the family alone). Under DDP rank 0
alone calls them. Hooks are called in the order of the list.

**A failing callback.** A hook that raises stops the run as an interrupt does: the failure is
said in one line through the ``pyro_vae`` logger (naming the callback and the hook), every
started callback gets ``on_run_end(None, error)``, and :class:`CallbackError` is raised from the
callback's exception. Hooks come only between epochs (``on_epoch_start`` before the epoch's
first step, the others after its checkpoint is written), never while a checkpoint is written,
so the last checkpoint stays whole and ``resume=True`` continues the run from the epoch after
it. A failure in ``on_run_end`` after a finished run raises :class:`CallbackError` too (the
run's files are complete); after another error it is only said, and the first error goes on.
"""

from __future__ import annotations

import logging
import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunInfo:
    """What ``on_run_start`` receives.

    * ``folder``: the run folder (a :class:`~pyro_vae.runs.folder.RunDir`), None when ``fit`` writes nothing.
    * ``record``: the run's record as ``config.json`` holds it (``model``, ``train``, ``data``,
      ``command``, ``versions``, ``resumes``); without a run folder, ``{"train": the config's fields}``.
    * ``config``: the :class:`~pyro_vae.config.TrainConfig` (``binarize`` resolved).
    * ``family``: the model being trained; ``val``: the validation data (a Batch, on the device).
    * ``start_epoch``: the first epoch this call trains (1 for a new run); ``epochs``: the last.
    * ``resumed``: whether the run continues from a checkpoint.
    """

    folder: Any
    record: dict
    config: Any
    family: Any
    val: Any
    start_epoch: int
    epochs: int
    resumed: bool


class Callback:
    """The base class of callbacks: every hook does nothing. Override the ones you need; see
    :mod:`pyro_vae.training.callbacks` for the order of the calls and what a failure does."""

    def on_run_start(self, run: RunInfo) -> None:
        """Before the first epoch (after a resumed run's checkpoint is loaded). ``run``: :class:`RunInfo`."""

    def on_epoch_start(self, epoch: int) -> None:
        """Before the first step of ``epoch`` (1, 2, ...)."""

    def on_checkpoint(self, path) -> None:
        """After a checkpoint file is written whole at the end of an epoch: ``path`` (a
        ``pathlib.Path``) is ``checkpoint_best.pt`` when the epoch improved, then ``checkpoint_last.pt``."""

    def on_epoch_end(self, epoch: int, row: dict) -> None:
        """After ``epoch`` is validated and saved (the family in eval mode). ``row`` (a copy): the epoch's line of
        ``metrics.jsonl``: ``epoch``, ``step``, ``train_loss``, ``val_elbo`` and the family's
        measures as ``val_NAME``, ``kl_weight``, ``lr`` (with a schedule), ``images_per_s``, ``time_s``."""

    def on_run_end(self, summary: dict | None, error: BaseException | None) -> None:
        """Once, however the run ended, to every callback whose ``on_run_start`` returned.
        ``summary``: ``summary.json``'s content (with the test metrics when ``fit`` evaluated
        them) when the run finished, else None; ``error``: what stopped it (a
        :class:`~pyro_vae.training.signals.TrainingInterrupted`, ``TrainingDiverged``, a
        :class:`CallbackError`, ...), None when it finished."""


class CallbackError(RuntimeError):
    """A callback raised: the message names the callback and the hook and says what stands of
    the run; the callback's exception is the ``__cause__``."""


def check_callbacks(callbacks) -> list:
    """``callbacks`` as a list, each one a :class:`Callback` (refused in one line otherwise)."""
    callbacks = list(callbacks or ())
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(
                f"callbacks: {cb!r} is not a pyro_vae.Callback; subclass it (its hooks do nothing unless overridden)"
            )
    return callbacks


@contextmanager
def streams_kept():
    """The random streams of training (torch's, Python's and CUDA's) as they were, after the block."""
    python = random.getstate()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(python)


def name_of(callback) -> str:
    return type(callback).__name__


class Callbacks:
    """The callbacks of one run, called in order. ``stands``: a function that says what stands
    of the run when a callback fails (the last checkpoint, or none yet)."""

    def __init__(self, callbacks=(), stands=lambda: "nothing written (no run folder)"):
        self.callbacks, self.stands = list(callbacks), stands
        self.started, self.ended = [], False

    def __call__(self, hook: str, *args) -> None:
        """Call ``hook`` of every started callback; the first failure stops the run."""
        for cb in self.started:
            self._call(cb, hook, *args)

    def start(self, run: RunInfo) -> None:
        """``on_run_start`` of each callback in turn; a callback counts as started once it returned."""
        for cb in self.callbacks:
            self._call(cb, "on_run_start", run)
            self.started.append(cb)

    def _call(self, cb, hook: str, *args) -> None:
        try:
            with streams_kept():
                getattr(cb, hook)(*args)
        except Exception as e:
            what = f"callback {name_of(cb)}.{hook} failed ({type(e).__name__}: {e})"
            logger.error(what)
            raise CallbackError(f"{what}; {self.stands()}") from e

    def end(self, summary: dict | None = None, error: BaseException | None = None) -> None:
        """``on_run_end`` of every started callback, once. After a finished run (``error`` None)
        the first failure is raised, once every callback had its call; after an error each
        failure is only said, so the error that stopped the run goes on."""
        if self.ended:
            return
        self.ended = True
        failures = []
        for cb in self.started:
            try:
                with streams_kept():
                    cb.on_run_end(summary, error)
            except Exception as e:
                what = f"callback {name_of(cb)}.on_run_end failed ({type(e).__name__}: {e})"
                logger.error(what)
                failures.append((what, e))
        if failures and error is None:
            what, e = failures[0]
            raise CallbackError(f"{what}; the run had finished: its files are complete") from e


__all__ = ["Callback", "RunInfo", "CallbackError", "Callbacks", "check_callbacks", "streams_kept"]

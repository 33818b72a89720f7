"""Signals: Ctrl-C and SIGTERM become a request to stop at the next safe point.

While the loop runs, :class:`StopRequests` catches both signals and notes which came. The loop
looks after each step: inside an epoch it writes a checkpoint that says how far the epoch got
(:mod:`pyro_vae.training.resume`), then raises :class:`TrainingInterrupted`. A second Ctrl-C stops
at once; the last checkpoint on disk stays whole, as every write is atomic.
"""

from __future__ import annotations

import signal
import threading


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT (Ctrl-C) or SIGTERM; the message says whether a checkpoint
    to ``--resume`` from exists, or that none was written yet; ``signum`` says which signal (the
    CLI exits with 128 + signum)."""

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.signum = signum


class StopRequests:
    """SIGINT and SIGTERM handlers for the training loop: the first signal asks the loop to stop
    at the next safe point (after the current step: a checkpoint is written, then
    :class:`TrainingInterrupted` is raised); a second SIGINT stops at once (the last
    checkpoint on disk stays valid: every write is atomic). Installed only in the main thread,
    and only for a signal that is not ignored; on exit the handlers found are put back."""

    def __init__(self):
        self.signum = None
        self._saved = {}

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                # A signal ignored when training starts stays ignored: a job started in the
                # background (`cmd &`, nohup) has SIGINT ignored so that Ctrl-C in its terminal
                # reaches the foreground job only; catching it here would let that Ctrl-C stop
                # this run after all. None: a handler not set from Python, which signal.signal
                # could not put back: left alone too.
                if signal.getsignal(sig) in (signal.SIG_IGN, None):
                    continue
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved = {}


def after_interrupt(run, written: bool = False) -> str:
    """What an interrupted run leaves in its folder ``run`` (a :class:`~pyro_vae.runs.folder.RunDir`,
    or None): the checkpoint to resume from, or none yet."""
    if run is None:
        return "nothing written (no run folder)"
    if run.last.exists():
        return (
            f"checkpoint written: {run.last}" if written else f"the last checkpoint {run.last} stands"
        ) + "; continue with resume=True"
    return "no checkpoint was written yet; start again"


__all__ = ["TrainingInterrupted", "StopRequests", "after_interrupt"]

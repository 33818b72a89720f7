"""The library's messages on the console: the ``pyro_vae`` logger's records printed as the CLI
prints its own lines (stdout, the text alone), for the duration of a command."""

from __future__ import annotations

import logging
from contextlib import contextmanager

from pyro_vae.cli.messages import with_flags


class Console(logging.Handler):
    """Prints each message through ``say`` (a function of one string, e.g. ``print``)."""

    def __init__(self, say=print, level: int = logging.INFO):
        super().__init__(level)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.say(record.getMessage())
        except Exception:
            self.handleError(record)


@contextmanager
def console(say=print, level: int = logging.INFO):
    """The ``pyro_vae`` logger printing through ``say`` from ``level`` up, while the block runs."""
    logger, handler = logging.getLogger("pyro_vae"), Console(say, level)
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


def said_with_flags(flags: dict):
    """``say`` for the CLI: the library's advice (lines starting ``warning`` or ``note``) said with
    the command's flags (:func:`~pyro_vae.cli.messages.with_flags`), other lines as they are."""

    def say(message):
        print(with_flags(message, flags) if str(message).startswith(("warning", "note")) else message)

    return say


__all__ = ["Console", "console", "said_with_flags"]

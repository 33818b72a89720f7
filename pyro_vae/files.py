"""Files a run writes: one atomic-write helper, and one lock per run folder.

:func:`atomic_write` is the only way the library writes a run's files (config, metrics,
checkpoints, summary, evaluation results, figures, report). It

1. creates a temporary file in the target's folder with an unpredictable name, exclusively
   (``tempfile.mkstemp``: ``O_CREAT | O_EXCL``, so a planted file or symbolic link of that name
   makes it fail instead of being followed),
2. writes, flushes and ``fsync``\\ s it,
3. renames it over the target (``os.replace``: atomic; a symbolic link at the target is replaced,
   never followed), and
4. ``fsync``\\ s the folder, so the rename itself survives a power cut.

A reader therefore sees the old file or the new one, never a part of one, whatever kills the
writer. :class:`RunLock` makes a run folder single-writer: the second trainer is refused with
the holder's process id and host; a lock left by a process that died is recognised as stale
and taken over, and the message says so.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import tempfile
import time
from pathlib import Path

try:  # POSIX advisory locks: released by the kernel when the holder dies
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # pragma: no cover
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path, write, binary: bool = True) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a fresh, exclusively created temporary file
    beside it, which is fsynced and renamed over ``path``; then the folder is fsynced. The
    folder must exist. Returns ``path``."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; a run's files get the usual permissions
            os.fchmod(fd, _umask_mode())
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
    return path


def write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), binary=False)


def write_json(path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl(path, rows) -> Path:
    return write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def torch_save(obj, path) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def save_figure(fig, path, **kwargs) -> Path:
    """``fig.savefig`` through :func:`atomic_write` (the format from the file's suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **kwargs)
    return write_bytes(path, buf.getvalue())


def save_npz(path, **arrays) -> Path:
    import numpy as np

    return atomic_write(path, lambda f: np.savez(f, **arrays))


# ---------------------------------------------------------------------- the run-folder lock
class RunLocked(RuntimeError):
    """Another live process holds the run folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock on a run folder (the file ``RUN/.lock``, holding the holder's process
    id, host, start time and command).

    On POSIX the lock is an ``fcntl.flock`` on that file, which the kernel releases when the
    holder exits or dies; a clean exit empties the file, so one that still names a holder but is
    not locked was left by a killed run: it is stale and taken over (``stale`` then describes the
    previous holder). Elsewhere the file's existence is
    the lock and a holder on this host whose process is gone counts as stale."""

    NAME = ".lock"

    def __init__(self, folder, command: str | None = None):
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self.command = command
        self._fd = None
        self.stale = None

    def _info(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "command": self.command}

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    @staticmethod
    def describe(info: dict) -> str:
        if not info:
            return "an unknown process"
        return (f"process {info.get('pid', '?')} on host {info.get('host', '?')} (since {info.get('since', '?')}"
                + (f"; {info['command']}" if info.get("command") else "") + ")")

    def acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                holder = self._read()
                raise RunLocked(f"{self.folder} is in use by {self.describe(holder)}: one trainer per run folder. "
                                f"Wait for it to finish, stop it, or choose another --out folder") from None
            previous = self._read()
            if previous and previous.get("pid") != os.getpid():
                self.stale = previous
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(self._info()).encode())
            os.fsync(fd)
            self._fd = fd
            return self
        while True:  # pragma: no cover - without flock: the file's existence is the lock
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", -1))):
                    self.stale = holder
                    os.unlink(self.path)
                    continue
                raise RunLocked(f"{self.folder} is in use by {self.describe(holder)}; if that process is gone, "
                                f"delete {self.path}") from None
            os.write(fd, json.dumps(self._info()).encode())
            os.close(fd)
            return self

    def release(self) -> None:
        """Release the lock; the emptied file stays (removing it would let two processes lock
        two different files of one name), so an empty ``.lock`` means a clean exit."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        elif fcntl is None:  # pragma: no cover
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


__all__ = ["atomic_write", "write_bytes", "write_text", "write_json", "write_jsonl", "torch_save", "save_figure",
           "save_npz", "RunLock", "RunLocked"]

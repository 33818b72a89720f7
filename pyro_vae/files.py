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

A run folder never writes outside itself: :func:`run_folder` and :func:`open_in_run` create or
open the folders and files a run keeps open (``RUN/tensorboard``, ``RUN/.lock``) and refuse a
symbolic link planted there instead of following it. Every failure to write (a read-only folder,
a full disk, a name too long, a link) is a :class:`RunFileError`: one line naming the path, the
reason and the fix.
"""

from __future__ import annotations

import contextlib
import errno
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


class RunFileError(OSError, ValueError):
    """A file or folder of a run that cannot be written: a read-only folder, a full disk, a name
    too long for the file system, a symbolic link where the run writes. The message is one line
    naming the path and the fix; ``errno`` and ``filename`` are kept. A ``ValueError`` too, so
    the CLI reports it like every user error (exit 2)."""

    def __str__(self):  # the one line, not OSError's "[Errno N] ..." built from the fields
        return str(self.args[0]) if self.args else ""

    def then(self, advice: str) -> "RunFileError":
        """The same error with ``advice`` added (what the caller knows: "continue with resume=True")."""
        err = RunFileError(f"{self}; {advice}")
        err.errno, err.strerror, err.filename = self.errno, self.strerror, self.filename
        return err


# errno -> what to do about it (the rest: the system's own reason stands alone)
_FIXES = {
    errno.ENOSPC: "free space",
    getattr(errno, "EDQUOT", -1): "free space (the disk quota is used up)",
    errno.EROFS: "the file system is read-only: work on a writable copy",
    errno.EACCES: "make the folder writable, or work on a writable copy",
    errno.EPERM: "make the folder writable, or work on a writable copy",
    errno.ENAMETOOLONG: "choose a shorter name",
    errno.EISDIR: "a folder is in the way: move it",
    errno.ENOTDIR: "a file is in the way: move it",
}


def _link_error(path) -> RunFileError:
    err = RunFileError(f"{path} is a symbolic link; a run folder never writes outside itself: remove it")
    err.errno, err.filename = errno.ELOOP, str(path)
    return err


def run_file_error(path, e: OSError) -> RunFileError:
    """``e`` (raised while writing ``path``) as a one-line :class:`RunFileError`:
    "cannot write RUN/x: No space left on device (ENOSPC); free space" (a caller that knows
    more adds it with :meth:`RunFileError.then`, e.g. training's "continue with resume=True")."""
    if isinstance(e, RunFileError):
        return e
    if e.errno == errno.ELOOP and Path(path).is_symlink():  # O_NOFOLLOW met a link
        return _link_error(path)
    code = errno.errorcode.get(e.errno)
    reason = (e.strerror or str(e)) + (f" ({code})" if code else "")
    fix = _FIXES.get(e.errno)
    err = RunFileError(f"cannot write {path}: {reason}" + (f"; {fix}" if fix else ""))
    err.errno, err.strerror, err.filename = e.errno, e.strerror, str(path)
    return err


def refuse_link(path) -> Path:
    """``path`` (inside a run folder) unless it is a symbolic link: a planted link would make
    the run read or write wherever it points."""
    path = Path(path)
    if path.is_symlink():
        raise _link_error(path)
    return path


def run_folder(path, link_ok: bool = False) -> Path:
    """Create the folder ``path`` (a folder inside a run folder) if missing and return it; a
    symbolic link there is refused, not followed (checked with ``lstat`` before and after
    ``mkdir``), and a file there or an unwritable parent is a :class:`RunFileError`.
    ``link_ok``: the run folder itself, a path the user chose (a link to a scratch disk is theirs
    to make)."""
    path = Path(path) if link_ok else refuse_link(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file of that name
        raise run_file_error(path, OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))) from None
    except OSError as e:
        raise run_file_error(path, e) from None
    return path if link_ok else refuse_link(path)


def open_in_run(path, flags: int = os.O_RDWR | os.O_CREAT, mode: int = 0o644) -> int:
    """``os.open`` of a file inside a run folder that never follows a symbolic link
    (``O_NOFOLLOW``): a planted link is a :class:`RunFileError` naming it, and so is any other
    failure to open it for writing."""
    try:
        return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as e:
        raise run_file_error(path, e) from None


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
    folder must exist. Returns ``path``.

    Any ``OSError`` on the way (read-only folder, full disk, name too long, ...) leaves the old
    file as it was and is raised as a :class:`RunFileError` naming ``path``."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise run_file_error(path, e) from None
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; a run's files get the usual permissions
            os.fchmod(fd, _umask_mode())
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise run_file_error(path, e) from None
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
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": self.command,
        }

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    @staticmethod
    def describe(info: dict) -> str:
        if not info:
            return "an unknown process"
        return (
            f"process {info.get('pid', '?')} on host {info.get('host', '?')} (since {info.get('since', '?')}"
            + (f"; {info['command']}" if info.get("command") else "")
            + ")"
        )

    def acquire(self) -> "RunLock":
        run_folder(self.folder, link_ok=True)
        if fcntl is not None:
            fd = open_in_run(self.path)  # a link planted at RUN/.lock is refused, not followed
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                holder = self._read()
                raise RunLocked(
                    f"{self.folder} is in use by {self.describe(holder)}: one trainer per run folder. "
                    f"Wait for it to finish, stop it, or choose another folder for option run_dir"
                ) from None
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
                fd = open_in_run(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            except RunFileError as e:
                if e.errno != errno.EEXIST:
                    raise
                holder = self._read()
                if holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", -1))):
                    self.stale = holder
                    os.unlink(self.path)
                    continue
                raise RunLocked(
                    f"{self.folder} is in use by {self.describe(holder)}; if that process is gone, delete {self.path}"
                ) from None
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


__all__ = [
    "atomic_write",
    "write_bytes",
    "write_text",
    "write_json",
    "write_jsonl",
    "torch_save",
    "save_figure",
    "save_npz",
    "RunLock",
    "RunLocked",
    "RunFileError",
    "run_folder",
    "open_in_run",
    "refuse_link",
]

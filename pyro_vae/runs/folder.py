"""A run folder: the one object that knows the name of every file a run writes.

Training, the CLI, figures and the report ask a :class:`RunDir` for paths; none of them spells a
file name. :func:`~pyro_vae.training.finish.finish_run` is the end of a run (test evaluation, figures, report), the same
whether training was started from the CLI or from Python.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

# what a run's own readers do without a file they cannot read
_WITHOUT = "delete it or restore it from a copy (the run's other files do not need it)"


class UnreadableRunFile(ValueError):
    """A file of a run folder that is there but cannot be read as what pyro-vae writes there
    (not JSON, JSON of the wrong kind, a garbled line, an archive that is not one). The message
    is one line: the path, what is wrong and the fix."""

    def __init__(self, path, reason: str, fix: str = _WITHOUT):
        super().__init__(f"cannot read {path}: {reason}; {fix}")
        self.path, self.reason = Path(path), reason


# characters kept in a file name made from user text: anything else (path separators, the dot
# Path.with_suffix would cut at, spaces, quotes, shell characters) becomes "-"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def name_part(text, shown=None, limit: int = 40) -> str:
    """``text`` (or the readable part ``shown`` of it) as one part of a file name: letters,
    digits, ``_`` and ``-`` only, at most ``limit`` characters. When anything was replaced, cut or
    left out, 8 hex digits of a hash of the whole ``text`` are added, so that two texts never
    give one name (``a/bin.npy`` and ``b/bin.npy`` -> ``bin-npy-1c0e...``, ``bin-npy-9a3f...``)."""
    text = str(text)
    safe = _UNSAFE.sub("-", str(text if shown is None else shown)).strip("-")[:limit]
    if safe != text:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = f"{safe}-{digest}" if safe else digest
    return safe


def _result_name(prefix: str, label: str, *fields) -> str:
    """``prefix_DATASET_SPLIT_field_field...`` for a result on data ``label`` (``"name/split"``,
    as the CLI labels its data; the data set's last path part is shown, the whole name hashed)."""
    dataset, _, split = str(label).rpartition("/")
    parts = [prefix, name_part(dataset, Path(dataset).name) if dataset else "", name_part(split), *fields]
    return "_".join(str(p) for p in parts if p)


def suffixed(base, suffix: str) -> Path:
    """``base`` + ``suffix`` (``".json"``). Not ``Path.with_suffix``, which cuts a name at its
    last dot and so drops whatever followed one in a data set's name."""
    base = Path(base)
    return base.with_name(base.name + suffix)


class RunDir:
    """Paths of one run folder. Nothing is created until something is written."""

    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    LAST = "checkpoint_last.pt"
    BEST = "checkpoint_best.pt"
    SUMMARY = "summary.json"
    TEST_METRICS = "metrics_test"  # .json and .txt
    REPORT = "report.md"
    HTML = "index.html"
    CLASSIFIER = "feature_classifier.pt"  # the generation scores' classifier (trained once, cached)

    def __init__(self, path):
        self.path = Path(path)

    def __fspath__(self):
        return str(self.path)

    def __str__(self):
        return str(self.path)

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    def mkdir(self) -> "RunDir":
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def exists(self) -> bool:
        return self.last.exists()

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def test_metrics(self) -> Path:
        return self.path / (self.TEST_METRICS + ".json")

    @property
    def test_table(self) -> Path:
        return self.path / (self.TEST_METRICS + ".txt")

    @property
    def report(self) -> Path:
        return self.path / self.REPORT

    @property
    def html(self) -> Path:
        return self.path / self.HTML

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def classifier(self) -> Path:
        return self.path / self.CLASSIFIER

    def generation(
        self,
        label: str,
        sampler: str,
        *,
        components: int | None = None,
        n: int | None = None,
        limit: int | None = None,
        seed: int | None = None,
    ) -> Path:
        """Base name (no suffix) of the generation scores for data ``label`` (``"name/split"``)
        and ``sampler``, naming every setting that changes them: the mixture's ``components``
        (``--sampler mixture`` only), the ``n`` images generated, the first ``limit`` data
        points, the ``seed`` (0, the default, is not named). No dot: add a suffix with
        :func:`suffixed`."""
        mixture = f"c{components}" if components is not None and sampler == "mixture" else None
        return self.path / _result_name(
            "generation",
            label,
            *self._subset(limit),
            name_part(sampler),
            mixture,
            None if n is None else f"n{n}",
            *self._seed(seed),
        )

    def figure(self, name: str) -> Path:
        """``NAME.png`` in the run folder (a name from a family or a metrics key made safe: it
        never leads out of the folder)."""
        return self.path / f"{name_part(name, limit=100)}.png"

    @staticmethod
    def per_image(base) -> Path:
        """The per-image terms of log p(x) (``.npz``) beside an evaluation result ``base``."""
        base = Path(base)
        return base.with_name(base.name + "_per_image.npz")

    @property
    def test_per_image(self) -> Path:
        return self.per_image(self.path / self.TEST_METRICS)

    def evaluation(
        self, label: str, k: int, *, iwae_k: int | None = None, limit: int | None = None, seed: int | None = None
    ) -> Path:
        """Base name (no suffix) of an ``evaluate`` result for data ``label`` (``"name/split"``)
        with ``k`` importance samples, naming every setting that changes it: the first ``limit``
        data points, the IWAE bound's ``iwae_k``, the ``seed`` (0, the default, is not named);
        ``k`` comes last (``eval_mnist_test_first100_iwae50_k5000``). No dot: add a suffix with
        :func:`suffixed`."""
        return self.path / _result_name(
            "eval", label, *self._subset(limit), None if iwae_k is None else f"iwae{iwae_k}", *self._seed(seed), f"k{k}"
        )

    @staticmethod
    def _subset(limit) -> list:
        return [f"first{int(limit)}"] if limit else []

    @staticmethod
    def _seed(seed) -> list:
        return [f"seed{int(seed)}"] if seed else []

    def is_run(self) -> bool:
        """Whether this folder is a run's: it holds a checkpoint, or a ``config.json`` that is a
        pyro-vae run configuration (a project's own ``config.json`` is not one)."""
        try:
            if self.best.exists() or self.last.exists():
                return True
            config = json.loads(self.config.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # no config.json, or not one of ours
            return False
        return isinstance(config, dict) and "model" in config and "train" in config

    def read_json(self, path, expect: type | None = dict):
        """A JSON file of the run: None when there is none; the value when it is JSON of the type
        ``expect`` (an object, as the run writes them; None: any); an :class:`UnreadableRunFile`
        naming the file and the fix otherwise (a garbled file is never taken for a missing one)."""
        path = Path(path)
        text = self._read_text(path)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError as e:
            raise UnreadableRunFile(path, f"not JSON ({_first_line(e)})") from None
        if expect is not None and not isinstance(value, expect):
            raise UnreadableRunFile(
                path, f"it holds a JSON {_json_kind(value)}, where pyro-vae writes {_json_kind(expect())}"
            )
        return value

    def read_metrics(self) -> list:
        """The rows of ``metrics.jsonl`` ([] when there is none). Lines that are not metrics rows
        (cut short, garbled, hand-edited) are left out, as :func:`pyro_vae.config.read_metrics`
        does, and said once, in one line naming the file and the fix; a file that cannot be read
        at all (a folder, no permission) is an :class:`UnreadableRunFile`."""
        from pyro_vae.config import read_metrics

        try:
            text = self.metrics.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        except OSError as e:
            raise UnreadableRunFile(
                self.metrics, e.strerror or _first_line(e), "make it a readable file, or move it away"
            ) from None
        rows = read_metrics(self.metrics)
        lines = sum(1 for line in text.splitlines() if line.strip())
        if len(rows) < lines:
            _note(
                f"{self.metrics}: {lines - len(rows)} of {lines} lines are not metrics rows as training writes "
                f"them (cut short, garbled or edited) and are left out; restore the file from a copy, or delete "
                f"those lines"
            )
        return rows

    @staticmethod
    def read_arrays(path) -> dict | None:
        """The arrays of a ``.npz`` file the run wrote (the per-image terms of log p(x)): None
        when there is none; ``{name: 1-D number array}``, all of one length, or an
        :class:`UnreadableRunFile` naming the file and the fix."""
        import zipfile

        import numpy as np

        path = Path(path)
        if not path.exists() and not path.is_symlink():
            return None
        try:
            loaded = np.load(path, allow_pickle=False)
            if not hasattr(loaded, "files"):  # a bare array: a .npy file, not an .npz archive
                raise UnreadableRunFile(path, "a single .npy array, not an .npz archive of named arrays")
            with loaded as f:
                arrays = {name: f[name] for name in f.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            if isinstance(e, UnreadableRunFile):
                raise
            raise UnreadableRunFile(path, f"not an .npz archive of number arrays ({_first_line(e)})") from None
        lengths = {a.shape[0] if a.ndim == 1 else -1 for a in arrays.values()}
        if any(a.dtype.kind not in "biuf" for a in arrays.values()) or len(lengths) > 1 or -1 in lengths:
            raise UnreadableRunFile(path, "its arrays are not number arrays of one value per image each")
        return arrays

    @staticmethod
    def _read_text(path: Path) -> str | None:
        """The text of ``path``; None when it does not exist; an :class:`UnreadableRunFile` when it
        is a folder, unreadable or not UTF-8."""
        try:
            return path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            if path.is_symlink():  # a link to nowhere: not the run's file
                raise UnreadableRunFile(path, "a symbolic link to a file that does not exist") from None
            return None
        except UnicodeDecodeError as e:
            raise UnreadableRunFile(path, f"not UTF-8 text (byte {e.start})") from None
        except OSError as e:
            raise UnreadableRunFile(
                path, e.strerror or _first_line(e), "make it a readable file, or move it away"
            ) from None

    @staticmethod
    def of_checkpoint(path) -> "RunDir":
        """The run folder a checkpoint file sits in (a folder is taken as the run folder)."""
        path = Path(path)
        return RunDir(path if path.is_dir() else path.parent)

    @staticmethod
    def checkpoint_path(path) -> Path:
        """A checkpoint file, or a run folder's best checkpoint."""
        path = Path(path)
        return path / RunDir.BEST if path.is_dir() else path


_NOTED: set = set()


def _note(message: str) -> None:
    """``message`` once per process, on stderr (a problem worked around, not an error)."""
    if message not in _NOTED:
        _NOTED.add(message)
        print(f"note: {message}", file=sys.stderr)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _json_kind(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "true/false", type(None): "null"}.get(
        type(value), "number"
    )


__all__ = ["RunDir", "UnreadableRunFile", "name_part", "suffixed"]

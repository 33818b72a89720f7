"""Typed configuration. Saved as JSON beside every checkpoint; a checkpoint rebuilds its
model from :class:`ModelConfig` alone (no pickled code)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path


class ModelConfig:
    """What :func:`pyro_vae.models.build_model` needs to build a model: the family's registered
    name, the shape of one data point, the number of classes (families that use labels) and the
    family's options (the fields of its ``Config`` dataclass, checked when the model is built).

    Options may be given as keywords: ``ModelConfig(data_shape=(1, 28, 28), latent_dim=8)`` is
    ``ModelConfig(model="vae", data_shape=(1, 28, 28), options={"latent_dim": 8})``. ``plugins``
    names the modules that registered the family's parts (imported only when the user passes
    them with ``--plugin``).
    """

    def __init__(self, model: str = "vae", data_shape=(1, 28, 28), num_classes: int | None = None,
                 options: dict | None = None, plugins=(), **more_options):
        self.model = str(model)
        self.data_shape = tuple(int(s) for s in data_shape)
        if not self.data_shape or any(s < 1 for s in self.data_shape):
            raise ValueError(f"data_shape must be a non-empty tuple of positive sizes, got {data_shape}")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.options = {**(options or {}), **more_options}
        self.plugins = list(plugins)

    def to_dict(self) -> dict:
        return {"model": self.model, "data_shape": list(self.data_shape), "num_classes": self.num_classes,
                "options": _plain(self.options), "plugins": list(self.plugins)}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a dict, got {type(data).__name__}")
        unknown = set(data) - {"model", "data_shape", "num_classes", "options", "plugins"}
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    def __eq__(self, other):
        return isinstance(other, ModelConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"ModelConfig(model={self.model!r}, data_shape={self.data_shape}, num_classes={self.num_classes}, {opts})"


def _plain(v):
    """Tuples to lists, dataclasses to dicts: what JSON keeps."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        v = dataclasses.asdict(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


@dataclass
class TrainConfig:
    """How :func:`pyro_vae.training.fit` trains. Every field is a CLI flag of ``pyro-vae train``."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0  # final weight of the KL term
    warmup_epochs: float = 0.0  # KL weight rises linearly from ~0 to beta over this many epochs
    objective: str = "auto"  # a registered objective (pyro_vae.objectives); auto: the family's default
    num_particles: int = 1
    clip_norm: float | None = None  # clip the gradient (of the per-image loss) to this norm
    seed: int = 0
    device: str = "auto"
    patience: int | None = 10  # early stopping: epochs without a better validation measure (None: off)
    binarize: str = "dynamic"  # none | static | dynamic
    val_batch_size: int = 1000
    labels: int | None = None  # semi-supervised: labels kept (per class alike, seeded); None: all
    labelled_batch_size: int | None = None  # labelled points added to each batch (None: auto)

    def check(self) -> "TrainConfig":
        """Raise a ValueError naming every setting that is out of range."""
        bad = []
        if not isinstance(self.objective, str):
            bad.append(f"objective must be a registered name (a run's config is saved as JSON); pass an "
                       f"objective object to fit(..., objective=obj) instead, got {type(self.objective).__name__}")
        if self.binarize not in ("none", "static", "dynamic"):
            bad.append(f"binarize must be none, static or dynamic, got {self.binarize!r}")
        for name in ("epochs", "batch_size", "num_particles", "val_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad.append(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("lr", "beta"):
            if not getattr(self, name) > 0:
                bad.append(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.warmup_epochs < 0:
            bad.append(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            bad.append(f"clip_norm must be > 0 (or None), got {self.clip_norm}")
        if self.labels is not None and self.labels < 1:
            bad.append(f"labels must be >= 1 (or None for all labels), got {self.labels}")
        if self.labelled_batch_size is not None and self.labelled_batch_size < 0:
            bad.append(f"labelled_batch_size must be >= 0, got {self.labelled_batch_size}")
        if bad:
            raise ValueError("; ".join(bad))
        return self


def to_json(obj) -> str:
    return json.dumps(_plain(obj.to_dict() if hasattr(obj, "to_dict") else obj), indent=2, sort_keys=True)


def save_json(path, data) -> None:
    """Write JSON atomically (:func:`pyro_vae.files.write_json`)."""
    from .files import write_json

    write_json(path, data)


def from_dict(cls, data: dict):
    """Build dataclass ``cls`` from a dict, refusing unknown keys with a clear message."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} needs a dict, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(names))}")
    return cls(**data)


def read_metrics(path) -> list:
    """The rows of a ``metrics.jsonl`` file (missing file: []; a partly written last line is skipped)."""
    path = Path(path)
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows

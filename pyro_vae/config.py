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


BINARIZE_MODES = ("auto", "none", "static", "dynamic")


@dataclass
class TrainConfig:
    """How :func:`pyro_vae.training.fit` trains. Every field is a CLI flag of ``pyro-vae train``."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant, or cosine: lr * (1 + cos(pi * step / steps)) / 2 over the run
    beta: float = 1.0  # final weight of the KL term
    warmup_epochs: float = 0.0  # KL weight rises linearly from ~0 to beta over this many epochs
    free_bits: float = 0.0  # nats per latent dimension below which its KL is not pushed down (0: off)
    objective: str = "auto"  # a registered objective (pyro_vae.objectives); auto: the family's default
    num_particles: int = 1
    clip_norm: float | None = None  # clip the gradient (of the per-image loss) to this norm
    seed: int = 0
    device: str = "auto"
    patience: int | None = 10  # early stopping: epochs without a better validation measure (None: off)
    # auto | none | static | dynamic. auto: resolved once when fit starts (and saved resolved):
    # dynamic for a likelihood that declares binary_data (Bernoulli), else none: a default never
    # binarizes data that a continuous likelihood models as given
    binarize: str = "auto"
    val_batch_size: int = 1000
    labels: int | None = None  # semi-supervised: labels kept (per class alike, seeded); None: all
    labelled_batch_size: int | None = None  # labelled points added to each batch (None: auto)
    augment_shift: int = 0  # move each training image by up to this many pixels, at random, every time it is used
    precision: str = "fp32"  # fp32, or bf16: networks under bfloat16 autocast, log-densities in float32
    eval_k: int = 1000  # importance samples for the final test log p(x) (0: skip); recorded so a rerun reports the same

    def check(self) -> "TrainConfig":
        """Raise a ValueError naming every setting that is out of range (one line)."""
        import math

        from .devices import device_problem

        def whole(v, low):
            return isinstance(v, int) and not isinstance(v, bool) and v >= low

        def finite(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        bad = []
        if not isinstance(self.objective, str):
            bad.append(f"objective must be a registered name (a run's config is saved as JSON); pass an "
                       f"objective object to fit(..., objective=obj) instead, got {type(self.objective).__name__}")
        if self.lr_schedule not in ("constant", "cosine"):
            bad.append(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")
        if self.binarize not in BINARIZE_MODES:
            bad.append(f"binarize must be {', '.join(BINARIZE_MODES[:-1])} or {BINARIZE_MODES[-1]}, "
                       f"got {self.binarize!r}")
        if not whole(self.eval_k, 0):
            bad.append(f"eval_k must be an integer >= 0 (0: no test log p(x)), got {self.eval_k!r}")
        for name in ("epochs", "batch_size", "num_particles", "val_batch_size"):
            if not whole(getattr(self, name), 1):
                bad.append(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("lr", "beta"):
            if not (finite(getattr(self, name)) and getattr(self, name) > 0):
                bad.append(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
        if not (finite(self.free_bits) and self.free_bits >= 0):
            bad.append(f"free_bits must be a finite number of nats >= 0, got {self.free_bits!r}")
        if not (finite(self.warmup_epochs) and self.warmup_epochs >= 0):
            bad.append(f"warmup_epochs must be a finite number >= 0, got {self.warmup_epochs!r}")
        if self.clip_norm is not None and not (finite(self.clip_norm) and self.clip_norm > 0):
            bad.append(f"clip_norm must be a finite number > 0 (or None), got {self.clip_norm!r}")
        if not (whole(self.seed, 0) and self.seed < 2**32):
            bad.append(f"seed must be an integer from 0 to 2**32 - 1, got {self.seed!r}")
        problem = device_problem(self.device)
        if problem:
            bad.append(problem)
        if self.patience is not None and not whole(self.patience, 1):
            bad.append(f"patience must be an integer >= 1 (or None: no early stopping), got {self.patience!r}")
        if self.labels is not None and not whole(self.labels, 1):
            bad.append(f"labels must be an integer >= 1 (or None for all labels), got {self.labels!r}")
        if not whole(self.augment_shift, 0):
            bad.append(f"augment_shift must be an integer >= 0 (pixels), got {self.augment_shift!r}")
        if self.labelled_batch_size is not None and not whole(self.labelled_batch_size, 0):
            bad.append(f"labelled_batch_size must be an integer >= 0, got {self.labelled_batch_size!r}")
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
    """The rows of a ``metrics.jsonl`` file. A missing file (or a folder) gives []; a line that is
    not a metrics row as training writes it (a partly written last line, garbage, a list or a
    number, bytes that are not UTF-8, an object without a whole-number ``epoch`` or with text
    where the loss, the step, the KL weight or a validation measure belongs) is skipped."""

    def is_row(row) -> bool:
        if not isinstance(row, dict):
            return False
        epoch = row.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            return False
        return all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                   for k, v in row.items() if k in ("step", "train_loss", "kl_weight") or k.startswith("val_"))

    path = Path(path)
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if is_row(row):
                    rows.append(row)
    return rows

"""Typed configuration. Saved as JSON beside every checkpoint; a checkpoint rebuilds its
model from :class:`ModelConfig` alone (no pickled code)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ModelConfig:
    """What :func:`pyro_vae.models.build_model` needs to build a model."""

    data_shape: tuple = (1, 28, 28)
    model: str = "vae"
    latent_dim: int = 50
    hidden: tuple = (400,)
    network: str = "mlp"  # 'mlp' or 'conv'
    prior: str = "standard_normal"
    prior_kwargs: dict = field(default_factory=dict)  # e.g. {"components": 10}
    likelihood: str = "bernoulli"
    likelihood_kwargs: dict = field(default_factory=dict)  # e.g. {"scale": 0.1, "learn_scale": True}

    def __post_init__(self):
        self.data_shape = tuple(int(s) for s in self.data_shape)
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {self.hidden}")


@dataclass
class TrainConfig:
    """How :func:`pyro_vae.training.fit` trains. Every field is a CLI flag of ``pyro-vae train``."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0  # final weight of the KL term
    warmup_epochs: float = 0.0  # KL weight rises linearly from ~0 to beta over this many epochs
    elbo: str = "trace"  # trace | meanfield | jit
    num_particles: int = 1
    clip_norm: float | None = None  # clip the gradient (of the per-image loss) to this norm
    seed: int = 0
    device: str = "auto"
    patience: int | None = 10  # early stopping: epochs without a better validation ELBO (None: off)
    binarize: str = "dynamic"  # none | static | dynamic
    val_batch_size: int = 1000


def to_json(obj) -> str:
    return json.dumps(dataclasses.asdict(obj), indent=2, sort_keys=True)


def save_json(path, data) -> None:
    """Write JSON atomically (temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def from_dict(cls, data: dict):
    """Build dataclass ``cls`` from a dict, refusing unknown keys with a clear message."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
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

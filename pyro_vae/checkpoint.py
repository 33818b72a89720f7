"""Checkpoints: one ``torch.save`` file holding the model config (plain data), the
``state_dict`` and the training state. Written atomically; read with ``weights_only=True``
(no pickled code), and rebuilt from the config alone."""

from __future__ import annotations

from pathlib import Path

import torch

from .config import ModelConfig

FORMAT = "pyro-vae-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


def atomic_save(obj, path) -> None:
    """``torch.save`` through :func:`pyro_vae.files.atomic_write` (exclusive unpredictable temp
    file, fsync, rename, fsync of the folder)."""
    from .files import torch_save

    torch_save(obj, path)


def save_checkpoint(path, module, model_config: ModelConfig | None, **state) -> None:
    """Save ``module``'s weights with its config; ``state`` adds optimizer state, epoch, RNG, ...

    ``model_config=None`` (a hand-built module) saves the weights only; load them into the same
    module with :func:`load_model_state`."""
    atomic_save(
        {
            "format": FORMAT,
            "version": VERSION,
            "model_config": None if model_config is None else model_config.to_dict(),
            "model_state": module.state_dict(),
            **state,
        },
        path,
    )


def read_checkpoint(path, map_location="cpu") -> dict:
    """Load and validate the checkpoint dict (does not build the model)."""
    path = Path(path)
    if not path.is_file():
        hint = " (a run folder? pass RUN_DIR/checkpoint_best.pt)" if path.is_dir() else ""
        raise CheckpointError(f"checkpoint {path} does not exist{hint}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable pyro-vae checkpoint (corrupt or truncated?): {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyro-vae checkpoint (no '{FORMAT}' marker)")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer pyro-vae (format {ckpt['version']} > {VERSION})")
    return ckpt


def load_model_state(module, state: dict, source="checkpoint") -> None:
    """``load_state_dict`` with an error that lists what does not match."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        if wrong:
            parts.append("shape mismatch " + ", ".join(
                f"{k}: {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:5]))
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(parts))
    module.load_state_dict(state)


def load_checkpoint(path, device="cpu"):
    """Rebuild the model a checkpoint describes and load its weights.

    Returns ``(module, ckpt)`` where ``ckpt`` is the whole checkpoint dict.
    """
    from .models import MODELS, build_model

    ckpt = read_checkpoint(path)
    if ckpt.get("model_config") is None:
        raise CheckpointError(
            f"{path} holds a hand-built model without a ModelConfig; build the module yourself and "
            f"load the weights with pyro_vae.checkpoint.load_model_state(module, ckpt['model_state'])")
    try:
        config = ModelConfig.from_dict(ckpt["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad model config in checkpoint: {e}") from e
    if config.model not in MODELS:
        hint = (f"; it was registered by {', '.join(config.plugins)}: pass --plugin "
                f"{' --plugin '.join(config.plugins)} (or import it before loading)") if config.plugins else ""
        raise CheckpointError(f"{path} holds a model of family {config.model!r}, which is not registered{hint}")
    try:
        module = build_model(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot rebuild its model: {e}") from e
    load_model_state(module, ckpt["model_state"], source=str(path))
    return module.to(device).eval(), ckpt  # eval mode: no denoising corruption, no dropout

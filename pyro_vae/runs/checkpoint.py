"""Checkpoints: one ``torch.save`` file holding the model config (plain data), the
``state_dict`` and the training state. Written atomically; read with ``weights_only=True``
(no pickled code), and rebuilt from the config alone.

A training checkpoint is also the run's record: ``model_config``, ``train_config`` and ``extra``
(the data, the command, world size, versions, resumes) hold everything ``config.json`` does,
and :func:`run_record` gives it back in ``config.json``'s layout. ``--resume`` trusts this
record; ``config.json`` is a copy for people, compared with it."""

from __future__ import annotations

from pathlib import Path

import torch

from pyro_vae.config import ModelConfig

FORMAT = "pyro-vae-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


def atomic_save(obj, path) -> None:
    """``torch.save`` through :func:`pyro_vae.files.atomic_write` (exclusive unpredictable temp
    file, fsync, rename, fsync of the folder)."""
    from pyro_vae.files import torch_save

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


def _whole(v, low=0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# entry -> (check, what it must be); checked whenever the entry is present
ENTRIES = {
    "model_state": (lambda v: isinstance(v, dict), "a dict of tensors (a state_dict)"),
    "model_config": (lambda v: v is None or isinstance(v, dict), "a dict (a ModelConfig) or None"),
    "optimizer_state": (
        lambda v: isinstance(v, dict) and isinstance(v.get("state"), dict) and isinstance(v.get("param_groups"), list),
        "an optimizer state_dict (a dict with 'state' and 'param_groups')",
    ),
    "rng": (
        lambda v: (
            isinstance(v, dict)
            and torch.is_tensor(v.get("torch"))
            and isinstance(v.get("python"), (tuple, list))
            and torch.is_tensor(v.get("data"))
        ),
        "a dict of random-number-generator states 'torch', 'python' and 'data'",
    ),
    "epoch": (_whole, "a whole number >= 0"),
    "step": (_whole, "a whole number >= 0"),
    "bad_epochs": (_whole, "a whole number >= 0"),
    "best_val": (_number, "a number"),
    "train_config": (lambda v: isinstance(v, dict), "a dict"),
    "extra": (lambda v: isinstance(v, dict), "a dict"),
    "objective_state": (lambda v: v is None or isinstance(v, dict), "a dict or None"),
    "in_epoch": (lambda v: v is None or isinstance(v, dict), "a dict or None"),
}
# what resuming (fit's resume=True) reads from checkpoint_last.pt (pyro_vae.training.resume.resume_state)
RESUME_ENTRIES = ("model_state", "optimizer_state", "rng", "epoch", "step")
_RESUMING = "continuing training (resume=True)"
_NEEDED_BY = {
    "optimizer_state": _RESUMING,
    "rng": _RESUMING,
    "epoch": _RESUMING,
    "step": _RESUMING,
    "model_state": "loading the model",
    "model_config": "rebuilding the model",
    "train_config": "the run's record (its training settings)",
}


def _not_a_checkpoint(path, obj) -> str:
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        return (
            f"{path} is not a pyro-vae checkpoint: it holds a plain state_dict ({len(obj)} tensors, e.g. "
            f"{next(iter(obj))!r}); build the module and load it with "
            f"pyro_vae.runs.checkpoint.load_model_state(module, torch.load(path, weights_only=True))"
        )
    if isinstance(obj, dict):
        keys = ", ".join(repr(k) for k in list(obj)[:6]) or "none"
        return f"{path} is not a pyro-vae checkpoint (a dict without the '{FORMAT}' marker; its keys: {keys})"
    return f"{path} is not a pyro-vae checkpoint (no '{FORMAT}' marker: it holds a {type(obj).__name__})"


def read_checkpoint(path, map_location="cpu", require=()) -> dict:
    """Load and validate the checkpoint dict (does not build the model).

    Read with ``weights_only=True`` (tensors and plain data: no code runs). Every entry that is
    present is checked for its type, ``model_state`` always has to be there, and so has every
    entry named in ``require`` (e.g. :data:`RESUME_ENTRIES` to continue training). Anything
    wrong is a :class:`CheckpointError` naming the file and the entry."""
    from pyro_vae.data.sources import UnreadableFile, load_torch_file

    path = Path(path)
    if not path.is_file():
        hint = (
            " (a run folder? pass RUN_DIR/checkpoint_best.pt)"
            if path.is_dir()
            else f" ({path.parent} is a folder without it: is it a run folder whose training finished an epoch?)"
            if path.name.startswith("checkpoint_") and path.parent.is_dir()
            else ""
        )
        raise CheckpointError(f"checkpoint {path} does not exist{hint}")
    try:
        ckpt = load_torch_file(path, map_location=map_location)
    except UnreadableFile as e:
        raise CheckpointError(f"{path} is not a readable pyro-vae checkpoint: {e.reason}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(_not_a_checkpoint(path, ckpt))
    version = ckpt.get("version", 0)
    if not _whole(version):
        raise CheckpointError(f"{path}: entry 'version' must be a whole number, got {version!r} (an edited file?)")
    if version > VERSION:
        raise CheckpointError(
            f"{path} was written by a newer pyro-vae (format {version} > {VERSION}); upgrade pyro-vae to read it"
        )
    for key in ("model_state", *require):
        if key not in ckpt:
            needed = f", which {_NEEDED_BY[key]} needs" if key in _NEEDED_BY else ""
            raise CheckpointError(
                f"{path}: the checkpoint has no {key!r} entry (missing{needed}); it was not "
                f"written by pyro-vae training, or was edited"
            )
    for key, (ok, what) in ENTRIES.items():
        if key in ckpt and not ok(ckpt[key]):
            v = ckpt[key]
            shown = f" {v!r}" if isinstance(v, (int, float, str)) and len(repr(v)) < 40 else ""
            raise CheckpointError(f"{path}: entry {key!r} must be {what}, got {type(v).__name__}{shown}")
    return ckpt


def record_of(ckpt: dict) -> dict:
    """The run record a training checkpoint holds, laid out as ``config.json`` is: ``model``,
    ``train`` and what training keeps in ``extra`` (``data``, ``command``, ``world_size``,
    ``objective``, ``versions``, ``resumes``, ...; a checkpoint written before pyro-vae kept
    all of these holds fewer)."""
    return {**(ckpt.get("extra") or {}), "model": ckpt.get("model_config"), "train": ckpt.get("train_config")}


def run_record(path) -> dict:
    """What the training checkpoint ``path`` (or a run folder: its ``checkpoint_last.pt``)
    records about its run, in ``config.json``'s layout (``{"model": ..., "train": ...,
    "data": ..., ...}``): the settings ``--resume`` continues with. A checkpoint without a
    training record (saved by hand) is a :class:`CheckpointError`."""
    from pyro_vae.runs.folder import RunDir

    path = Path(path)
    if path.is_dir():
        path = RunDir(path).last
    return record_of(read_checkpoint(path, require=("train_config",)))


def load_model_state(module, state: dict, source="checkpoint") -> None:
    """``load_state_dict`` with an error that lists what does not match."""
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{source}: entry 'model_state' must be a dict of tensors (a state_dict), got {type(state).__name__}"
        )
    odd = [k for k, v in state.items() if not torch.is_tensor(v)]
    if odd:
        raise CheckpointError(
            f"{source}: entry 'model_state' must map parameter names to tensors; {odd[0]!r} holds "
            f"a {type(state[odd[0]]).__name__}, not a tensor"
        )
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
            parts.append(
                "shape mismatch "
                + ", ".join(
                    f"{k}: {tuple(state[k].shape)} in the checkpoint, {tuple(own[k].shape)} in the model"
                    for k in wrong[:5]
                )
            )
        raise CheckpointError(
            f"{source} does not match the model: "
            + "; ".join(parts)
            + " (weights of another model: a different latent size, hidden sizes or data shape?)"
        )
    module.load_state_dict(state)


def _unregistered_hint(plugins, models) -> str:
    """How to register a checkpoint's family: import the modules that registered it (said as
    ``plugin=...``, which the CLI shows as its ``--plugin`` flag)."""
    if not plugins:
        return (
            f"; known families: {', '.join(sorted(models))}. If a module of yours registers it, import it "
            f"before loading (plugin='MODULE')"
        )
    named = repr(plugins[0]) if len(plugins) == 1 else repr(list(plugins))
    return f"; it was registered by {', '.join(plugins)}: import it before loading (plugin={named})"


def load_checkpoint(path, device="cpu"):
    """Rebuild the model a checkpoint describes and load its weights.

    Returns ``(module, ckpt)`` where ``ckpt`` is the whole checkpoint dict.
    """
    from pyro_vae.models import MODELS, build_model

    ckpt = read_checkpoint(path, require=("model_state", "model_config"))
    if ckpt.get("model_config") is None:
        raise CheckpointError(
            f"{path} holds a hand-built model without a ModelConfig; build the module yourself and "
            f"load the weights with pyro_vae.runs.checkpoint.load_model_state(module, ckpt['model_state'])"
        )
    try:
        config = ModelConfig.from_dict(ckpt["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad model config in checkpoint: {e}") from None
    if config.model not in MODELS:
        raise CheckpointError(
            f"{path} holds a model of family {config.model!r}, which is not registered"
            f"{_unregistered_hint(config.plugins, MODELS)}"
        )
    try:
        module = build_model(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot rebuild its model: {e}") from None
    load_model_state(module, ckpt["model_state"], source=str(path))
    return module.to(device).eval(), ckpt  # eval mode: no denoising corruption, no dropout

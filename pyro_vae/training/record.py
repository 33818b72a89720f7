"""The run's record: what a run is, and the check that a resumed run is the same run.

The record (the ``model`` config, the ``train`` config, the ``data`` record, the world size,
the objective, versions, command, past resumes) is plain JSON. Every checkpoint stores it, and
``config.json`` is a copy for people. On resume the checkpoint's record is the truth: the new
call's settings are compared with it (:func:`check_resume_config`), and so is ``config.json``
(:func:`check_config_copy`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from pyro_vae.config import ModelConfig, TrainConfig, save_json
from pyro_vae.runs.folder import RunDir
from pyro_vae.version import __version__

logger = logging.getLogger(__name__)


class ConfigMismatch(ValueError):
    """Resuming with settings that differ from the stored run's."""


# the total epoch count (extending a run is what resuming is for) and the test evaluation's k
# (it changes no step of training)
ALWAYS_CHANGEABLE = ("train.epochs", "train.eval_k")
IGNORED_ON_RESUME = (
    "command",
    "versions",
    "resumes",
    "reproduced_from",
    "objective",
    "data.test",
    "data.stream",
    "data.streamed",
    "data.workers",
)  # how the data are read: same batches either way


def versions() -> dict:
    """The versions that produced a run (recorded in its config.json)."""
    import platform

    import pyro
    import torch

    return {
        "pyro-vae": __version__,
        "pyro-ppl": pyro.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def new_record(cfg: TrainConfig, model_config: ModelConfig | None, world: int, objective, extra: dict) -> dict:
    """The record of a run about to train: ``extra`` (its data, command, ...) added to the
    settings. Plain JSON data, as config.json holds it: the checkpoint stores the same (read
    with weights_only)."""
    record = {
        "model": model_config.to_dict() if model_config else None,
        "train": dataclasses.asdict(cfg),
        "world_size": world,
        "objective": type(objective).__name__,
        "versions": versions(),
        "resumes": [],
        **extra,
    }
    return json.loads(json.dumps(record, default=str))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _plain(d: dict) -> dict:
    return _flatten(json.loads(json.dumps(d, default=str)))


def check_resume_config(stored: dict, new: dict, allow_changes=()) -> dict:
    """The settings of a resumed run against the run's record (the checkpoint's, see
    :func:`pyro_vae.runs.checkpoint.run_record`; ``config.json`` is a copy of it): returns the changes
    ``{key: [stored, new]}`` that are allowed (the epoch count, and keys or last key parts named in
    ``allow_changes``, e.g. ``"lr"`` or ``"train.lr"``); raises :class:`ConfigMismatch` naming every
    other difference (a different seed, data set, model option, learning rate, batch size, ...
    would make the resumed run a different run)."""
    a, b = _plain(stored), _plain(new)
    allowed = set(ALWAYS_CHANGEABLE) | {c for c in allow_changes if "." in c}  # full keys, e.g. train.lr
    short = {c.replace("-", "_") for c in allow_changes if "." not in c}  # last parts, e.g. lr
    changed, refused = {}, []
    for key in sorted(set(a) | set(b)):
        if key.split(".")[0] in IGNORED_ON_RESUME or key in IGNORED_ON_RESUME or a.get(key) == b.get(key):
            continue
        if key not in a and "." in key and any(k.startswith(key.rsplit(".", 1)[0] + ".") for k in a):
            continue  # a setting the version that started the run did not have yet
        if key not in a and not any(k.split(".")[0] == key.split(".")[0] for k in a):
            continue  # a whole section the run did not record (its data, trained from Python before)
        if key in allowed or key.rsplit(".", 1)[-1] in short:
            changed[key] = [a.get(key), b.get(key)]
        else:
            refused.append(f"{key}: {a.get(key)!r} in the run, {b.get(key)!r} now")
    if refused:
        names = sorted({r.split(":")[0].rsplit(".", 1)[-1] for r in refused})
        raise ConfigMismatch(
            "resume=True with settings that differ from the run's own (recorded in its checkpoint; the resumed run "
            "would not be the same run): " + "; ".join(refused) + ". Keep the run's values to continue it as it "
            f"was, or change them on purpose with allow_changes={names!r}"
        )
    return changed


def _config_copy_edits(copy: dict, record: dict) -> list:
    """Where ``config.json`` (``copy``) says otherwise than the checkpoint's ``record``: its
    settings, not the history (``resumes``, ``command``, versions) nor what may always change."""
    a, b = _plain(copy), _plain(record)
    edits = []
    for key in sorted(b):
        if key.split(".")[0] in IGNORED_ON_RESUME or key in IGNORED_ON_RESUME or key in ALWAYS_CHANGEABLE:
            continue
        if a.get(key, "<missing>") != b[key]:
            edits.append(f"{key} is {a.get(key, 'missing')!r} there, {b[key]!r} in the checkpoint")
    return edits


def check_config_copy(run: RunDir, record: dict, write: bool) -> dict:
    """``config.json`` against the checkpoint's record before a resume. The checkpoint is the
    truth: a config.json that says otherwise was edited by hand (or belongs to another run), and
    continuing would make the copy lie, or make the next ``--resume`` pick up the edit, so it is
    refused with the fix; a missing one is rewritten from the checkpoint (``write``: this process
    writes the run's files), with a note. Returns what config.json held ({} when missing)."""
    if not os.path.lexists(run.config):
        if write:
            save_json(run.config, record)
            logger.info(f"note: {run.config} was missing; rewritten from {run.last}")
        return {}
    try:
        copy = json.loads(run.config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        copy = None
    edits = ["it is not a JSON object"] if not isinstance(copy, dict) else _config_copy_edits(copy, record)
    if edits:
        raise ConfigMismatch(
            f"{run.config} was edited since {run.last} was written ({'; '.join(edits)}): resume=True "
            f"continues the run the checkpoint records; restore {RunDir.CONFIG}, or delete it to "
            f"have it rewritten from the checkpoint"
        )
    return copy


__all__ = [
    "ConfigMismatch",
    "ALWAYS_CHANGEABLE",
    "IGNORED_ON_RESUME",
    "versions",
    "new_record",
    "check_resume_config",
    "check_config_copy",
]

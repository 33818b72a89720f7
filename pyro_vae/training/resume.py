"""Checkpoints and resume: what a run saves, and how it continues bit for bit.

A checkpoint holds the model, the optimizer, the :class:`TrainState` (epoch, step, best value,
metrics rows; inside an interrupted epoch, how far it got), every random stream (torch, Python,
CUDA, the data generator) and the objective's own state, with the run's record
(:mod:`pyro_vae.training.record`). :func:`start_run` opens the run folder: a new run's
``config.json``, or for a resume the checkpoint's record checked and its state loaded.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from dataclasses import dataclass, field

import pyro
import torch

from pyro_vae.config import save_json
from pyro_vae.files import run_folder
from pyro_vae.runs.checkpoint import (
    RESUME_ENTRIES,
    CheckpointError,
    load_model_state,
    read_checkpoint,
    record_of,
    save_checkpoint,
)
from pyro_vae.runs.folder import RunDir
from pyro_vae.training.logs import write_metrics
from pyro_vae.training.record import check_config_copy, check_resume_config

logger = logging.getLogger(__name__)


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0
    best: float = -math.inf  # best validation value of family.select_by
    bad_epochs: int = 0
    history: list = field(default_factory=list)
    in_epoch: dict | None = None  # where an interrupted epoch stopped (batches done, loss so far, RNG)


def rng_state() -> dict:
    """Every global random stream: torch's, Python's and CUDA's."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def _objective_state() -> dict:
    """State an objective keeps outside the model: the decaying-average baselines that Pyro's
    ``TraceGraph_ELBO`` keeps in the param store (``__baseline_avg_downstream_cost_*``)."""
    store = pyro.get_param_store()
    return {k: store[k].detach().cpu() for k in store.keys() if k.startswith("__baseline")}


def _set_objective_state(saved: dict, device) -> None:
    store = pyro.get_param_store()
    for k, v in (saved or {}).items():
        store[k] = v.to(device)


def save_checkpoints(
    run: RunDir, family, model_config, optimizer, cfg, state: TrainState, data_gen, improved: bool, extra=None
) -> None:
    """``checkpoint_best.pt`` (when improved) and ``checkpoint_last.pt``, each written atomically.

    ``data_gen``: the data generator's state to resume from (the next epoch's, or for an
    interrupted epoch the state at its start, with ``state.in_epoch`` saying how far it got)."""
    data_state = data_gen if torch.is_tensor(data_gen) else data_gen.get_state()
    payload = dict(
        optimizer_state=optimizer.state_dict(),
        train_config=dataclasses.asdict(cfg),
        epoch=state.epoch,
        step=state.step,
        best_val=state.best,
        bad_epochs=state.bad_epochs,
        rng={**rng_state(), "data": data_state},
        extra=extra or {},
        objective_state=_objective_state(),
        in_epoch=state.in_epoch,
    )
    for path in ([run.best] if improved else []) + [run.last]:
        save_checkpoint(path, family, model_config, **payload)


def resume_state(run: RunDir, family, optimizer, data_gen, device, ckpt: dict | None = None) -> TrainState:
    """Load ``checkpoint_last.pt`` (or ``ckpt``, already read from it) into the family,
    optimizer and RNGs; return the state."""
    if ckpt is None:
        if not run.last.exists():
            raise CheckpointError(f"resume=True: no {RunDir.LAST} in {run} to resume from")
        ckpt = read_checkpoint(run.last, require=RESUME_ENTRIES)
    load_model_state(family, ckpt["model_state"], source=str(run.last))
    family.to(device)
    optimizer.load_state_dict(ckpt["optimizer_state"])
    set_rng_state(ckpt["rng"])
    data_gen.set_state(ckpt["rng"]["data"].to(data_gen.get_state().device))
    _set_objective_state(ckpt.get("objective_state"), device)
    epoch = ckpt["epoch"]
    return TrainState(
        epoch,
        ckpt["step"],
        ckpt.get("best_val", ckpt.get("best_val_elbo", -math.inf)),
        ckpt.get("bad_epochs", 0),
        run.read_metrics()[:epoch],
        ckpt.get("in_epoch"),
    )


def start_run(loop, run: RunDir, resume: bool, new: dict, allow_changes=()) -> TrainState:
    """The run folder at the start: a new run's ``config.json`` holding ``new``, the record of
    this call; or for ``resume`` the record of ``checkpoint_last.pt`` (the truth) checked against
    ``config.json`` (its copy) and against ``new``, and the checkpoint's state loaded into
    ``loop``'s family, optimizer and generators. Sets ``loop.record``, the run's record that every
    checkpoint stores and ``config.json`` copies. Returns the state to train on from."""
    if not resume:
        if run.exists():
            raise FileExistsError(
                f"{run} already holds a run; pass resume=True to continue it "
                f"or choose another folder for option run_dir"
            )
        loop.record = new
        if loop.run is not None:
            run_folder(run.path, link_ok=True)
            save_json(run.config, new)
            loop.config_written = new
        return TrainState()
    if not run.last.exists():
        raise CheckpointError(f"resume=True: no {RunDir.LAST} in {run} to resume from")
    ckpt = read_checkpoint(run.last, require=(*RESUME_ENTRIES, "train_config"))
    record = record_of(ckpt)
    # before touching anything
    copy = check_config_copy(run, record, write=loop.run is not None)
    if "world_size" not in record:  # a checkpoint from before pyro-vae recorded these: config.json's
        record.update({k: copy[k] for k in ("world_size", "objective", "versions", "resumes") if k in copy})
    changed = check_resume_config(record, new, allow_changes)
    state = resume_state(run, loop.family, loop.optimizer, loop.data_gen, loop.device, ckpt)
    if loop.world > 1:  # rank 0's saved stream: give each rank its own again
        torch.manual_seed(loop.cfg.seed + 1000 * loop.rank + 7919 * state.epoch)
    if loop.run is not None:
        write_metrics(run, state.history)
    if loop.rank == 0:
        logger.info(f"resuming {run} after epoch {state.epoch} (best validation {loop.select} {state.best:.4g})")
        if loop.data.resume_note:  # iterated data: their order is theirs, not the checkpoint's
            logger.warning(loop.data.resume_note)
    resumes = list(record.get("resumes") or [])
    resumes.append(
        {
            "at_epoch": state.epoch,
            "at_step": state.step,
            "command": new.get("command"),
            "changed": changed,
            "versions": new["versions"],
        }
    )
    loop.record = {**new, "resumes": resumes}
    if record.get("command") is not None:
        loop.record["command"] = record["command"]  # the command that started the run
    # config.json is rewritten with the next checkpoint (the copy of what that checkpoint records)
    return state


__all__ = ["TrainState", "rng_state", "set_rng_state", "save_checkpoints", "resume_state", "start_run"]

"""The fit loop: any module with ``model(x, kl_weight, num_data=...)`` and ``guide(...)``,
any Pyro ELBO, a plain ``torch.optim`` optimizer.

One step::

    loss = elbo.differentiable_loss(module.model, module.guide, x, kl_weight, num_data=N)
    (loss / N).backward()      # -ELBO per image: gradient norms independent of N
    clip_grad_norm_(...); optimizer.step()

The run folder gets ``config.json``, ``metrics.jsonl`` (one JSON line per epoch),
``checkpoint_last.pt`` (every epoch), ``checkpoint_best.pt`` (best validation ELBO) and
``summary.json``. Checkpoints are written atomically; ``resume=True`` continues from
``checkpoint_last.pt`` with the optimizer and RNG state it saved, so a resumed run reaches
the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import JitTrace_ELBO, Trace_ELBO, TraceMeanField_ELBO
from torch import nn

from . import evaluation
from .checkpoint import CheckpointError, load_model_state, read_checkpoint, save_checkpoint
from .config import ModelConfig, TrainConfig, read_metrics, save_json
from .data import DataError, Dataset, batches, binarize, check_finite

ELBOS = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO, "jit": JitTrace_ELBO}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def make_elbo(name: str, num_particles: int = 1):
    """A Pyro ELBO by short name: 'trace' (Trace_ELBO), 'meanfield' (TraceMeanField_ELBO,
    analytic KL where known), 'jit' (JitTrace_ELBO)."""
    if name not in ELBOS:
        raise ValueError(f"unknown ELBO {name!r}; choose one of {', '.join(ELBOS)}")
    kwargs = {"num_particles": num_particles, "vectorize_particles": num_particles > 1}
    if name == "jit":
        kwargs["ignore_jit_warnings"] = True
    return ELBOS[name](**kwargs)


class ELBOLoss(nn.Module):
    """-ELBO of ``module.model`` / ``module.guide`` as a differentiable ``nn.Module`` loss.

    Wrap it in ``DistributedDataParallel`` for multi-GPU training: its parameters are the
    module's.
    """

    def __init__(self, module: nn.Module, elbo=None):
        super().__init__()
        self.module = module
        self.elbo = elbo if elbo is not None else Trace_ELBO()
        # Bind once: JitTrace_ELBO keys its compiled graph on id(model), and every
        # ``module.model`` access makes a new bound-method object (a retrace per step).
        self._model, self._guide = module.model, module.guide

    def forward(self, x, kl_weight, num_data=None):
        return self.elbo.differentiable_loss(self._model, self._guide, x, kl_weight, num_data=num_data)


def select_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present (under torchrun, the GPU of this process's LOCAL_RANK),
    else CPU; otherwise the named device, checked."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return dev


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too
    pyro.set_rng_seed(seed)


def _rng_state():
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def kl_weight_at(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """beta * min(1, (step + 1) / warm-up steps): linear KL warm-up that never reaches 0
    (``poutine.scale`` needs a positive weight)."""
    if cfg.warmup_epochs <= 0:
        return cfg.beta
    warm = max(1.0, cfg.warmup_epochs * steps_per_epoch)
    return cfg.beta * min(1.0, (step + 1) / warm)


@torch.no_grad()
def validation_elbo(module, x, batch_size=1000) -> float:
    """Mean ELBO per data point (nats), one sample of z per point."""
    return evaluation.elbo(module.model, module.guide, x, batch_size=batch_size).mean().item()


def _prepare(ds: Dataset, cfg: TrainConfig, likelihood, seed_offset: int, what: str):
    """Check the data at the boundary, binarize statically (seeded) where asked, and check the
    result against the likelihood's support, so bad data fail here with a clear message."""
    check_finite(ds.x, f"{what} data")
    x = binarize(ds.x, seed=cfg.seed + seed_offset) if cfg.binarize == "static" else ds.x
    # dynamic binarization: check one binarized draw (binarize() checks the [0, 1] range)
    sample = binarize(x, seed=0) if cfg.binarize == "dynamic" else x
    check = getattr(likelihood, "check_data", None)
    if check is not None:
        try:
            check(sample)
        except ValueError as e:
            raise DataError(f"{what} data: {e}") from None
    return x


def _distributed():
    """(rank, world size) under torch.distributed (e.g. torchrun), else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _all_mean(value: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        value = value.clone()
        torch.distributed.all_reduce(value)
        value /= world
    return value


def fit(module: nn.Module, train: Dataset, val: Dataset, cfg: TrainConfig | None = None, run_dir=None,
        model_config: ModelConfig | None = None, resume: bool = False, progress: bool = True,
        extra_config: dict | None = None, log=print) -> dict:
    """Train ``module`` (any object with ``model``/``guide``) on ``train``; validate on ``val``.

    Returns a summary dict (best and final validation ELBO, epochs, time). With ``run_dir``,
    writes config, metrics, checkpoints and summary there. With ``model_config`` a checkpoint
    alone rebuilds the model (:func:`pyro_vae.load_checkpoint`); without it (a hand-built
    module) ``resume`` still works, given the same module.

    Under ``torch.distributed`` (e.g. ``torchrun --nproc_per_node=2 ...``) the loss module is
    wrapped in ``DistributedDataParallel``: every rank draws the same shuffled batches (a
    data generator seeded alike on all ranks) and works on its own slice of each batch;
    gradients are averaged, so each step matches single-process training on the whole batch
    in expectation. Rank 0 alone writes files and logs.
    """
    from tqdm.auto import tqdm

    cfg = cfg if cfg is not None else TrainConfig()
    if cfg.binarize not in ("none", "static", "dynamic"):
        raise ValueError(f"binarize must be none, static or dynamic, got {cfg.binarize!r}")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0 or cfg.beta <= 0:
        raise ValueError("epochs and batch_size must be >= 1, lr and beta > 0")
    rank, world = _distributed()
    main_proc = rank == 0
    if not main_proc:
        progress, log = False, (lambda *_: None)
    device = select_device(cfg.device)
    run_dir = Path(run_dir) if run_dir is not None else None
    writes = run_dir is not None and main_proc
    likelihood = getattr(module, "likelihood", None)
    if hasattr(module, "check_shape"):
        module.check_shape(train.x[:1])

    set_seed(cfg.seed)
    module.to(device)
    x_train = _prepare(train, cfg, likelihood, 0, "training").to(device)
    # validation and test data are binarized once with a fixed seed whatever the training mode
    val_cfg = dataclasses.replace(cfg, binarize="static" if cfg.binarize != "none" else "none")
    x_val = _prepare(val, val_cfg, likelihood, 1, "validation").to(device)
    n = x_train.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    # shuffling and dynamic binarization draw from their own generator, seeded alike on every
    # rank; the global RNG (Monte Carlo samples of z) gets a different stream per rank
    data_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    if world > 1:
        torch.manual_seed(cfg.seed + 1000 * rank)

    elbo = make_elbo(cfg.elbo, cfg.num_particles)
    loss_fn = ELBOLoss(module, elbo)
    optimizer = torch.optim.Adam(module.parameters(), lr=cfg.lr)

    start_epoch, step, best, history, bad_epochs = 0, 0, -math.inf, [], 0
    if run_dir is not None:
        last = run_dir / "checkpoint_last.pt"
        if resume:
            if not last.exists():
                raise CheckpointError(f"--resume: no checkpoint_last.pt in {run_dir} to resume from")
            ckpt = read_checkpoint(last)
            load_model_state(module, ckpt["model_state"], source=str(last))
            module.to(device)
            optimizer.load_state_dict(ckpt["optimizer_state"])
            start_epoch, step, best = ckpt["epoch"], ckpt["step"], ckpt["best_val_elbo"]
            bad_epochs = ckpt.get("bad_epochs", 0)
            history = read_metrics(run_dir / "metrics.jsonl")[:start_epoch]
            _set_rng_state(ckpt["rng"])
            data_gen.set_state(ckpt["rng"]["data"].to(data_gen.get_state().device))
            if world > 1:  # rank 0's saved stream: give each rank its own again
                torch.manual_seed(cfg.seed + 1000 * rank + 7919 * start_epoch)
            if writes:
                _write_metrics(run_dir / "metrics.jsonl", history)
            log(f"resuming {run_dir} after epoch {start_epoch} (best validation ELBO {best:.2f})")
        elif last.exists():
            raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it "
                                  f"or choose another --out folder")
        if writes:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_json(run_dir / "config.json", {
                "model": dataclasses.asdict(model_config) if model_config else None,
                "train": dataclasses.asdict(cfg), "world_size": world, **(extra_config or {})})

    step_fn = loss_fn
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_fn = DistributedDataParallel(loss_fn, device_ids=[device.index] if device.type == "cuda" else None)

    def checkpoint(path, epoch):
        if writes:
            save_checkpoint(path, module, model_config, optimizer_state=optimizer.state_dict(),
                            train_config=dataclasses.asdict(cfg), epoch=epoch, step=step,
                            best_val_elbo=best, bad_epochs=bad_epochs,
                            rng={**_rng_state(), "data": data_gen.get_state()}, extra=extra_config or {})

    t_start = time.perf_counter()
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        module.train()
        t0 = time.perf_counter()
        xe = torch.bernoulli(x_train, generator=data_gen) if cfg.binarize == "dynamic" else x_train
        total = torch.zeros((), device=device)
        bar = tqdm(total=n, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="img", disable=not progress,
                   leave=False, dynamic_ncols=True)
        for i, idx in enumerate(batches(n, cfg.batch_size, shuffle=True, device=device, generator=data_gen)):
            if idx.numel() < world:
                break  # a last batch too small to give every rank a data point
            kl_w = kl_weight_at(step, steps_per_epoch, cfg)
            local = idx[rank::world]
            try:
                loss = step_fn(xe[local], torch.tensor(kl_w, device=device), num_data=n) / n
            except ValueError as e:
                # distribution argument validation: NaN/Inf parameters mean the run diverged
                if "invalid values" not in str(e):
                    raise
                loss = torch.tensor(float("nan"), device=device)
            finite = _all_mean(torch.isfinite(loss).float(), world) if world > 1 else torch.isfinite(loss)
            if not finite == 1:
                bar.close()
                raise TrainingDiverged(
                    f"loss became NaN or infinite at epoch {epoch + 1}, step {step}; stopped. "
                    + (f"The last good checkpoint is {run_dir / 'checkpoint_last.pt'}. " if run_dir else "")
                    + "Try a lower --lr or --clip-norm.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_norm:
                torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.clip_norm)
            optimizer.step()
            total += loss.detach() * idx.numel()
            step += 1
            if progress and (i % 10 == 0 or idx.numel() < cfg.batch_size):
                bar.set_postfix(loss=f"{loss.item():.2f}", kl_w=f"{kl_w:.3g}")
            bar.update(idx.numel())
        bar.close()
        train_time = time.perf_counter() - t0
        module.eval()
        val = _all_mean(torch.tensor(validation_elbo(module, x_val, cfg.val_batch_size), device=device), world).item()
        if not math.isfinite(val):
            raise TrainingDiverged(f"validation ELBO is {val} after epoch {epoch + 1}; stopped")
        improved = val > best
        best, bad_epochs = (val, 0) if improved else (best, bad_epochs + 1)
        row = {"epoch": epoch + 1, "step": step, "train_loss": _all_mean(total, world).item() / n,
               "val_elbo": val, "kl_weight": kl_weight_at(step - 1, steps_per_epoch, cfg),
               "images_per_s": n / train_time, "time_s": train_time}
        history.append(row)
        if writes:
            _append_metrics(run_dir / "metrics.jsonl", row)
            if improved:
                checkpoint(run_dir / "checkpoint_best.pt", epoch + 1)
            checkpoint(run_dir / "checkpoint_last.pt", epoch + 1)
        log(f"epoch {epoch + 1:3d}  train loss {row['train_loss']:.2f}  val ELBO {val:.2f} nats/img"
            f"  ({row['images_per_s']:.0f} img/s){'  *' if improved else ''}")
        if cfg.patience is not None and bad_epochs >= cfg.patience:
            log(f"early stopping: no better validation ELBO for {cfg.patience} epochs")
            stopped_early = True
            break

    summary = {"best_val_elbo": best, "final_val_elbo": history[-1]["val_elbo"] if history else None,
               "epochs_run": len(history), "steps": step, "stopped_early": stopped_early,
               "train_time_s": time.perf_counter() - t_start, "device": str(device),
               "world_size": world, "unit": "nats per image"}
    if writes:
        save_json(run_dir / "summary.json", summary)
    return summary


def _append_metrics(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _write_metrics(path: Path, rows) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)

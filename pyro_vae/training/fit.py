"""Training: any family (:mod:`pyro_vae.models.base`), any objective, a plain ``torch.optim``
optimizer, in steps a reader can see at once.

:func:`fit` is the whole loop::

    data = prepare_data(family, train, val, cfg, device)      # checks, binarization, label subset
    loss_fn = Loss(family, make_objective(cfg.objective, family, cfg.num_particles))
    state = _start_run(...)                                    # config.json; or --resume's checkpoint
    for epoch in ...:
        loop.train_epoch(epoch)       # for batch in epoch_data(...): train_step(...)  ((loss / N).backward())
        loop.end_epoch(epoch, ...)    # validate(...), metrics, save_checkpoints(...), early stopping

The run folder (:class:`pyro_vae.runs.folder.RunDir`) gets ``config.json``, ``metrics.jsonl`` (one JSON
line per epoch), ``checkpoint_last.pt`` (every epoch), ``checkpoint_best.pt`` (best validation
measure) and ``summary.json``; with ``test`` given, :func:`pyro_vae.training.finish.finish_run` then adds the
test metrics, the figures and the report. ``resume=True`` continues from ``checkpoint_last.pt``
with the optimizer and RNG state it saved, so a resumed run reaches the same parameters as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch
from torch import nn

from pyro_vae.inference import marginal as evaluation
from pyro_vae.runs.checkpoint import (RESUME_ENTRIES, CheckpointError, load_model_state, read_checkpoint, record_of,
                                      save_checkpoint)
from pyro_vae.config import DataConfig, ModelConfig, TrainConfig, save_json
from pyro_vae.files import RunFileError, run_folder
from pyro_vae.devices import memory_budget, select_device, set_seed
from pyro_vae.data.batch import (Batch, DataError, batches, binarize, check_finite, check_shift, for_evaluation,
                                 mixed_batches, select_labels, shift_images)
from pyro_vae.models import complete_config
from pyro_vae.models.base import check_family
from pyro_vae.inference.objectives import Loss, make_objective
from pyro_vae.runs.folder import RunDir


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT (Ctrl-C) or SIGTERM; the message says whether a checkpoint
    to ``--resume`` from exists, or that none was written yet; ``signum`` says which signal (the
    CLI exits with 128 + signum)."""

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.signum = signum


class _StopRequests:
    """SIGINT and SIGTERM handlers for the training loop: the first signal asks the loop to stop
    at the next safe point (after the current step: a checkpoint is written, then
    :class:`TrainingInterrupted` is raised); a second SIGINT stops at once (the last
    checkpoint on disk stays valid: every write is atomic). Installed only in the main thread,
    and only for a signal that is not ignored; on exit the handlers found are put back."""

    def __init__(self):
        self.signum = None
        self._saved = {}

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                # A signal ignored when training starts stays ignored: a job started in the
                # background (`cmd &`, nohup) has SIGINT ignored so that Ctrl-C in its terminal
                # reaches the foreground job only; catching it here would let that Ctrl-C stop
                # this run after all. None: a handler not set from Python, which signal.signal
                # could not put back: left alone too.
                if signal.getsignal(sig) in (signal.SIG_IGN, None):
                    continue
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved = {}


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


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """The learning rate of step ``step`` (0-based) of ``total_steps``: ``cfg.lr`` throughout, or
    with ``lr_schedule="cosine"`` cfg.lr * (1 + cos(pi * step / total_steps)) / 2, from cfg.lr
    down to near 0 at the last step (a function of the step alone, so a resumed run follows it)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))


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


# ---------------------------------------------------------------------- data
def needs_binary_data(family) -> bool:
    """Whether ``family``'s likelihood models binary data: it declares ``binary_data = True``
    (the Bernoulli likelihood does). The one place that reads the declaration; a family without
    a ``likelihood`` (or one that declares nothing) is taken to model its data as given."""
    return bool(getattr(getattr(family, "likelihood", None), "binary_data", False))


def resolve_binarize(cfg: TrainConfig, family, log=None) -> TrainConfig:
    """``cfg`` with ``binarize="auto"`` made concrete for ``family``: ``dynamic`` when its
    likelihood needs binary data (:func:`needs_binary_data`), else ``none`` (a continuous
    likelihood sees the data as given). The resolved mode is what a run records, so evaluation
    and figures read a concrete one. An explicit ``static``/``dynamic`` with a likelihood that
    does not need binary data is kept, with one warning line through ``log``."""
    binary = needs_binary_data(family)
    if cfg.binarize == "auto":
        return dataclasses.replace(cfg, binarize="dynamic" if binary else "none")
    likelihood = getattr(family, "likelihood", None)
    if cfg.binarize != "none" and not binary and likelihood is not None and log is not None:
        log(f"warning: binarize={cfg.binarize!r} turns the data into 0/1 images, but the likelihood "
            f"{type(likelihood).__name__} models the data as given (not binary data); leave binarize='auto' "
            f"(here: none) unless binary images are what you mean to model")
    return cfg


def model_dtype(family) -> torch.dtype:
    """The floating dtype of ``family``'s parameters (the default dtype when it has none)."""
    p = next((p for p in family.parameters() if p.is_floating_point()), None)
    return p.dtype if p is not None else torch.get_default_dtype()


def _as_dtype(ds: Batch, dtype: torch.dtype) -> Batch:
    """Floating data cast to the model's dtype (float64 arrays for a float32 model): once, at
    the boundary, instead of a dtype error deep inside a matrix product."""
    if ds.x.is_floating_point() and ds.x.dtype != dtype:
        return ds.replace(x=ds.x.to(dtype))
    return ds


@dataclass
class TrainData:
    """The data of a run, checked; on the device, or read batch by batch (``streamed``)."""

    train: Batch  # statically binarized if asked; the labelled mask set by --labels (or a StreamedData)
    val: Batch  # binarized by the evaluation rule (data.for_evaluation)
    labelled_idx: torch.Tensor | None = None  # semi-supervised: the labelled training points
    labelled_batch_size: int = 0
    device: torch.device = torch.device("cpu")
    likelihood_check: object = None  # checks a streamed batch against the likelihood's support
    on_host: bool = False  # in host memory (too large for the GPU): each batch is moved when used
    dtype: torch.dtype = torch.float32  # the model's: floating data are cast to it (a streamed batch when read)

    @property
    def n(self) -> int:
        return len(self.train)

    @property
    def streamed(self) -> bool:
        return not isinstance(self.train, Batch)

    @property
    def moved_per_batch(self) -> bool:
        return self.streamed or self.on_host


def _check_x(family, ds: Batch, cfg: TrainConfig, seed_offset: int, what: str) -> torch.Tensor:
    """Check the data at the boundary, cast floating data to the model's dtype, binarize
    statically (seeded) where asked, and check the result against the likelihood's support, so
    bad data fail here with a clear message."""
    if len(ds) == 0:
        raise DataError(f"{what} data are empty")
    ds = _as_dtype(ds, model_dtype(family))
    check_finite(ds.x, f"{what} data")
    x = binarize(ds.x, seed=cfg.seed + seed_offset) if cfg.binarize == "static" else ds.x
    # dynamic binarization: check one binarized draw (binarize() checks the [0, 1] range)
    sample = binarize(x, seed=0) if cfg.binarize == "dynamic" else x
    check = getattr(getattr(family, "likelihood", None), "check_data", None)
    if check is not None:
        try:
            check(sample)
        except ValueError as e:
            raise DataError(f"{what} data: {e}") from None
    return x


def prepare_data(family, train: Batch, val: Batch, cfg: TrainConfig, device) -> TrainData:
    """Checked training and validation data on ``device``; the labelled subset drawn (seeded)
    when ``cfg.labels`` is set. A streamed training split (:class:`pyro_vae.data.streaming.StreamedData`)
    stays on disk: its first rows are checked here, every batch when it is read.
    ``cfg.binarize="auto"`` is resolved for ``family`` (:func:`resolve_binarize`)."""
    if cfg.binarize == "auto":
        cfg = resolve_binarize(cfg, family)
    streamed = not isinstance(train, Batch)
    if cfg.augment_shift and len(train.data_shape) != 3:
        raise DataError(f"augment_shift={cfg.augment_shift} moves images: it needs image data (C, H, W), got data "
                        f"of shape {tuple(train.data_shape)}; leave it at 0")
    if cfg.augment_shift:
        check_shift(cfg.augment_shift, train.data_shape)  # before any work, not at the first batch
    for ds, what in ((train.head(16) if streamed else train, "training"), (val, "validation")):
        try:
            family.check_batch(ds)
        except ValueError as e:
            raise ValueError(f"{what} data: {e}") from None
    if streamed:
        if cfg.binarize == "static":
            raise DataError("binarize='static' needs the whole training set in memory; with streamed data use "
                            "binarize='dynamic', or binarize the file once beforehand and use binarize='none'")
        _check_x(family, train.head(256), cfg, 0, "training")
    else:
        train = train.replace(x=_check_x(family, train, cfg, 0, "training"))
    check_finite(val.x, "validation data")
    val = for_evaluation(val, cfg.binarize)
    val = val.replace(x=_check_x(family, val, dataclasses.replace(cfg, binarize="none"), 1, "validation"))
    labelled_idx, per_batch = None, 0
    if cfg.labels is not None and not getattr(family, "partial_labels", False):  # a mask it would ignore
        raise DataError(f"labels={cfg.labels} keeps only some training labels, but {type(family).__name__} does "
                        f"not train on partly labelled data (a family with partial_labels = True does); "
                        f"leave labels unset")
    if cfg.labels is not None:
        train = select_labels(train, cfg.labels, seed=cfg.seed, num_classes=getattr(family, "num_classes", None))
        labelled_idx = train.labelled.nonzero().reshape(-1).to(device)
        per_batch = cfg.labelled_batch_size
        if per_batch is None:
            per_batch = min(len(labelled_idx), max(1, cfg.batch_size // 2))
    check = getattr(getattr(family, "likelihood", None), "check_data", None)
    device, dtype = torch.device(device), model_dtype(family)
    if not streamed and device.type == "cuda":

        if train.x.numel() * train.x.element_size() > memory_budget(device):
            # more than the GPU can hold beside the model: the data stay in host memory, batches move
            return TrainData(train, val.to(device), labelled_idx, per_batch, device, check, on_host=True, dtype=dtype)
    return TrainData(train if streamed else train.to(device), val.to(device), labelled_idx, per_batch, device, check,
                     dtype=dtype)


def epoch_batches(data: TrainData, cfg: TrainConfig, generator):
    """One epoch of training batches (index tensors into ``data.train``): every point once in
    random order, plus ``labelled_batch_size`` labelled points per batch when semi-supervised."""
    if data.labelled_idx is not None and data.labelled_batch_size > 0:
        return mixed_batches(data.n, cfg.batch_size, data.labelled_idx, data.labelled_batch_size, generator)
    return batches(data.n, cfg.batch_size, shuffle=True, device=data.device, generator=generator)


def epoch_data(data: TrainData, cfg: TrainConfig, generator, rank: int = 0, world: int = 1, first: int = 0):
    """Yield ``(i, size, batch)`` for the training batches of one epoch from batch ``first`` on:
    ``size`` data points in batch i, of which ``batch`` (on the device) is this rank's slice.

    With ``--augment-shift S`` each image is first moved by a random offset of up to S pixels
    (:func:`pyro_vae.data.batch.shift_images`), drawn from the same per-batch generator.

    The order comes from :func:`epoch_batches`; with ``--binarize dynamic`` each batch is binarized
    on the device with a generator seeded from one number the epoch draws from ``generator`` and
    the batch's index, so the draws do not depend on how the data are held (in memory, or
    streamed and read by worker processes). A streamed batch is checked when read (finite values,
    the binarization range, the likelihood's support), without a device sync."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=data.device).item()) \
        if cfg.binarize == "dynamic" or cfg.augment_shift else 0
    index_batches = list(epoch_batches(data, cfg, generator))
    mine = [idx[rank::world] for idx in index_batches[first:]]
    if data.streamed:
        parts = (Batch(*part) for part in data.train.loader([m.cpu() for m in mine]))
    else:
        parts = (data.train.subset(m.to(data.train.x.device)) for m in mine)
    for i, (idx, part) in enumerate(zip(index_batches[first:], parts), start=first):
        if data.streamed:
            part = _checked_stream_batch(part, data, cfg, i)
        if data.moved_per_batch:
            part = part.to(data.device)
        if cfg.binarize == "dynamic" or cfg.augment_shift:
            g = torch.Generator(device=data.device).manual_seed(seed + i * world + rank)
            x = shift_images(part.x, cfg.augment_shift, g) if cfg.augment_shift else part.x
            part = part.replace(x=torch.bernoulli(x, generator=g) if cfg.binarize == "dynamic" else x)
        yield i, idx.numel(), part


def _checked_stream_batch(part: Batch, data: TrainData, cfg: TrainConfig, i: int) -> Batch:
    from pyro_vae.data.batch import check_finite

    where = f"training data (streamed batch {i})"
    part = _as_dtype(part, data.dtype)
    check_finite(part.x, where)
    if cfg.binarize == "dynamic":
        if part.x.numel() and (part.x.min() < 0 or part.x.max() > 1):
            raise DataError(f"{where}: binarization treats pixel values as probabilities and needs them in "
                            f"[0, 1]; got min {part.x.min().item():.4g}, max {part.x.max().item():.4g}")
    elif data.likelihood_check is not None:
        try:
            data.likelihood_check(part.x)
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
    return part


# ---------------------------------------------------------------------- one step, one validation
def make_optimizer(params, lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel where PyTorch has one for the parameters' device (one kernel
    for all parameters instead of a loop over them: the same update, faster), else the default."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


_KL = [None, None]  # the last KL weight as a tensor: (value, device) and the tensor


def _kl_tensor(kl_weight: float, device) -> torch.Tensor:
    """The KL weight as a 0-d tensor (a graph input of the JIT objectives), made once per value:
    after warm-up every step reuses one tensor instead of creating it."""
    key = (float(kl_weight), torch.device(device))
    if _KL[0] != key:
        _KL[:] = [key, torch.tensor(key[0], device=device)]
    return _KL[1]


def train_step(step_fn, optimizer, params, batch: Batch, kl_weight: float, num_data: int, cfg: TrainConfig,
               world: int = 1, check_args: bool = False) -> torch.Tensor:
    """One optimizer step on the per-data-point loss; raises :class:`TrainingDiverged` on a
    non-finite loss (every rank together under DDP). Returns the loss (a detached 0-d tensor).

    ``check_args``: run Pyro's distribution-argument validation (training does on its first
    step, where a failure is a bug in the programs; later a numerical fault shows as a NaN loss,
    detected by its value)."""
    try:
        with pyro.validation_enabled(check_args):
            loss = step_fn(batch, _kl_tensor(kl_weight, batch.x.device), num_data=num_data) / num_data
    except ValueError:
        # a distribution refusing NaN arguments: a numerical fault if the parameters are no longer
        # finite (checked by value), else a genuine error in the programs or the data
        if not all(bool(torch.isfinite(p).all()) for p in params):
            raise TrainingDiverged("the parameters became NaN or infinite") from None
        raise
    # one read of the loss per step either way (cheaper than a tensor test: about 20 us at batch 32)
    finite = _all_mean(torch.isfinite(loss).float(), world) == 1 if world > 1 else math.isfinite(loss.item())
    if not finite:
        raise TrainingDiverged("the loss became NaN or infinite")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip_norm:
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def validation_elbo(family, data, batch_size=1000) -> float:
    """Mean ELBO per data point (nats), one sample of the latents per point, labels hidden."""
    data = data if isinstance(data, Batch) else Batch(data)
    return evaluation.elbo(family.model, family.guide, *family.args(data.unlabelled()),
                           batch_size=batch_size, max_plate_nesting=getattr(family, "max_plate_nesting", None),
                           data_plate=getattr(family, "plate_name", "data")).mean().item()


@torch.no_grad()
def validate(family, val: Batch, cfg: TrainConfig) -> dict:
    """``{"elbo": ..., **family.metrics(val)}`` on the validation data. Distribution-argument
    validation is off (the data were checked before training): a numerical fault shows as a
    non-finite ELBO, which the caller checks by value."""
    with pyro.validation_enabled(False):
        out = {"elbo": validation_elbo(family, val, cfg.val_batch_size)}
        out.update(family.metrics(val) if hasattr(family, "metrics") else {})
    select = getattr(family, "select_by", "elbo")
    if select not in out:
        from pyro_vae.models.base import ContractError

        raise ContractError(f"{type(family).__name__}.select_by is {select!r}, but its metrics() gave only "
                            f"{', '.join(sorted(out))} on the validation data")
    return out


# ---------------------------------------------------------------------- state and checkpoints
@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0
    best: float = -math.inf  # best validation value of family.select_by
    bad_epochs: int = 0
    history: list = field(default_factory=list)
    in_epoch: dict | None = None  # where an interrupted epoch stopped (batches done, loss so far, RNG)


def _objective_state() -> dict:
    """State an objective keeps outside the model: the decaying-average baselines that Pyro's
    ``TraceGraph_ELBO`` keeps in the param store (``__baseline_avg_downstream_cost_*``)."""
    store = pyro.get_param_store()
    return {k: store[k].detach().cpu() for k in store.keys() if k.startswith("__baseline")}


def _set_objective_state(saved: dict, device) -> None:
    store = pyro.get_param_store()
    for k, v in (saved or {}).items():
        store[k] = v.to(device)


def save_checkpoints(run: RunDir, family, model_config, optimizer, cfg, state: TrainState, data_gen,
                     improved: bool, extra=None) -> None:
    """``checkpoint_best.pt`` (when improved) and ``checkpoint_last.pt``, each written atomically.

    ``data_gen``: the data generator's state to resume from (the next epoch's, or for an
    interrupted epoch the state at its start, with ``state.in_epoch`` saying how far it got)."""
    data_state = data_gen if torch.is_tensor(data_gen) else data_gen.get_state()
    payload = dict(optimizer_state=optimizer.state_dict(), train_config=dataclasses.asdict(cfg),
                   epoch=state.epoch, step=state.step, best_val=state.best, bad_epochs=state.bad_epochs,
                   rng={**_rng_state(), "data": data_state}, extra=extra or {},
                   objective_state=_objective_state(), in_epoch=state.in_epoch)
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
    _set_rng_state(ckpt["rng"])
    data_gen.set_state(ckpt["rng"]["data"].to(data_gen.get_state().device))
    _set_objective_state(ckpt.get("objective_state"), device)
    epoch = ckpt["epoch"]
    return TrainState(epoch, ckpt["step"], ckpt.get("best_val", ckpt.get("best_val_elbo", -math.inf)),
                      ckpt.get("bad_epochs", 0), run.read_metrics()[:epoch], ckpt.get("in_epoch"))


class TensorBoardLog:
    """TensorBoard events of a run (``torch.utils.tensorboard``): each epoch the scalars of its
    ``metrics.jsonl`` row (loss, validation measures, KL weight, images/s), the validation ELBO's
    two terms, and for image data a grid of validation reconstructions and of samples. Its own
    Monte Carlo draws run on a forked random state, so a run is the same with or without it."""

    def __init__(self, folder):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ValueError("tensorboard=True needs the tensorboard package: pip install 'pyro-vae[tensorboard]' "
                             f"(or pip install tensorboard) ({e})") from None
        self.writer = SummaryWriter(str(folder))

    def epoch(self, row: dict, family, val: Batch, images: int = 16) -> None:
        step = row["epoch"]
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key if key.startswith(("val_", "train_")) else f"train/{key}", value, step)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            sub = val.subset(slice(0, 500)).unlabelled()
            ll, kl = evaluation.elbo_terms(family.model, family.guide, *family.args(sub),
                                           data_plate=getattr(family, "plate_name", "data"))
            self.writer.add_scalar("val_terms/recon_log_lik", ll.mean().item(), step)
            self.writer.add_scalar("val_terms/kl", kl.mean().item(), step)
            shape = tuple(getattr(family, "data_shape", ()))
            if len(shape) == 3 and shape[0] in (1, 3):
                if callable(getattr(family, "reconstruct", None)) and not getattr(family, "conditional", False):
                    x = val.x[:images // 2]
                    both = torch.cat([x, family.reconstruct(x).reshape(x.shape)]).clamp(0, 1)
                    self.writer.add_images("reconstructions", both.cpu(), step)
                if callable(getattr(family, "sample", None)) and not getattr(family, "conditional", False):
                    self.writer.add_images("samples", family.sample(images).reshape(images, *shape).clamp(0, 1).cpu(),
                                           step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class ConfigMismatch(ValueError):
    """Resuming with settings that differ from the stored run's."""


# the total epoch count (extending a run is what resuming is for) and the test evaluation's k
# (it changes no step of training)
ALWAYS_CHANGEABLE = ("train.epochs", "train.eval_k")
IGNORED_ON_RESUME = ("command", "versions", "resumes", "reproduced_from", "objective", "data.test",
                     "data.stream", "data.streamed", "data.workers")  # how the data are read: same batches either way


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def check_resume_config(stored: dict, new: dict, allow_changes=()) -> dict:
    """The settings of a resumed run against the run's record (the checkpoint's, see
    :func:`pyro_vae.runs.checkpoint.run_record`; ``config.json`` is a copy of it): returns the changes
    ``{key: [stored, new]}`` that are allowed (the epoch count, and keys or last key parts named in
    ``allow_changes``, e.g. ``"lr"`` or ``"train.lr"``); raises :class:`ConfigMismatch` naming every
    other difference (a different seed, data set, model option, learning rate, batch size, ...
    would make the resumed run a different run)."""
    import json as _json

    def norm(v):
        return _json.loads(_json.dumps(v, default=str))

    a, b = _flatten(norm(stored)), _flatten(norm(new))
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
            f"was, or change them on purpose with allow_changes={names!r}")
    return changed


def _config_copy_edits(copy: dict, record: dict) -> list:
    """Where ``config.json`` (``copy``) says otherwise than the checkpoint's ``record``: its
    settings, not the history (``resumes``, ``command``, versions) nor what may always change."""
    a, b = (_flatten(json.loads(json.dumps(d, default=str))) for d in (copy, record))
    edits = []
    for key in sorted(b):
        if key.split(".")[0] in IGNORED_ON_RESUME or key in IGNORED_ON_RESUME or key in ALWAYS_CHANGEABLE:
            continue
        if a.get(key, "<missing>") != b[key]:
            edits.append(f"{key} is {a.get(key, 'missing')!r} there, {b[key]!r} in the checkpoint")
    return edits


def _check_config_copy(run: RunDir, record: dict, log, write: bool) -> dict:
    """``config.json`` against the checkpoint's record before a resume. The checkpoint is the
    truth: a config.json that says otherwise was edited by hand (or belongs to another run), and
    continuing would make the copy lie, or make the next ``--resume`` pick up the edit, so it is
    refused with the fix; a missing one is rewritten from the checkpoint (``write``: this process
    writes the run's files), with a note. Returns what config.json held ({} when missing)."""
    if not os.path.lexists(run.config):
        if write:
            save_json(run.config, record)
            log(f"note: {run.config} was missing; rewritten from {run.last}")
        return {}
    try:
        copy = json.loads(run.config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        copy = None
    edits = ["it is not a JSON object"] if not isinstance(copy, dict) else _config_copy_edits(copy, record)
    if edits:
        raise ConfigMismatch(f"{run.config} was edited since {run.last} was written ({'; '.join(edits)}): resume=True "
                             f"continues the run the checkpoint records; restore {RunDir.CONFIG}, or delete it to "
                             f"have it rewritten from the checkpoint")
    return copy


# ---------------------------------------------------------------------- the loop
def fit(family: nn.Module, train: Batch, val: Batch, cfg: TrainConfig | None = None, run_dir=None,
        model_config: ModelConfig | None = None, resume: bool = False, progress: bool = True,
        extra_config: dict | None = None, log=print, objective=None, test: Batch | None = None,
        eval_k: int | None = None, test_label: str = "test", plots: bool = True, allow_changes=(),
        tensorboard: bool = False) -> dict:
    """Train ``family`` on ``train``; validate on ``val`` every epoch.

    Returns a summary dict (best validation measures, epochs, time). With ``run_dir``, writes
    config, metrics, checkpoints and summary there, and with ``test`` (a Batch) ends like the
    CLI: test evaluation with ``cfg.eval_k`` importance samples (``eval_k``, if given, sets it
    and is recorded with it), figures and report (:func:`pyro_vae.training.finish.finish_run`; needs
    ``model_config`` to rebuild the best checkpoint).
    ``objective``: an object with ``differentiable_loss`` to use instead of ``cfg.objective``.
    ``log``: where the per-epoch lines go (a callable taking a string; None: nowhere).

    ``cfg.binarize="auto"`` (the default) is resolved once here (:func:`resolve_binarize`):
    ``dynamic`` for a likelihood of binary data (Bernoulli), ``none`` otherwise; the run records
    the resolved mode. Floating data are cast once to the model's dtype.

    ``resume=True`` continues from ``checkpoint_last.pt`` (also one written mid-epoch by Ctrl-C or
    SIGTERM) bit for bit on CPU. The checkpoint records the run (:func:`pyro_vae.runs.checkpoint.run_record`)
    and is the truth: settings that differ from its record are refused (:func:`check_resume_config`)
    except the epoch count, ``eval_k`` and the fields named in ``allow_changes``; a ``config.json``
    edited since is refused, a missing one rewritten from the checkpoint. The run folder is locked
    while training (:class:`pyro_vae.files.RunLock`); a file that cannot be written (full disk,
    read-only folder, ...) stops the run with a :class:`pyro_vae.files.RunFileError` naming it,
    the last checkpoint intact.

    ``tensorboard=True`` (needs the ``tensorboard`` package: ``pip install pyro-vae[tensorboard]``)
    also writes TensorBoard events to ``RUN/tensorboard/`` each epoch (:class:`TensorBoardLog`).

    Ctrl-C or SIGTERM stop the run at the next step with a checkpoint (:class:`TrainingInterrupted`);
    a signal that was ignored when ``fit`` started (SIGINT in a background job) stays ignored, and
    the handlers found are put back at the end.

    Under ``torch.distributed`` (e.g. ``torchrun --nproc_per_node=2 ...``) the loss module is
    wrapped in ``DistributedDataParallel``: every rank draws the same shuffled batches (a
    data generator seeded alike on all ranks) and works on its own slice of each batch;
    gradients are averaged, so each step matches single-process training on the whole batch
    in expectation. Rank 0 alone writes files and logs (and says once that the run is distributed).
    """
    log = log if log is not None else (lambda message: None)
    cfg = (cfg if cfg is not None else TrainConfig()).check()
    if eval_k is not None:  # the keyword of older versions: recorded in the run like --eval-k
        cfg = dataclasses.replace(cfg, eval_k=eval_k).check()
    check_family(family)
    if test is not None and (run_dir is None or model_config is None):
        raise ValueError("fit(test=...) evaluates the best checkpoint at the end: it needs run_dir and "
                         "model_config (to rebuild the model from the checkpoint)")
    if objective is not None and cfg.free_bits:
        raise ValueError("fit(objective=...) and free_bits: free bits replace the ELBO objective; pass one of them")
    model_config = complete_config(model_config) if model_config is not None else None
    # a run trained from Python names its data too (sizes, no source), so every command opens it
    extra_config = {"data": DataConfig.of(train, val).to_dict(), **(extra_config or {})}
    rank, world = _distributed()
    if rank != 0:
        progress, log = False, (lambda *_: None)
    cfg = resolve_binarize(cfg, family, log)
    run = RunDir(run_dir) if run_dir is not None else None
    loop = lock = None
    try:
        device = select_device(cfg.device)
        set_seed(cfg.seed)
        family.to(device)
        data = prepare_data(family, train, val, cfg, device)
        if world > 1:
            per = f"{cfg.batch_size // world}" + (f"-{-(-cfg.batch_size // world)}" if cfg.batch_size % world else "")
            log(f"distributed: {world} processes ({torch.distributed.get_backend()}), global batch "
                f"{cfg.batch_size} = {world} x {per}")
        # shuffling and dynamic binarization draw from their own generator, seeded alike on every
        # rank; the global RNG (Monte Carlo samples of z) gets a different stream per rank
        data_gen = torch.Generator(device=device).manual_seed(cfg.seed)
        if world > 1:
            torch.manual_seed(cfg.seed + 1000 * rank)
        loss_fn = Loss(family, make_objective(objective if objective is not None else cfg.objective, family,
                                              cfg.num_particles, free_bits=cfg.free_bits), precision=cfg.precision)
        loop = _Loop(family, cfg, data, loss_fn, make_optimizer(family.parameters(), cfg.lr), data_gen, device,
                     rank, world, run if rank == 0 else None, model_config, extra_config, log, progress)
        if loop.run is not None:
            from pyro_vae.files import RunLock

            lock = RunLock(run.path, command=(extra_config or {}).get("command")).acquire()
            if lock.stale:
                log(f"note: {run} was left locked by {RunLock.describe(lock.stale)}, which is no longer running; "
                    f"taking it over")
        if run is not None:
            loop.state = _start_run(loop, run, resume, allow_changes)
        loop.open(tensorboard)
        t_start = time.perf_counter()
        stopped_early = False
        for epoch in range(loop.state.epoch, cfg.epochs):
            total, seen, seconds = loop.train_epoch(epoch)
            if loop.end_epoch(epoch, total, seen, seconds):
                stopped_early = True
                break
        loop.close()

        summary = _summary(loop.state, loop.select, stopped_early, time.perf_counter() - t_start, device, world)
        if loop.run is not None:
            save_json(run.summary, summary)
            if test is not None:
                from pyro_vae.training.finish import finish_run  # lazily: figures and report load matplotlib

                test = _as_dtype(for_evaluation(test, cfg.binarize), model_dtype(family))
                finish_run(run, test, label=test_label, eval_k=cfg.eval_k, device=cfg.device, plots=plots,
                           progress=progress, log=log)
                summary = run.read_json(run.summary)
        return summary
    except KeyboardInterrupt as e:  # before the loop catches signals, or a second Ctrl-C: say what is left
        if isinstance(e, TrainingInterrupted):
            raise
        where = _after_interrupt(run if rank == 0 else None)
        log(f"SIGINT: stopped; {where}")
        raise TrainingInterrupted(f"SIGINT: training stopped; {where}", signal.SIGINT) from None
    finally:
        if loop is not None:
            loop.close()
        if lock is not None:
            lock.release()


def _steadier(cfg: TrainConfig) -> str:
    """The advice after a divergence: smaller steps, or a cap on the gradient norm (a tenth of
    the current learning rate and clip norm, say)."""
    clip = f"{cfg.clip_norm / 10:g}" if cfg.clip_norm else "1.0"
    return (f"Try a lower learning rate (lr={cfg.lr / 10:g}, say) or clip the gradient norm "
            f"(clip_norm={clip}).")


def _after_interrupt(run: RunDir | None, written: bool = False) -> str:
    """What an interrupted run leaves: the checkpoint to ``--resume`` from, or none yet."""
    if run is None:
        return "nothing written (no run folder)"
    if run.last.exists():
        return (f"checkpoint written: {run.last}" if written else f"the last checkpoint {run.last} stands") + \
            "; continue with resume=True"
    return "no checkpoint was written yet; start again"


def _start_run(loop: "_Loop", run: RunDir, resume: bool, allow_changes) -> TrainState:
    """The run folder at the start: a new run's ``config.json``; or for ``resume`` the record of
    ``checkpoint_last.pt`` (the truth) checked against ``config.json`` (its copy) and against
    this call's settings, and the checkpoint's state loaded. Sets ``loop.record``, the run's
    record that every checkpoint stores and ``config.json`` copies. Returns the state to train
    on from."""
    cfg, log = loop.cfg, loop.log
    new_config = {"model": loop.model_config.to_dict() if loop.model_config else None,
                  "train": dataclasses.asdict(cfg), "world_size": loop.world,
                  "objective": type(loop.loss_fn.objective).__name__, "versions": versions(), "resumes": [],
                  **(loop.extra_config or {})}
    # plain JSON data, as config.json holds it: the checkpoint stores the same (read with weights_only)
    new_config = json.loads(json.dumps(new_config, default=str))
    if not resume:
        if run.exists():
            raise FileExistsError(f"{run} already holds a run; pass resume=True to continue it "
                                  f"or choose another folder for option run_dir")
        loop.record = new_config
        if loop.run is not None:
            run_folder(run.path, link_ok=True)
            save_json(run.config, new_config)
            loop.config_written = new_config
        return TrainState()
    if not run.last.exists():
        raise CheckpointError(f"resume=True: no {RunDir.LAST} in {run} to resume from")
    ckpt = read_checkpoint(run.last, require=(*RESUME_ENTRIES, "train_config"))
    record = record_of(ckpt)
    # before touching anything
    copy = _check_config_copy(run, record, log, write=loop.run is not None)
    if "world_size" not in record:  # a checkpoint from before pyro-vae recorded these: config.json's
        record.update({k: copy[k] for k in ("world_size", "objective", "versions", "resumes") if k in copy})
    changed = check_resume_config(record, new_config, allow_changes)
    state = resume_state(run, loop.family, loop.optimizer, loop.data_gen, loop.device, ckpt)
    if loop.world > 1:  # rank 0's saved stream: give each rank its own again
        torch.manual_seed(cfg.seed + 1000 * loop.rank + 7919 * state.epoch)
    if loop.run is not None:
        _write_metrics(run.metrics, state.history)
    log(f"resuming {run} after epoch {state.epoch} (best validation {loop.select} {state.best:.4g})")
    resumes = list(record.get("resumes") or [])
    resumes.append({"at_epoch": state.epoch, "at_step": state.step, "command": new_config.get("command"),
                    "changed": changed, "versions": new_config["versions"]})
    loop.record = {**new_config, "resumes": resumes}
    if record.get("command") is not None:
        loop.record["command"] = record["command"]  # the command that started the run
    # config.json is rewritten with the next checkpoint (the copy of what that checkpoint records)
    return state


class _Loop:
    """The pieces of one training run that its epochs share. ``run`` is the run folder where
    this process writes files (None without one, and on every rank but 0 under DDP)."""

    def __init__(self, family, cfg, data, loss_fn, optimizer, data_gen, device, rank, world, run, model_config,
                 extra_config, log, progress):
        self.family, self.cfg, self.data, self.loss_fn, self.optimizer = family, cfg, data, loss_fn, optimizer
        self.data_gen, self.device, self.rank, self.world, self.run = data_gen, device, rank, world, run
        self.model_config, self.extra_config, self.log, self.progress = model_config, extra_config, log, progress
        self.params = [p for p in family.parameters() if p.requires_grad]
        self.select = getattr(family, "select_by", "elbo")
        self.steps_per_epoch = math.ceil(data.n / cfg.batch_size)
        self.state = TrainState()
        self.step_fn, self.stop, self.tb = loss_fn, None, None
        self.record = None  # the run's record (config.json's content), set by _start_run
        self.config_written = None  # the record config.json holds (written again only when it changes)

    def open(self, tensorboard: bool) -> None:
        """Wrap the loss for DDP, open TensorBoard, and start catching Ctrl-C and SIGTERM."""
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.step_fn = DistributedDataParallel(
                self.loss_fn, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        # run_folder: a link planted at RUN/tensorboard is refused, never followed out of the run
        self.tb = TensorBoardLog(run_folder(self.run.tensorboard)) if tensorboard and self.run is not None else None
        self.stop = _StopRequests().__enter__()

    def close(self) -> None:
        if self.stop is not None:
            self.stop.__exit__()
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def interrupt(self, epoch_start=None, in_epoch=None):
        """Ctrl-C or SIGTERM: write the checkpoint the run resumes from (inside an epoch, from
        ``epoch_start``'s data-generator state with ``in_epoch`` saying how far it got; between
        epochs, the one just written stands) and raise :class:`TrainingInterrupted`."""
        name, state = signal.Signals(self.stop.signum).name, self.state
        if self.run is not None and in_epoch is not None:
            state.in_epoch = in_epoch
            self.save(epoch_start, False)
            state.in_epoch = None
        self.stop.__exit__()
        saved = _after_interrupt(self.run, written=True)
        self.log(f"{name}: stopped at step {state.step}; {saved}")
        raise TrainingInterrupted(f"{name}: training stopped at step {state.step}; {saved}", self.stop.signum)

    def save(self, data_gen, improved: bool, metrics: bool = False) -> None:
        """``metrics.jsonl`` (with ``metrics``), the checkpoints (each holding the run's record),
        then ``config.json`` where the record changed (a resume): the copy of the record that
        ``checkpoint_last.pt`` now holds. A write that fails (full disk, ...) leaves the previous
        checkpoint whole (every write is atomic) and says how to go on."""
        extra = {k: v for k, v in self.record.items() if k not in ("model", "train")}
        try:
            if metrics:
                _write_metrics(self.run.metrics, self.state.history)
            save_checkpoints(self.run, self.family, self.model_config, self.optimizer, self.cfg, self.state, data_gen,
                             improved, extra)
            if self.config_written != self.record:
                save_json(self.run.config, self.record)
                self.config_written = self.record
        except RunFileError as e:
            raise e.then(f"{self.run.last} as written before is intact: continue with resume=True"
                         if self.run.last.exists() else "no checkpoint was written yet: start again") from None

    def _diverged(self, what: str) -> TrainingDiverged:
        where = (f"The last good checkpoint is {self.run.last} (epoch {self.state.epoch}). "
                 if self.run is not None and self.run.last.exists() else "No checkpoint was written yet. ")
        return TrainingDiverged(f"{what}; stopped. {where}{_steadier(self.cfg)}")

    def train_epoch(self, epoch: int):
        """One pass over the training data (from where an interrupted epoch stopped). Returns the
        summed loss (a tensor), the number of data points and the seconds it took."""
        from tqdm.auto import tqdm

        cfg, state, data = self.cfg, self.state, self.data
        self.family.train()
        if callable(getattr(self.family, "on_epoch", None)):
            self.family.on_epoch(epoch, cfg.epochs)  # a family's schedule (e.g. a relaxation temperature)
        t0 = time.perf_counter()
        epoch_start = self.data_gen.get_state()  # binarization and order of this epoch follow from it
        total, seen, first = torch.zeros((), device=self.device), 0, 0
        if state.in_epoch is not None:  # resuming inside this epoch: skip the batches it did
            first, seen = state.in_epoch["batch"], state.in_epoch["seen"]
            total = torch.tensor(state.in_epoch["total"], device=self.device)
        bar = tqdm(total=data.n, initial=min(seen, data.n), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="img",
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        for i, size, part in epoch_data(data, cfg, self.data_gen, self.rank, self.world, first):
            if state.in_epoch is not None:  # the Monte Carlo stream as it was when interrupted
                _set_rng_state(state.in_epoch["rng"])
                state.in_epoch = None
            if size < self.world:
                break  # a last batch too small to give every rank a data point
            kl_w = kl_weight_at(state.step, self.steps_per_epoch, cfg)
            if cfg.lr_schedule != "constant":
                for group in self.optimizer.param_groups:
                    group["lr"] = lr_at(state.step, self.steps_per_epoch * cfg.epochs, cfg)
            try:
                loss = train_step(self.step_fn, self.optimizer, self.params, part, kl_w, data.n, cfg, self.world,
                                  check_args=state.step == 0)
            except TrainingDiverged as e:
                bar.close()
                raise self._diverged(f"{str(e).replace('the ', '', 1)} at epoch {epoch + 1}, "
                                     f"step {state.step}") from None
            total += loss * size
            seen += size
            state.step += 1
            if self.progress and i % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.2f}", kl_w=f"{kl_w:.3g}")
            bar.update(min(size, data.n - bar.n))
            if self.stop.signum is not None:
                bar.close()
                self.interrupt(epoch_start, {"batch": i + 1, "seen": seen, "total": total.item(), "rng": _rng_state()})
        bar.close()
        return total, seen, time.perf_counter() - t0

    def end_epoch(self, epoch: int, total, seen: int, seconds: float) -> bool:
        """Validate, keep the best, write metrics, checkpoints and logs. Returns True when early
        stopping ends the run."""
        cfg, state, run = self.cfg, self.state, self.run
        if not all(bool(torch.isfinite(p).all()) for p in self.params):  # a finite loss, then a wild step
            raise self._diverged(f"the parameters became NaN or infinite in epoch {epoch + 1}")
        self.family.eval()
        measures = {k: _all_mean(torch.tensor(float(v), device=self.device), self.world).item()
                    for k, v in validate(self.family, self.data.val, cfg).items()}
        if not math.isfinite(measures["elbo"]):
            raise TrainingDiverged(f"validation ELBO is {measures['elbo']} after epoch {epoch + 1}; stopped. "
                                   f"{_steadier(cfg)}")
        value = measures[self.select]
        improved = value > state.best
        state.best, state.bad_epochs = (value, 0) if improved else (state.best, state.bad_epochs + 1)
        state.epoch = epoch + 1
        row = {"epoch": epoch + 1, "step": state.step, "train_loss": _all_mean(total, self.world).item() / seen,
               **{f"val_{k}": v for k, v in measures.items()},
               "kl_weight": kl_weight_at(state.step - 1, self.steps_per_epoch, cfg),
               **({"lr": lr_at(state.step - 1, self.steps_per_epoch * cfg.epochs, cfg)}
                  if cfg.lr_schedule != "constant" else {}),
               "images_per_s": seen / seconds, "time_s": seconds}
        state.history.append(row)
        if run is not None:
            self.save(self.data_gen, improved, metrics=True)
        if self.tb is not None:
            self.tb.epoch(row, self.family, self.data.val)
        extra = "".join(f"  val {k} {v:.4f}" for k, v in measures.items() if k != "elbo")
        val_name = "objective" if getattr(self.family, "point_estimate", False) else "ELBO"  # an AE has no ELBO
        self.log(f"epoch {epoch + 1:3d}  train loss {row['train_loss']:.2f}  val {val_name} {measures['elbo']:.2f} "
                 f"nats/img{extra}  ({row['images_per_s']:.0f} img/s){'  *' if improved else ''}")
        if self.stop.signum is not None:
            self.interrupt()
        if cfg.patience is not None and state.bad_epochs >= cfg.patience:
            self.log(f"early stopping: no better validation {self.select} for {cfg.patience} epochs")
            return True
        return False


def versions() -> dict:
    """The versions that produced a run (recorded in its config.json)."""
    import platform

    from pyro_vae import __version__

    return {"pyro-vae": __version__, "pyro-ppl": pyro.__version__, "torch": torch.__version__,
            "python": platform.python_version()}


def _summary(state: TrainState, select: str, stopped_early: bool, seconds: float, device, world) -> dict:
    h = state.history
    best_row = max(h, key=lambda r: r[f"val_{select}"]) if h else {}
    return {"best_val_elbo": max((r["val_elbo"] for r in h), default=None),
            "final_val_elbo": h[-1]["val_elbo"] if h else None,
            "select_by": f"val_{select}", "best_epoch": best_row.get("epoch"),
            **({f"best_val_{select}": best_row.get(f"val_{select}")} if select != "elbo" else {}),
            "epochs_run": len(h), "steps": state.step, "stopped_early": stopped_early,
            "train_time_s": seconds, "device": str(device), "world_size": world, "unit": "nats per image"}


def _write_metrics(path: Path, rows) -> None:
    """The whole ``metrics.jsonl``, rewritten atomically (a reader never sees half a line)."""
    from pyro_vae.files import write_jsonl

    write_jsonl(path, rows)

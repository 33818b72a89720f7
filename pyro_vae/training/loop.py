"""The loop: the epochs of one run, and what happens between them.

:meth:`Loop.train_epoch` feeds the batches of :func:`~pyro_vae.training.batches.epoch_data` to
:func:`~pyro_vae.training.step.train_step` with the step's KL weight and learning rate
(:mod:`~pyro_vae.training.schedules`), and stops at the next step when a signal came
(:mod:`~pyro_vae.training.signals`). :meth:`Loop.end_epoch` validates, keeps the best, writes the
metrics row, the checkpoints and the epoch's line, and says when early stopping ends the run.
Between epochs it calls the run's callbacks (:mod:`~pyro_vae.training.callbacks`), never inside one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import time

import torch

from pyro_vae.contract import Schedules, has, traits
from pyro_vae.config import save_json
from pyro_vae.files import RunFileError, run_folder
from pyro_vae.training import distributed
from pyro_vae.training.batches import epoch_data
from pyro_vae.training.distributed import all_mean
from pyro_vae.training.callbacks import Callbacks, RunInfo
from pyro_vae.training.logs import epoch_line, write_metrics
from pyro_vae.training.resume import TrainState, rng_state, save_checkpoints, set_rng_state
from pyro_vae.training.schedules import kl_weight_at, lr_at
from pyro_vae.training.signals import StopRequests, TrainingInterrupted, after_interrupt
from pyro_vae.training.step import TrainingDiverged, train_step
from pyro_vae.training.tracking import TensorBoard
from pyro_vae.training.validation import validate

logger = logging.getLogger(__name__)


class Loop:
    """The pieces of one training run that its epochs share. ``run`` is the run folder where
    this process writes files (None without one, and on every rank but 0 under DDP); rank 0
    alone speaks."""

    def __init__(
        self,
        family,
        cfg,
        data,
        loss_fn,
        optimizer,
        data_gen,
        device,
        run=None,
        model_config=None,
        progress=True,
        rank=0,
        world=1,
    ):
        self.family, self.cfg, self.data, self.loss_fn, self.optimizer = family, cfg, data, loss_fn, optimizer
        self.data_gen, self.device, self.run, self.model_config = data_gen, device, run, model_config
        self.progress, self.rank, self.world = progress and rank == 0, rank, world
        self.params = [p for p in family.parameters() if p.requires_grad]
        self.select = traits(family).select_by
        self.steps_per_epoch = math.ceil(data.n / cfg.batch_size)
        self.state = TrainState()
        self.step_fn, self.stop = loss_fn, None
        self.callbacks = Callbacks()  # the user's, opened by open(); rank 0's alone
        self.record = None  # the run's record (config.json's content), set by resume.start_run
        self.config_written = None  # the record config.json holds (written again only when it changes)

    def say(self, message: str, level: int = logging.INFO) -> None:
        """A message of the run (rank 0 speaks for every rank)."""
        if self.rank == 0:
            logger.log(level, message)

    def open(self, tensorboard: bool = False, callbacks=()) -> None:
        """Wrap the loss for DDP, start catching Ctrl-C and SIGTERM, and start the callbacks
        (rank 0's; with ``tensorboard`` and a run folder, a :class:`TensorBoard` among them)."""
        if self.world > 1:
            self.step_fn = distributed.wrap(self.loss_fn, self.device)
        self.stop = StopRequests().__enter__()
        if self.rank != 0:
            return
        callbacks = list(callbacks)
        if tensorboard and self.run is not None and not any(isinstance(c, TensorBoard) for c in callbacks):
            # its folder opened here, as the run's own: a link planted at RUN/tensorboard is refused
            callbacks.append(TensorBoard(run_folder(self.run.tensorboard)))
        self.callbacks = Callbacks(callbacks, stands=lambda: after_interrupt(self.run))
        record = self.record if self.record is not None else {"train": dataclasses.asdict(self.cfg)}
        self.callbacks.start(
            RunInfo(
                self.run,
                record,
                self.cfg,
                self.family,
                self.data.val,
                self.state.epoch + 1,
                self.cfg.epochs,
                bool(record.get("resumes")),
            )
        )

    def close(self) -> None:
        """Stop catching signals (the callbacks end with :meth:`end`)."""
        if self.stop is not None:
            self.stop.__exit__()

    def end(self, summary: dict | None = None, error: BaseException | None = None) -> None:
        """The callbacks' ``on_run_end``, once: with the summary of a finished run, or the error
        that stopped it."""
        self.callbacks.end(summary, error)

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
        saved = after_interrupt(self.run, written=True)
        self.say(f"{name}: stopped at step {state.step}; {saved}", logging.WARNING)
        raise TrainingInterrupted(f"{name}: training stopped at step {state.step}; {saved}", self.stop.signum)

    def save(self, data_gen, improved: bool, metrics: bool = False) -> None:
        """``metrics.jsonl`` (with ``metrics``), the checkpoints (each holding the run's record),
        then ``config.json`` where the record changed (a resume): the copy of the record that
        ``checkpoint_last.pt`` now holds. A write that fails (full disk, ...) leaves the previous
        checkpoint whole (every write is atomic) and says how to go on."""
        extra = {k: v for k, v in self.record.items() if k not in ("model", "train")}
        try:
            if metrics:
                write_metrics(self.run, self.state.history)
            save_checkpoints(
                self.run,
                self.family,
                self.model_config,
                self.optimizer,
                self.cfg,
                self.state,
                data_gen,
                improved,
                extra,
            )
            if self.config_written != self.record:
                save_json(self.run.config, self.record)
                self.config_written = self.record
        except RunFileError as e:
            raise e.then(
                f"{self.run.last} as written before is intact: continue with resume=True"
                if self.run.last.exists()
                else "no checkpoint was written yet: start again"
            ) from None

    def diverged(self, what: str) -> TrainingDiverged:
        """The error for a run that diverged: where its last good checkpoint is, and what to try."""
        where = (
            f"The last good checkpoint is {self.run.last} (epoch {self.state.epoch}). "
            if self.run is not None and self.run.last.exists()
            else "No checkpoint was written yet. "
        )
        return TrainingDiverged(f"{what}; stopped. {where}{steadier(self.cfg)}")

    def train_epoch(self, epoch: int):
        """One pass over the training data (from where an interrupted epoch stopped). Returns the
        summed loss (a tensor), the number of data points and the seconds it took."""
        from tqdm.auto import tqdm

        cfg, state, data = self.cfg, self.state, self.data
        self.callbacks("on_epoch_start", epoch + 1)
        self.family.train()
        if has(self.family, Schedules):
            self.family.on_epoch(epoch, cfg.epochs)  # a family's schedule (e.g. a relaxation temperature)
        t0 = time.perf_counter()
        epoch_start = self.data_gen.get_state()  # binarization and order of this epoch follow from it
        total, seen, first = torch.zeros((), device=self.device), 0, 0
        if state.in_epoch is not None:  # resuming inside this epoch: skip the batches it did
            first, seen = state.in_epoch["batch"], state.in_epoch["seen"]
            total = torch.tensor(state.in_epoch["total"], device=self.device)
        bar = tqdm(
            total=data.n,
            initial=min(seen, data.n),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="img",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        for i, size, part in epoch_data(data, cfg, self.data_gen, self.rank, self.world, first):
            if state.in_epoch is not None:  # the Monte Carlo stream as it was when interrupted
                set_rng_state(state.in_epoch["rng"])
                state.in_epoch = None
            if size < self.world:
                break  # a last batch too small to give every rank a data point
            kl_w = kl_weight_at(state.step, self.steps_per_epoch, cfg)
            if cfg.lr_schedule != "constant":
                for group in self.optimizer.param_groups:
                    group["lr"] = lr_at(state.step, self.steps_per_epoch * cfg.epochs, cfg)
            try:
                loss = train_step(
                    self.step_fn,
                    self.optimizer,
                    self.params,
                    part,
                    kl_w,
                    data.n,
                    cfg,
                    self.world,
                    check_args=state.step == 0,
                )
            except TrainingDiverged as e:
                bar.close()
                raise self.diverged(
                    f"{str(e).replace('the ', '', 1)} at epoch {epoch + 1}, step {state.step}"
                ) from None
            total += loss * size
            seen += size
            state.step += 1
            if self.progress and i % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.2f}", kl_w=f"{kl_w:.3g}")
            bar.update(min(size, data.n - bar.n))
            if self.stop.signum is not None:
                bar.close()
                self.interrupt(epoch_start, {"batch": i + 1, "seen": seen, "total": total.item(), "rng": rng_state()})
        bar.close()
        return total, seen, time.perf_counter() - t0

    def end_epoch(self, epoch: int, total, seen: int, seconds: float) -> bool:
        """Validate, keep the best, write metrics, checkpoints and logs. Returns True when early
        stopping ends the run."""
        cfg, state, run = self.cfg, self.state, self.run
        if not all(bool(torch.isfinite(p).all()) for p in self.params):  # a finite loss, then a wild step
            raise self.diverged(f"the parameters became NaN or infinite in epoch {epoch + 1}")
        self.family.eval()
        measures = {
            k: all_mean(torch.tensor(float(v), device=self.device), self.world).item()
            for k, v in validate(self.family, self.data.val, cfg).items()
        }
        if not math.isfinite(measures["elbo"]):
            raise TrainingDiverged(
                f"validation ELBO is {measures['elbo']} after epoch {epoch + 1}; stopped. {steadier(cfg)}"
            )
        value = measures[self.select]
        improved = value > state.best
        state.best, state.bad_epochs = (value, 0) if improved else (state.best, state.bad_epochs + 1)
        state.epoch = epoch + 1
        row = {
            "epoch": epoch + 1,
            "step": state.step,
            "train_loss": all_mean(total, self.world).item() / seen,
            **{f"val_{k}": v for k, v in measures.items()},
            "kl_weight": kl_weight_at(state.step - 1, self.steps_per_epoch, cfg),
            **(
                {"lr": lr_at(state.step - 1, self.steps_per_epoch * cfg.epochs, cfg)}
                if cfg.lr_schedule != "constant"
                else {}
            ),
            "images_per_s": seen / seconds,
            "time_s": seconds,
        }
        state.history.append(row)
        if run is not None:
            self.save(self.data_gen, improved, metrics=True)
        self.say(epoch_line(row, measures, improved, traits(self.family).point_estimate))  # an AE: no ELBO
        if run is not None:  # every hook after the checkpoint: a failing callback leaves it whole
            for path in ([run.best] if improved else []) + [run.last]:
                self.callbacks("on_checkpoint", path)
        self.callbacks("on_epoch_end", epoch + 1, dict(row))
        if self.stop.signum is not None:
            self.interrupt()
        if cfg.patience is not None and state.bad_epochs >= cfg.patience:
            self.say(f"early stopping: no better validation {self.select} for {cfg.patience} epochs")
            return True
        return False


def steadier(cfg) -> str:
    """The advice after a divergence: smaller steps, or a cap on the gradient norm (a tenth of
    the current learning rate and clip norm, say)."""
    clip = f"{cfg.clip_norm / 10:g}" if cfg.clip_norm else "1.0"
    return f"Try a lower learning rate (lr={cfg.lr / 10:g}, say) or clip the gradient norm (clip_norm={clip})."


__all__ = ["Loop", "steadier"]

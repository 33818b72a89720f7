"""``fit``: builds the pieces of a run and runs its loop.

The path of a config: ``fit`` checks the :class:`~pyro_vae.config.TrainConfig`, resolves what
depends on the family (``binarize``, :mod:`~pyro_vae.training.prepare`), and makes the run's
record with the model config and the data record (:mod:`~pyro_vae.training.record`). A new run
writes it to ``config.json``; a resumed one checks it against its checkpoint's
(:mod:`~pyro_vae.training.resume`). Every checkpoint stores it.

The path of a batch: the data are checked and prepared once (:mod:`~pyro_vae.training.prepare`),
cut into seeded batches each epoch (:mod:`~pyro_vae.training.batches`), each stepped on
(:mod:`~pyro_vae.training.step`) by the :class:`~pyro_vae.training.loop.Loop`, which validates
after each epoch (:mod:`~pyro_vae.training.validation`) and writes metrics, checkpoints and logs
(:mod:`~pyro_vae.training.logs`)::

    data = prepare_data(family, train, val, cfg, device)      # checks, binarization, label subset
    loss_fn = Loss(family, make_objective(cfg.objective, family, cfg.num_particles))
    loop.state = start_run(...)                                # config.json; or resume's checkpoint
    for epoch in ...:
        loop.train_epoch(epoch)       # for batch in epoch_data(...): train_step(...)  ((loss / N).backward())
        loop.end_epoch(epoch, ...)    # validate(...), metrics, save_checkpoints(...), early stopping

Messages go to the ``pyro_vae`` logger (:mod:`logging`); progress bars are tqdm's.
"""

from __future__ import annotations

import logging
import signal
import sys
import time

import torch
from torch import nn

from pyro_vae.config import DataConfig, ModelConfig, TrainConfig, save_json
from pyro_vae.data.batch import Batch, for_evaluation
from pyro_vae.data.torch_data import to_memory
from pyro_vae.devices import select_device, set_seed
from pyro_vae.files import RunLock
from pyro_vae.inference.objectives import Loss, make_objective
from pyro_vae.models import complete_config
from pyro_vae.models.base import check_family
from pyro_vae.runs.folder import RunDir
from pyro_vae.training import distributed
from pyro_vae.training.callbacks import CallbackError, check_callbacks
from pyro_vae.training.logs import summary as summary_of
from pyro_vae.training.loop import Loop
from pyro_vae.training.prepare import (
    as_dtype,
    model_dtype,
    origin_of_data,
    prepare_data,
    resolve_batch_size,
    resolve_binarize,
    splits_of,
)
from pyro_vae.training.record import ConfigMismatch, new_record
from pyro_vae.training.resume import start_run
from pyro_vae.training.signals import TrainingInterrupted, after_interrupt
from pyro_vae.training.step import TrainingDiverged, make_optimizer

logger = logging.getLogger(__name__)


def fit(
    family: nn.Module,
    data,
    config: TrainConfig | None = None,
    run_dir=None,
    *,
    model_config: ModelConfig | None = None,
    resume: bool = False,
    allow_changes=(),
    objective=None,
    record: dict | None = None,
    tensorboard: bool = False,
    progress: bool = True,
    test: Batch | None = None,
    test_label: str = "test",
    plots: bool = True,
    callbacks=(),
) -> dict:
    """Train ``family`` on ``data``, validating every epoch; returns the summary (best and last
    validation values, epochs, steps, time)::

        fit(VAE(...), (train, val), TrainConfig(epochs=10), "runs/x")

    ``family``: a :class:`~pyro_vae.models.base.Family` (or any module meeting the contract).
    ``data``: the training and validation data, a ``(train, val)`` pair or the
    :class:`~pyro_vae.data.batch.Splits` of ``load_data`` (its test split is used only when
    passed as ``test``). Each split may be a Batch, a streamed split, a torch ``Dataset``
    (map-style, with items a tensor, ``(x, y)``, ``(x, y, c)`` or a dict; or iterable), a
    ``DataLoader`` or a tensor or array: a map-style Dataset that fits the memory budget is read
    once into memory, a larger one streamed, an iterable one or a DataLoader iterated each epoch;
    the validation split is read into memory (:mod:`pyro_vae.data.torch_data`, docs/data.md).
    ``config``: how to train (default ``TrainConfig()``). ``run_dir``: the run folder for ``config.json``, ``metrics.jsonl``,
    ``checkpoint_last.pt`` (every epoch), ``checkpoint_best.pt`` and ``summary.json``; None
    trains without writing anything.

    Keyword-only:

    * ``model_config``: the :class:`~pyro_vae.config.ModelConfig` the family was built from; the
      record and every checkpoint hold it, so the checkpoints rebuild the model (without it they
      hold the weights only).
    * ``resume``: continue the run in ``run_dir`` from ``checkpoint_last.pt`` (also one written
      mid-epoch by Ctrl-C or SIGTERM), bit for bit on CPU. The checkpoint records the run and is
      the truth: settings that differ from its record raise :class:`ConfigMismatch`, except the
      epoch count, ``eval_k`` and the settings named in ``allow_changes`` (``"lr"`` or
      ``"train.lr"``); a ``config.json`` edited since is refused, a missing one rewritten.
    * ``objective``: an object with ``differentiable_loss`` to use instead of ``config.objective``.
    * ``record``: entries added to the run's record (``config.json`` and every checkpoint), e.g.
      ``command``; its ``data`` replaces the record fit makes of the data
      (:meth:`~pyro_vae.config.DataConfig.of`).
    * ``tensorboard``: also write TensorBoard events to ``RUN/tensorboard/`` each epoch (needs
      ``pip install pyro-vae[tensorboard]``): a :class:`~pyro_vae.training.tracking.TensorBoard`
      added to ``callbacks``.
    * ``callbacks``: :class:`~pyro_vae.training.callbacks.Callback` instances, called between
      epochs (on rank 0 under DDP); one that raises stops the run with
      :class:`~pyro_vae.training.callbacks.CallbackError`, the last checkpoint whole
      (:mod:`~pyro_vae.training.callbacks` gives the hooks, their order and arguments).
    * ``progress``: tqdm progress bars.
    * ``test``: a Batch (or a Dataset, read into memory) to end with as the CLI does: the best
      checkpoint evaluated on it with ``config.eval_k`` importance samples, figures (unless
      ``plots=False``) and the report, labelled ``test_label``
      (:func:`~pyro_vae.training.finish.finish_run`; needs ``run_dir`` and ``model_config``).

    ``binarize="auto"`` (the default) is resolved here: ``dynamic`` for a likelihood of binary
    data (Bernoulli), ``none`` otherwise; the run records the resolved mode. Floating data are
    cast once to the model's dtype.

    The run folder is locked while training (:class:`pyro_vae.files.RunLock`); a file that cannot
    be written stops the run with a :class:`pyro_vae.files.RunFileError` naming it, the last
    checkpoint intact. A NaN or infinite loss raises :class:`TrainingDiverged`. Ctrl-C or SIGTERM
    stop the run at the next step with a checkpoint (:class:`TrainingInterrupted`); a signal that
    was ignored when ``fit`` started (SIGINT in a background job) stays ignored.

    Under ``torch.distributed`` (e.g. torchrun) every rank trains on its slice of each batch,
    gradients averaged (:mod:`~pyro_vae.training.distributed`); rank 0 alone writes and speaks.

    Messages (one line per epoch, notes, warnings) go to the ``pyro_vae`` logger: from Python,
    ``logging.basicConfig(level=logging.INFO)`` shows them.
    """
    cfg = (config if config is not None else TrainConfig()).check()
    callbacks = check_callbacks(callbacks)
    train, val = splits_of(data)
    check_family(family)
    if test is not None and (run_dir is None or model_config is None):
        raise ValueError(
            "fit(test=...) evaluates the best checkpoint at the end: it needs run_dir and "
            "model_config (to rebuild the model from the checkpoint)"
        )
    if objective is not None and cfg.free_bits:
        raise ValueError("fit(objective=...) and free_bits: free bits replace the ELBO objective; pass one of them")
    model_config = complete_config(model_config) if model_config is not None else None
    # a run trained from Python names its data too (sizes, no source), so every command opens it
    record = {"data": DataConfig.of(train, val, origin=origin_of_data(data)).to_dict(), **(record or {})}
    rank, world = distributed.rank_and_world()
    cfg = resolve_batch_size(resolve_binarize(cfg, family, warn=rank == 0), train, world, note=rank == 0)
    run = RunDir(run_dir) if run_dir is not None else None
    loop = lock = None
    try:
        device = select_device(cfg.device)
        set_seed(cfg.seed)
        family.to(device)
        prepared = prepare_data(family, train, val, cfg, device)
        if world > 1 and rank == 0:
            logger.info(distributed.describe(world, cfg.batch_size))
        # shuffling and dynamic binarization draw from their own generator, seeded alike on every
        # rank; the global RNG (Monte Carlo samples of z) gets a different stream per rank
        data_gen = torch.Generator(device=device).manual_seed(cfg.seed)
        if world > 1:
            torch.manual_seed(cfg.seed + 1000 * rank)
        loss_fn = Loss(
            family,
            make_objective(
                objective if objective is not None else cfg.objective,
                family,
                cfg.num_particles,
                free_bits=cfg.free_bits,
            ),
            precision=cfg.precision,
        )
        loop = Loop(
            family,
            cfg,
            prepared,
            loss_fn,
            make_optimizer(family.parameters(), cfg.lr),
            data_gen,
            device,
            run if rank == 0 else None,
            model_config,
            progress,
            rank,
            world,
        )
        if loop.run is not None:
            lock = RunLock(run.path, command=record.get("command")).acquire()
            if lock.stale:
                logger.info(
                    f"note: {run} was left locked by {RunLock.describe(lock.stale)}, which is no longer "
                    f"running; taking it over"
                )
        if run is not None:
            new = new_record(cfg, model_config, world, loss_fn.objective, record)
            loop.state = start_run(loop, run, resume, new, allow_changes)
        loop.open(tensorboard, callbacks)
        t_start = time.perf_counter()
        stopped_early = False
        for epoch in range(loop.state.epoch, cfg.epochs):
            total, seen, seconds = loop.train_epoch(epoch)
            if loop.end_epoch(epoch, total, seen, seconds):
                stopped_early = True
                break
        loop.close()

        summary = summary_of(loop.state, loop.select, stopped_early, time.perf_counter() - t_start, device, world)
        if loop.run is not None:
            save_json(run.summary, summary)
            if test is not None:
                from pyro_vae.training.finish import finish_run  # lazily: figures and report load matplotlib

                test = as_dtype(for_evaluation(to_memory(test, "test data"), cfg.binarize), model_dtype(family))
                finish_run(
                    run,
                    test,
                    label=test_label,
                    eval_k=cfg.eval_k,
                    device=cfg.device,
                    plots=plots,
                    progress=loop.progress,
                    log=logger.info,
                )
                summary = run.read_json(run.summary)
        loop.end(summary)
        return summary
    except KeyboardInterrupt as e:  # before the loop catches signals, or a second Ctrl-C: say what is left
        if isinstance(e, TrainingInterrupted):
            raise
        where = after_interrupt(run if rank == 0 else None)
        if rank == 0:
            logger.warning(f"SIGINT: stopped; {where}")
        raise TrainingInterrupted(f"SIGINT: training stopped; {where}", signal.SIGINT) from None
    finally:
        if loop is not None:
            loop.close()
            loop.end(error=sys.exc_info()[1])  # the callbacks not ended yet hear what stopped the run
        if lock is not None:
            lock.release()


# the errors fit raises, importable with it
__all__ = ["fit", "TrainingDiverged", "TrainingInterrupted", "ConfigMismatch", "CallbackError"]

"""Trackers: callbacks that send a run's epochs to TensorBoard, Weights & Biases or MLflow.

Each is a :class:`~pyro_vae.training.callbacks.Callback`; ``fit(..., callbacks=[WandB()])``
uses one, and ``pyro-vae train`` makes them from their names (:func:`trackers`). Each logs the
numbers of every epoch's metrics row at step = the epoch, and W&B and MLflow the run's record
(the settings) at the start and its summary (test metrics included) at the end. Their packages
are optional and imported when a tracker is made, so a missing one is said before training
starts: ``pip install 'pyro-vae[tensorboard]'``, ``[wandb]``, ``[mlflow]``.
"""

from __future__ import annotations

import importlib
import time

import torch

from pyro_vae.contract import Codes, Samples, has, traits
from pyro_vae.figures.report import flatten
from pyro_vae.files import run_folder
from pyro_vae.inference import marginal as evaluation
from pyro_vae.training.callbacks import Callback
from pyro_vae.training.signals import TrainingInterrupted


def need(module: str, extra: str):
    """Import ``module`` for the tracker ``extra``, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ValueError(
            f"the {extra} tracker needs the {extra} package: pip install 'pyro-vae[{extra}]' ({e})"
        ) from None


def numbers(d: dict) -> dict:
    """The numbers of ``d`` (nested dicts flattened to ``a.b``), booleans and the rest left out."""
    return {k: float(v) for k, v in flatten(d) if isinstance(v, (int, float)) and not isinstance(v, bool)}


def scalars(row: dict) -> dict:
    """A metrics row as named scalars: every number but the epoch (the step they are logged at)."""
    return {k: v for k, v in numbers(row).items() if k != "epoch"}


class TensorBoard(Callback):
    """TensorBoard events (``torch.utils.tensorboard``) in ``log_dir`` (default ``RUN/tensorboard``):
    each epoch the scalars of its metrics row (loss, validation measures, KL weight, images/s),
    the validation ELBO's two terms on up to 500 validation points, and for image data a grid of
    validation reconstructions and of samples. ``fit(tensorboard=True)`` adds one."""

    def __init__(self, log_dir=None, images: int = 16):
        need("tensorboard", "tensorboard")
        self.log_dir, self.images, self.writer = log_dir, images, None

    def on_run_start(self, run) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if self.log_dir is None and run.folder is None:
            raise ValueError(
                "TensorBoard needs a folder for its events: give fit a run_dir, or TensorBoard(log_dir=...)"
            )
        # run_folder: a link planted at RUN/tensorboard is refused, never followed out of the run
        folder = self.log_dir if self.log_dir is not None else run_folder(run.folder.tensorboard)
        self.writer, self.family, self.val = SummaryWriter(str(folder)), run.family, run.val

    def on_epoch_end(self, epoch: int, row: dict) -> None:
        for key, value in scalars(row).items():
            self.writer.add_scalar(key if key.startswith(("val_", "train_")) else f"train/{key}", value, epoch)
        family, val = self.family, self.val
        with torch.no_grad():
            sub = val.subset(slice(0, 500)).unlabelled()
            t = traits(family)
            ll, kl = evaluation.elbo_terms(family.model, family.guide, *family.args(sub), data_plate=t.plate_name)
            self.writer.add_scalar("val_terms/recon_log_lik", ll.mean().item(), epoch)
            self.writer.add_scalar("val_terms/kl", kl.mean().item(), epoch)
            shape, n = t.data_shape or (), self.images
            if len(shape) == 3 and shape[0] in (1, 3) and not t.conditional:
                if has(family, Codes):
                    x = val.x[: n // 2]
                    both = torch.cat([x, family.reconstruct(x).reshape(x.shape)]).clamp(0, 1)
                    self.writer.add_images("reconstructions", both.cpu(), epoch)
                if has(family, Samples):
                    self.writer.add_images("samples", family.sample(n).reshape(n, *shape).clamp(0, 1).cpu(), epoch)
        self.writer.flush()

    def on_run_end(self, summary, error) -> None:
        self.writer.close()


class WandB(Callback):
    """Weights & Biases: a W&B run named after the run folder, its config the run's record; each
    epoch's scalars at step = the epoch; the summary's numbers at the end. ``init``: keywords of
    ``wandb.init`` (``project``, default "pyro-vae"; ``entity``, ``name``, ``tags``, ``mode``,
    ``dir``, ...); W&B's environment variables apply too (``WANDB_MODE=offline``, ``WANDB_DIR``).
    A resumed run is a new W&B run whose steps go on from its first epoch."""

    def __init__(self, **init):
        self.wandb = need("wandb", "wandb")
        self.init, self.run = {"project": "pyro-vae", **init}, None

    def on_run_start(self, run) -> None:
        name = run.folder.path.name if run.folder is not None else None
        self.run = self.wandb.init(**{"name": name, "config": run.record, **self.init})

    def on_epoch_end(self, epoch: int, row: dict) -> None:
        self.run.log(scalars(row), step=epoch)

    def on_run_end(self, summary, error) -> None:
        if summary:
            self.run.summary.update(numbers(summary))
        self.run.finish(exit_code=0 if error is None else 1)


class MLflow(Callback):
    """MLflow: a run in ``experiment`` (created if missing), named after the run folder; the
    run's record as parameters (flattened, ``train.lr``; values cut at 500 characters), each
    epoch's scalars at step = the epoch, the summary's numbers at the end, and the status
    FINISHED, KILLED (interrupted) or FAILED. ``tracking_uri``: where to record (default: MLflow's,
    from ``MLFLOW_TRACKING_URI``), e.g. a server's ``http://...`` address. Through
    ``MlflowClient``: no active run is left set in the ``mlflow`` module."""

    def __init__(self, experiment: str = "pyro-vae", tracking_uri: str | None = None, tags: dict | None = None):
        self.tracking = need("mlflow.tracking", "mlflow")
        self.entities = need("mlflow.entities", "mlflow")
        self.experiment, self.tracking_uri, self.tags = experiment, tracking_uri, dict(tags or {})
        self.client = self.run_id = None
        self.last_epoch = 0

    def on_run_start(self, run) -> None:
        self.client = self.tracking.MlflowClient(tracking_uri=self.tracking_uri)
        found = self.client.get_experiment_by_name(self.experiment)
        experiment = found.experiment_id if found is not None else self.client.create_experiment(self.experiment)
        name = run.folder.path.name if run.folder is not None else None
        self.run_id = self.client.create_run(experiment, run_name=name, tags=self.tags).info.run_id
        params = [self.entities.Param(k, str(v)[:500]) for k, v in flatten(run.record)]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log(self, values: dict, step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [self.entities.Metric(k, v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def on_epoch_end(self, epoch: int, row: dict) -> None:
        self.log(scalars(row), epoch)
        self.last_epoch = epoch

    def on_run_end(self, summary, error) -> None:
        if summary:
            self.log(numbers(summary), self.last_epoch)
        status = "FINISHED" if error is None else "KILLED" if isinstance(error, TrainingInterrupted) else "FAILED"
        self.client.set_terminated(self.run_id, status)


TRACKERS = {"tensorboard": TensorBoard, "wandb": WandB, "mlflow": MLflow}


def trackers(names) -> list:
    """The trackers named (``"tensorboard"``, ``"wandb"``, ``"mlflow"``; repeats counted once),
    each made with its defaults; an unknown name, or a tracker whose package is missing, is
    refused in one line before any work."""
    names = list(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ValueError(f"unknown tracker {', '.join(map(repr, unknown))}: choose from {', '.join(TRACKERS)}")
    return [TRACKERS[n]() for n in names]


__all__ = ["TensorBoard", "WandB", "MLflow", "TRACKERS", "trackers", "need", "numbers", "scalars"]

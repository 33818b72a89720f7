"""``pyro-vae train``: its parser (data, model, training and output flags) and :func:`cmd_train`,
which loads the data, builds the family and runs :func:`pyro_vae.training.fit.fit` into a run
folder (under torchrun, on every rank)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pyro_vae.cli.flags import config_flags, config_from_args, fraction, nonneg_int
from pyro_vae.cli.messages import CLIError
from pyro_vae.cli.model_flags import model_config_from_args, model_flags
from pyro_vae.cli.plugins import plugin_flag
from pyro_vae.cli.runs import check_name_lengths, data_flags, data_record, num_classes
from pyro_vae.config import TrainConfig
from pyro_vae.runs.folder import RunDir
from pyro_vae.training.tracking import TRACKERS, TensorBoard, trackers


def add_train_parser(sub, formatter_class, defaults: dict | None = None):
    """Add the ``train`` command to the subparsers ``sub``, its flags defaulting to ``defaults``
    where given (a run's settings, from ``--config`` or ``--resume``); return its parser."""
    t = sub.add_parser(
        "train",
        help="train a model; writes a run folder",
        description="Train a model family by SVI and write config, metrics, checkpoints, "
        "figures and a report to --out. Under torchrun "
        "(torchrun --nproc_per_node=N -m pyro_vae.cli.app train --out DIR ...) "
        "it trains with DistributedDataParallel.",
        formatter_class=formatter_class,
    )
    data_flags(t)
    t.add_argument(
        "--val-fraction", type=fraction, default=0.1, help="share of the training data held out for validation"
    )
    t.add_argument(
        "--stream",
        default="auto",
        choices=["auto", "on", "off"],
        help="read the training split of a .npy file, an image folder or a map-style torch Dataset "
        "(MODULE:FUNCTION) batch by batch (memory-mapped; images and items read when needed) "
        "instead of loading it: on, off, or auto "
        "(when it would take more than half the memory available); the validation split is loaded",
    )
    t.add_argument(
        "--workers",
        type=nonneg_int,
        default=0,
        help="with streamed data (or a torch Dataset from MODULE:FUNCTION): processes that read "
        "batches ahead of training (0: read in the training process)",
    )
    plugin_flag(t)
    model_flags(t)
    training = t.add_argument_group("training", "every field of pyro_vae.TrainConfig, declared there")
    g = t.add_argument_group("output")
    g.add_argument(
        "--config",
        default=None,
        metavar="RUN/config.json",
        help="train the run this config.json describes again (same data, model, options and seed: "
        "the same result on CPU); options given beside it override it and are recorded",
    )
    g.add_argument("--out", default=None, help="run folder (default runs/DATASET-TIMESTAMP)")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint, with the settings in its config.json "
        "(options given beside --resume must match them, except --epochs)",
    )
    g.add_argument(
        "--allow-change",
        action="append",
        default=[],
        metavar="OPTION",
        help="--resume: let this option differ from the stored run on purpose (e.g. lr, patience; "
        "repeat for several); recorded in config.json under 'resumes'",
    )
    config_flags(training, TrainConfig, {"output": g})  # --eval-k goes to output
    g.add_argument("--no-plots", action="store_true", help="do not write figures and report at the end")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument(
        "--log-to",
        type=tracker_names,
        action="extend",
        default=[],
        metavar="NAME[,NAME...]",
        help="also send each epoch's metrics to these trackers: tensorboard (events in RUN/tensorboard), "
        "wandb (Weights & Biases; its WANDB_* variables apply, e.g. WANDB_MODE=offline), mlflow "
        "(to MLFLOW_TRACKING_URI); each needs pip install 'pyro-vae[NAME]'",
    )
    g.add_argument("--tensorboard", action="store_true", help="the same as --log-to tensorboard")
    if defaults:
        t.set_defaults(**defaults)
    return t


def tracker_names(text: str) -> list:
    """The argparse type of ``--log-to``: comma-separated names of trackers."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in TRACKERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown tracker {', '.join(map(repr, unknown)) or repr(text)}: choose "
            f"from {', '.join(TRACKERS)} (comma-separated)"
        )
    return names


def trackers_of(a) -> tuple[bool, list]:
    """``--log-to`` (and ``--tensorboard``) as fit's ``tensorboard`` and ``callbacks``, made before
    any work so that a tracker whose package is missing is said at once. TensorBoard is fit's
    ``tensorboard=True``: its folder is opened with the run folder's own checks."""
    names = [*a.log_to, *(["tensorboard"] if a.tensorboard else [])]
    try:
        made = trackers(names)
    except ValueError as e:
        raise CLIError(f"{'--log-to' if a.log_to else '--tensorboard'}: {e}") from None
    return "tensorboard" in names, [t for t in made if not isinstance(t, TensorBoard)]


def train_config_from_args(a) -> TrainConfig:
    """The :class:`~pyro_vae.config.TrainConfig` of the training flags (those typed already checked)."""
    return config_from_args(TrainConfig, a, checked=getattr(a, "typed", {}))


def cmd_train(a) -> int:
    from pyro_vae.models import build_model
    from pyro_vae.devices import set_seed
    from pyro_vae.training.fit import fit

    if a.resume and a.out is None:
        raise CLIError("--resume needs --out: the run folder to continue")
    rank = _init_distributed()
    if rank is not None and a.out is None:
        raise CLIError("distributed training (torchrun) needs --out, the same run folder on every rank")
    out = Path(a.out or f"runs/{Path(a.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    _check_out(out, a.resume)
    tcfg = train_config_from_args(a)  # before any work: values from --config or --resume checked here
    tensorboard, callbacks = trackers_of(a)
    from pyro_vae.data.datasets import load_data

    # a --data-dir that came from a config (--config, --resume) is read, never downloaded into
    splits = load_data(
        a.dataset,
        a.data_dir,
        val_fraction=a.val_fraction,
        seed=a.seed,
        stream=a.stream,
        workers=a.workers,
        download=a.data_dir is None or "data_dir" in a.typed,
    )
    mcfg = model_config_from_args(
        a, splits.train.data_shape, num_classes(splits), a.plugin, schema=getattr(splits, "schema", None)
    )
    extra = {"data": data_record(a, splits), "command": getattr(a, "command_line", None)}
    if a.config:
        extra["reproduced_from"] = {"config": str(Path(a.config).resolve()), "overrides": a.overrides}
    set_seed(a.seed)  # network initialisation
    module = build_model(mcfg)
    if rank:  # ranks other than 0 train quietly and leave evaluation and files to rank 0
        fit(
            module,
            splits,
            tcfg,
            out,
            model_config=mcfg,
            resume=a.resume,
            progress=False,
            record=extra,
            allow_changes=a.allow_change,
        )  # callbacks are rank 0's alone
        return 0
    print(
        f"data: {a.dataset}: {len(splits.train)} train, {len(splits.val)} validation"
        + (f", {len(splits.test)} test" if splits.test is not None else ", no test split")
        + (f"; {splits.scale}" if splits.scale else "")
        + f"; model {a.model}; run folder {out}"
    )
    short = Path(a.dataset).name if Path(a.dataset).exists() else a.dataset
    test, label = (splits.test, f"{short}/test") if splits.test is not None else (splits.val, f"{short}/val")
    if splits.test is None:
        print(
            f"note: {a.dataset} has no test split here (for mnist5k pass --data-dir with the official "
            f"MNIST test files); the final evaluation uses the validation split",
            file=sys.stderr,
        )
    summary = fit(
        module,
        splits,
        tcfg,
        out,
        model_config=mcfg,
        resume=a.resume,
        progress=not a.no_progress,
        record=extra,
        test=test,
        test_label=label,
        plots=not a.no_plots,
        allow_changes=a.allow_change,
        tensorboard=tensorboard,
        callbacks=callbacks,
    )
    select = summary["select_by"]
    best = summary.get("best_" + select, summary["best_val_elbo"])
    print(
        f"best {select.replace('_', ' ')} {best:.2f}{' nats/image' if select == 'val_elbo' else ''} at epoch "
        f"{summary['best_epoch']} of {summary['epochs_run']} ({summary['train_time_s']:.0f} s); run folder {out}"
    )
    return 0


def _check_out(out: Path, resume: bool) -> None:
    """--out must be a folder this process can create and write in; with --resume, a run."""
    check_name_lengths(out, "--out")
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file, not a folder: choose a folder for the run (created if missing)")
    if resume and not (out / RunDir.LAST).is_file():
        where = "does not exist" if not out.exists() else f"holds no {RunDir.LAST}"
        raise CLIError(
            f"--resume: {out} {where}, so there is nothing to resume (no {RunDir.LAST}); leave out "
            f"--resume to start a new run there"
        )
    existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise CLIError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"--out {out}: cannot write in {existing} (permission denied); choose a folder you can write to")


def _init_distributed():
    """Join the process group when started by torchrun (WORLD_SIZE > 1); return the rank or None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
    return dist.get_rank()

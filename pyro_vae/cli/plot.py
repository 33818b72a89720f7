"""``pyro-vae plot``: all figures and the report of a run folder, drawn again from its best
checkpoint and its test metrics."""

from __future__ import annotations

from pyro_vae.cli.flags import device_flag
from pyro_vae.cli.plugins import plugin_flag
from pyro_vae.cli.runs import (
    data_flags,
    device_of,
    eval_split,
    load_family,
    load_splits,
    recorded_data,
    trained_binarize,
)
from pyro_vae.runs.checkpoint import CheckpointError
from pyro_vae.runs.folder import RunDir


def add_plot_parser(sub, formatter_class):
    """Add the ``plot`` command to the subparsers ``sub``; return its parser."""
    p = sub.add_parser("plot", help="write all figures and the report of a run folder", formatter_class=formatter_class)
    p.add_argument("run_dir", help="a run folder written by pyro-vae train")
    data_flags(p, required_default=False)
    plugin_flag(p)
    device_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def cmd_plot(a) -> int:
    from pyro_vae.training.finish import write_figures_and_report

    run = RunDir(a.run_dir)
    if not run.best.exists():
        raise CheckpointError(f"{run} is not a run folder (no {RunDir.BEST})")
    family, ckpt = load_family(run.best, a.device)
    name, splits = load_splits(recorded_data(ckpt), a.dataset, a.data_dir, run=run)
    data, label = eval_split(splits, name, "test", trained_binarize(ckpt))
    write_figures_and_report(
        run,
        family,
        data.to(device_of(family)),
        run.read_json(run.test_metrics),
        label=label,
        progress=not a.no_progress,
    )
    return 0

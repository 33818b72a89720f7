"""What a run tells: ``metrics.jsonl``, the line of each epoch, and the summary.

Each epoch makes one metrics row (loss, validation measures, KL weight, learning rate, speed).
The row is written to ``metrics.jsonl`` (the whole file, atomically), said in one line through
the ``pyro_vae`` logger (the CLI prints it; from Python, configure :mod:`logging` to see it),
and handed to the run's callbacks (:mod:`~pyro_vae.training.callbacks`; TensorBoard, W&B and
MLflow in :mod:`~pyro_vae.training.tracking`). At the end the rows become ``summary.json``.
Progress inside an epoch is a tqdm bar, not a log message.
"""

from __future__ import annotations

from pyro_vae.files import write_jsonl
from pyro_vae.runs.folder import RunDir


def write_metrics(run: RunDir, rows) -> None:
    """The whole ``metrics.jsonl``, rewritten atomically (a reader never sees half a line)."""
    write_jsonl(run.metrics, rows)


def epoch_line(row: dict, measures: dict, improved: bool, point_estimate: bool = False) -> str:
    """The line that says how an epoch went (``*``: the best so far). A point estimate (an
    autoencoder) has no ELBO: its validation value is called the objective."""
    extra = "".join(f"  val {k} {v:.4f}" for k, v in measures.items() if k != "elbo")
    name = "objective" if point_estimate else "ELBO"
    return (
        f"epoch {row['epoch']:3d}  train loss {row['train_loss']:.2f}  val {name} {measures['elbo']:.2f} "
        f"nats/img{extra}  ({row['images_per_s']:.0f} img/s){'  *' if improved else ''}"
    )


def summary(state, select: str, stopped_early: bool, seconds: float, device, world: int) -> dict:
    """``summary.json``: the best and last validation values of a run's metrics rows."""
    h = state.history
    best_row = max(h, key=lambda r: r[f"val_{select}"]) if h else {}
    return {
        "best_val_elbo": max((r["val_elbo"] for r in h), default=None),
        "final_val_elbo": h[-1]["val_elbo"] if h else None,
        "select_by": f"val_{select}",
        "best_epoch": best_row.get("epoch"),
        **({f"best_val_{select}": best_row.get(f"val_{select}")} if select != "elbo" else {}),
        "epochs_run": len(h),
        "steps": state.step,
        "stopped_early": stopped_early,
        "train_time_s": seconds,
        "device": str(device),
        "world_size": world,
        "unit": "nats per image",
    }


__all__ = ["write_metrics", "epoch_line", "summary"]

"""What a run tells: ``metrics.jsonl``, the line of each epoch, TensorBoard, and the summary.

Each epoch makes one metrics row (loss, validation measures, KL weight, learning rate, speed).
The row is written to ``metrics.jsonl`` (the whole file, atomically), said in one line through
the ``pyro_vae`` logger (the CLI prints it; from Python, configure :mod:`logging` to see it),
and with ``tensorboard=True`` written as TensorBoard scalars with a few images. At the end the
rows become ``summary.json``. Progress inside an epoch is a tqdm bar, not a log message.
"""

from __future__ import annotations

import torch

from pyro_vae.contract import Codes, Samples, has, traits
from pyro_vae.data.batch import Batch
from pyro_vae.files import write_jsonl
from pyro_vae.inference import marginal as evaluation
from pyro_vae.runs.folder import RunDir


def write_metrics(run: RunDir, rows) -> None:
    """The whole ``metrics.jsonl``, rewritten atomically (a reader never sees half a line)."""
    write_jsonl(run.metrics, rows)


def epoch_line(row: dict, measures: dict, improved: bool, point_estimate: bool = False) -> str:
    """The line that says how an epoch went (``*``: the best so far). A point estimate (an
    autoencoder) has no ELBO: its validation value is called the objective."""
    extra = "".join(f"  val {k} {v:.4f}" for k, v in measures.items() if k != "elbo")
    name = "objective" if point_estimate else "ELBO"
    return (f"epoch {row['epoch']:3d}  train loss {row['train_loss']:.2f}  val {name} {measures['elbo']:.2f} "
            f"nats/img{extra}  ({row['images_per_s']:.0f} img/s){'  *' if improved else ''}")


def summary(state, select: str, stopped_early: bool, seconds: float, device, world: int) -> dict:
    """``summary.json``: the best and last validation values of a run's metrics rows."""
    h = state.history
    best_row = max(h, key=lambda r: r[f"val_{select}"]) if h else {}
    return {"best_val_elbo": max((r["val_elbo"] for r in h), default=None),
            "final_val_elbo": h[-1]["val_elbo"] if h else None,
            "select_by": f"val_{select}", "best_epoch": best_row.get("epoch"),
            **({f"best_val_{select}": best_row.get(f"val_{select}")} if select != "elbo" else {}),
            "epochs_run": len(h), "steps": state.step, "stopped_early": stopped_early,
            "train_time_s": seconds, "device": str(device), "world_size": world, "unit": "nats per image"}


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
            t = traits(family)
            ll, kl = evaluation.elbo_terms(family.model, family.guide, *family.args(sub), data_plate=t.plate_name)
            self.writer.add_scalar("val_terms/recon_log_lik", ll.mean().item(), step)
            self.writer.add_scalar("val_terms/kl", kl.mean().item(), step)
            shape = t.data_shape or ()
            if len(shape) == 3 and shape[0] in (1, 3):
                if has(family, Codes) and not t.conditional:
                    x = val.x[:images // 2]
                    both = torch.cat([x, family.reconstruct(x).reshape(x.shape)]).clamp(0, 1)
                    self.writer.add_images("reconstructions", both.cpu(), step)
                if has(family, Samples) and not t.conditional:
                    self.writer.add_images("samples", family.sample(images).reshape(images, *shape).clamp(0, 1).cpu(),
                                           step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


__all__ = ["write_metrics", "epoch_line", "summary", "TensorBoardLog"]

"""A run folder: the one object that knows the name of every file a run writes.

Training, the CLI, figures and the report ask a :class:`RunDir` for paths; none of them spells a
file name. :func:`finish_run` is the end of a run (test evaluation, figures, report), the same
whether training was started from the CLI or from Python.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


class RunDir:
    """Paths of one run folder. Nothing is created until something is written."""

    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    LAST = "checkpoint_last.pt"
    BEST = "checkpoint_best.pt"
    SUMMARY = "summary.json"
    TEST_METRICS = "metrics_test"  # .json and .txt
    REPORT = "report.md"
    HTML = "index.html"
    CLASSIFIER = "feature_classifier.pt"  # the generation scores' classifier (trained once, cached)

    def __init__(self, path):
        self.path = Path(path)

    def __fspath__(self):
        return str(self.path)

    def __str__(self):
        return str(self.path)

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    def mkdir(self) -> "RunDir":
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def exists(self) -> bool:
        return self.last.exists()

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def test_metrics(self) -> Path:
        return self.path / (self.TEST_METRICS + ".json")

    @property
    def test_table(self) -> Path:
        return self.path / (self.TEST_METRICS + ".txt")

    @property
    def report(self) -> Path:
        return self.path / self.REPORT

    @property
    def html(self) -> Path:
        return self.path / self.HTML

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def classifier(self) -> Path:
        return self.path / self.CLASSIFIER

    def generation(self, label: str, sampler: str) -> Path:
        """Base name (no suffix) of the generation scores for data ``label`` and ``sampler``."""
        return self.path / f"generation_{label.replace('/', '_')}_{sampler}"

    def figure(self, name: str) -> Path:
        return self.path / f"{name}.png"

    @staticmethod
    def per_image(base) -> Path:
        """The per-image terms of log p(x) (``.npz``) beside an evaluation result ``base``."""
        base = Path(base)
        return base.with_name(base.name + "_per_image.npz")

    @property
    def test_per_image(self) -> Path:
        return self.per_image(self.path / self.TEST_METRICS)

    def evaluation(self, label: str, k: int) -> Path:
        """Base name (no suffix) of an ``evaluate`` result for data ``label`` with k samples."""
        return self.path / f"eval_{label.replace('/', '_')}_k{k}"

    def read_json(self, path):
        try:
            return json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def read_metrics(self) -> list:
        from .config import read_metrics

        return read_metrics(self.metrics)

    @staticmethod
    def of_checkpoint(path) -> "RunDir":
        """The run folder a checkpoint file sits in (a folder is taken as the run folder)."""
        path = Path(path)
        return RunDir(path if path.is_dir() else path.parent)

    @staticmethod
    def checkpoint_path(path) -> Path:
        """A checkpoint file, or a run folder's best checkpoint."""
        path = Path(path)
        return path / RunDir.BEST if path.is_dir() else path


def evaluate_and_save(family, data, label: str, out_base: Path, k: int, iwae_k: int = 0,
                      batch_size: int = 100, progress: bool = True):
    """:func:`pyro_vae.evaluation.evaluate` plus the data label and the time taken, written to
    ``out_base.json`` and ``out_base.txt``. Returns ``(metrics, table)``."""
    from .config import save_json
    from .evaluation import evaluate, format_table
    from .files import save_npz, write_text

    t0 = time.perf_counter()
    per_image = {}
    metrics = evaluate(family, data, k=k, iwae_k=iwae_k, batch_size=batch_size, progress=progress,
                       per_image=per_image)
    metrics["data"] = {"value": label, "unit": ""}
    metrics["eval_time_s"] = {"value": round(time.perf_counter() - t0, 1), "unit": "s"}
    table = format_table(metrics)
    save_json(out_base.with_suffix(".json"), metrics)
    write_text(out_base.with_suffix(".txt"), table + "\n")
    if per_image:
        save_npz(RunDir.per_image(out_base), **{name: t.numpy() for name, t in per_image.items()})
    return metrics, table


def finish_run(run, test, label: str = "test", eval_k: int = 1000, device="auto", plots: bool = True,
               progress: bool = True, log=print) -> dict | None:
    """The end of a run: load the best checkpoint, evaluate it on ``test`` (a Batch, already
    prepared by :func:`pyro_vae.data.for_evaluation`), add the test metrics to the summary, write
    the figures and the report. Returns the test metrics (None when ``eval_k`` is 0 and there
    is nothing to evaluate)."""
    from .checkpoint import load_checkpoint
    from .config import save_json
    from .training import select_device, set_seed

    run = run if isinstance(run, RunDir) else RunDir(run)
    dev = select_device(device)
    family, _ = load_checkpoint(run.best, dev)
    family.eval()
    test = test.to(dev)
    metrics = None
    if eval_k:
        set_seed(0)
        metrics, table = evaluate_and_save(family, test, label, run.path / RunDir.TEST_METRICS, eval_k,
                                           progress=progress)
        log(f"\n{label} (best checkpoint):\n{table}")
        summary = run.read_json(run.summary) or {}
        summary["test"] = {k: v["value"] for k, v in metrics.items() if not isinstance(v["value"], list)}
        save_json(run.summary, summary)
    if plots:
        write_figures_and_report(run, family, test, metrics, label=label, log=log, progress=progress)
    return metrics


def write_figures_and_report(run: RunDir, family, test, metrics=None, label="test", log=print, limit=2000,
                             progress: bool = False):
    """Every figure the family lists, for the first ``limit`` test points, the KL per latent
    dimension of every latent site (from the test metrics), and the report."""
    from .models.base import GENERIC_FIGURES
    from .plots import make_figures, plot_kl_per_dim, plot_log_px_terms
    from .report import write_report

    figures = make_figures(family, run.path, test.subset(slice(0, limit)), metrics_rows=run.read_metrics(),
                           split=label, progress=progress)
    for key, entry in (metrics or {}).items():
        if key.startswith("activity_"):
            site = key[len("activity_"):]
            kl = (metrics.get(f"kl_per_dim_{site}") or {}).get("value")
            figures[f"kl_per_dim_{site}"] = plot_kl_per_dim(kl, entry["value"], run.figure(f"kl_per_dim_{site}"),
                                                            site)
    if metrics and run.test_per_image.exists():
        import numpy as np

        from .compare import _samples_k

        with np.load(run.test_per_image) as terms:
            if "gap" in terms:
                figures["log_px_terms"] = plot_log_px_terms(dict(terms), run.figure("log_px_terms"),
                                                            k=_samples_k(metrics.get("log_px")))
    own = [n for n in getattr(family, "figures", ()) if n not in GENERIC_FIGURES]
    report = write_report(run.path, metrics, figures, titles=getattr(family, "figure_titles", None),
                          family_figures=own)
    log(f"figures and report: {report}")
    return figures


__all__ = ["RunDir", "finish_run", "evaluate_and_save", "write_figures_and_report"]

"""The end of a run: the best checkpoint evaluated on the test data, the summary completed, the
figures and the report written. Above evaluation, figures and report; below training and the
CLI, which call it."""

from __future__ import annotations

import time
from pathlib import Path

from pyro_vae.runs.checkpoint import load_checkpoint
from pyro_vae.figures.compare import samples_k
from pyro_vae.config import save_json
from pyro_vae.devices import select_device, set_seed
from pyro_vae.analysis.evaluate import TERMS, evaluate, format_table
from pyro_vae.files import save_npz, write_text
from pyro_vae.contract import GENERIC_FIGURES, traits
from pyro_vae.figures.plots import make_figures, plot_kl_per_dim, plot_log_px_terms
from pyro_vae.figures.report import write_report
from pyro_vae.runs.folder import RunDir, suffixed


def evaluate_and_save(
    family, data, label: str, out_base: Path, k: int, iwae_k: int = 0, batch_size: int = 100, progress: bool = True
):
    """:func:`pyro_vae.analysis.evaluate.evaluate` plus the data label and the time taken, written to
    ``out_base.json`` and ``out_base.txt``. Returns ``(metrics, table)``."""

    t0 = time.perf_counter()
    per_image = {}
    metrics = evaluate(family, data, k=k, iwae_k=iwae_k, batch_size=batch_size, progress=progress, per_image=per_image)
    metrics["data"] = {"value": label, "unit": ""}
    metrics["eval_time_s"] = {"value": round(time.perf_counter() - t0, 1), "unit": "s"}
    table = format_table(metrics)
    save_json(suffixed(out_base, ".json"), metrics)
    write_text(suffixed(out_base, ".txt"), table + "\n")
    if per_image:
        save_npz(RunDir.per_image(out_base), **{name: t.numpy() for name, t in per_image.items()})
    return metrics, table


def finish_run(
    run,
    test,
    label: str = "test",
    eval_k: int = 1000,
    device="auto",
    plots: bool = True,
    progress: bool = True,
    log=print,
) -> dict | None:
    """The end of a run: load the best checkpoint, evaluate it on ``test`` (a Batch, already
    prepared by :func:`pyro_vae.data.batch.for_evaluation`), add the test metrics to the summary, write
    the figures and the report. Returns the test metrics (None when ``eval_k`` is 0 and there
    is nothing to evaluate)."""

    run = run if isinstance(run, RunDir) else RunDir(run)
    dev = select_device(device)
    family, _ = load_checkpoint(run.best, dev)
    family.eval()
    test = test.to(dev)
    metrics = None
    if eval_k:
        set_seed(0)
        metrics, table = evaluate_and_save(
            family, test, label, run.path / RunDir.TEST_METRICS, eval_k, progress=progress
        )
        log(f"\n{label} (best checkpoint):\n{table}")
        summary = run.read_json(run.summary) or {}
        summary["test"] = {k: v["value"] for k, v in metrics.items() if not isinstance(v["value"], list)}
        save_json(run.summary, summary)
    if plots:
        write_figures_and_report(run, family, test, metrics, label=label, log=log, progress=progress)
    return metrics


def write_figures_and_report(
    run: RunDir, family, test, metrics=None, label="test", log=print, limit=2000, progress: bool = False
):
    """Every figure the family lists, for the first ``limit`` test points, the KL per latent
    dimension of every latent site (from the test metrics), and the report."""

    figures = make_figures(
        family, run.path, test.subset(slice(0, limit)), metrics_rows=run.read_metrics(), split=label, progress=progress
    )
    entries = {k: v if isinstance(v, dict) and "value" in v else {"value": v} for k, v in (metrics or {}).items()}
    for key, entry in entries.items():
        activity = _numbers(entry["value"]) if key.startswith("activity_") else None
        if activity:  # a list of numbers (a hand-edited file may hold anything)
            site = key[len("activity_") :]
            kl = _numbers(entries.get(f"kl_per_dim_{site}", {}).get("value"))
            figures[f"kl_per_dim_{site}"] = plot_kl_per_dim(
                kl if kl and len(kl) == len(activity) else None, activity, run.figure(f"kl_per_dim_{site}"), site
            )
    terms = run.read_arrays(run.test_per_image) if metrics else None
    if terms and all(len(terms.get(name, ())) for name in TERMS):
        figures["log_px_terms"] = plot_log_px_terms(
            {name: terms[name] for name in TERMS}, run.figure("log_px_terms"), k=samples_k(entries.get("log_px"))
        )
    t = traits(family)
    own = [n for n in t.figures if n not in GENERIC_FIGURES]
    report = write_report(run.path, metrics, figures, titles=t.figure_titles, family_figures=own)
    log(f"figures and report: {report}")
    return figures


def _numbers(value) -> list | None:
    """``value`` when it is a non-empty list of numbers, else None."""
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
    return value if ok else None


__all__ = ["evaluate_and_save", "finish_run", "write_figures_and_report"]

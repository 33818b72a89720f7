"""``pyro-vae compare RUN [RUN ...] --out DIR``: several run folders side by side.

Writes ``DIR/compare.md`` and a self-contained ``DIR/index.html`` (no external scripts, fonts
or styles) holding

1. a table of the runs' test metrics: test ELBO and log p(x) (nats per image, with the number
   k of importance samples), active units, accuracy (families with one), training time,
   number of parameters and epochs run;
2. the configuration settings that differ between the runs (``config.json`` flattened into
   dotted keys such as ``model.options.latent_dim`` and ``train.lr``);
3. ``DIR/val_curves.png``: the validation -ELBO of every run against epoch on one axis (and
   the validation accuracy beside it when a run has one).

Run folders are read through :class:`pyro_vae.runs.folder.RunDir` (a damaged file is an error naming it,
never taken for a missing one); the pages are rendered with the report's document model
(:mod:`pyro_vae.figures.report`), which escapes every text a run folder or ``--names`` brings. ``--out``
is never a run folder nor inside one: the comparison's ``index.html`` would replace the run's
report.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from pyro_vae.files import write_text
from pyro_vae.figures.report import flatten, to_html, to_markdown
from pyro_vae.runs.folder import RunDir

FIGURE = "val_curves"
MARKDOWN = "compare.md"
HTML = "index.html"
SKIP_SETTINGS = ("command",)  # always differs (at least --out); shown under "How the runs were made"


# ---------------------------------------------------------------------- reading runs
def _check_run(path) -> RunDir:
    run = RunDir(path)
    files = (run.config, run.metrics, run.summary)
    names = ", ".join(p.name for p in files)
    if not run.path.exists():
        raise ValueError(f"{run.path}: no such run folder")
    if not run.path.is_dir():
        raise ValueError(f"{run.path} is a file, not a run folder (pass the folder that holds {names})")
    if not any(p.is_file() for p in files):
        raise ValueError(f"{run.path} is not a run folder (it has none of {names})")
    return run


def _check_out(out_dir, runs: list[RunDir]) -> Path:
    """``--out``: a folder (or none yet) that is not a run folder nor inside one (any of ``runs``,
    or one with a checkpoint or a run's config.json): the comparison's index.html would replace
    that run's report, and its other files would mix with the run's."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; give a folder to write the comparison into")
    try:
        where = out_dir.resolve()
        compared = {run.path.resolve() for run in runs}
    except (OSError, RuntimeError) as e:  # a loop of symbolic links
        raise ValueError(f"--out {out_dir}: cannot follow the path ({e}); give a plain folder") from None
    for folder in (where, *where.parents):
        if folder in compared or RunDir(folder).is_run():
            what = "is the run folder" if folder == where else "is inside the run folder"
            raise ValueError(
                f"--out {out_dir} {what} {folder}: the comparison would overwrite or mix with that "
                f"run's own files (its {HTML} is the run's report); choose a folder outside every run "
                f"folder, e.g. --out {folder.parent / 'comparison'}"
            )
    return out_dir


def _display_names(runs: list[RunDir], names) -> list[str]:
    """The names given, or the shortest trailing parts of the paths that tell the runs apart."""
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(runs):
            raise ValueError(f"--names: give one name per run ({len(runs)} runs, {len(names)} names)")
        if len(set(names)) != len(names):
            raise ValueError(f"--names: the names must differ (got {', '.join(names)})")
        return names
    parts = [run.path.resolve().parts for run in runs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        out = ["/".join(p[-depth:]) for p in parts]
        if len(set(out)) == len(out):
            return out
    # the same folder given twice
    out = ["/".join(p[-1:]) for p in parts]
    return [f"{n} ({i + 1})" if out.count(n) > 1 else n for i, n in enumerate(out)]


def _test_metrics(run: RunDir, summary: dict) -> tuple[dict, dict]:
    """``({name: value}, {name: entry})`` of the test metrics: ``metrics_test.json`` (values
    with unit, se and note), else ``summary.json``'s ``test`` dict (values only)."""
    full = run.read_json(run.test_metrics)
    if isinstance(full, dict) and full:
        entries = {k: v if isinstance(v, dict) and "value" in v else {"value": v} for k, v in full.items()}
        return {k: e["value"] for k, e in entries.items()}, entries
    test = summary.get("test")
    if isinstance(test, dict):
        return dict(test), {k: {"value": v} for k, v in test.items()}
    return {}, {}


def _count_parameters(run: RunDir) -> tuple[int | None, str | None]:
    """Number of parameters of the best checkpoint's model, or (None, why not)."""
    from pyro_vae.runs.checkpoint import load_checkpoint

    try:
        module, _ = load_checkpoint(run.best, "cpu")
        return int(sum(p.numel() for p in module.parameters())), None
    except Exception as e:  # a plugin family not imported, a missing or foreign checkpoint ...
        return None, str(e)


def _epochs_run(summary: dict, history: list) -> int | None:
    if isinstance(summary.get("epochs_run"), int):
        return summary["epochs_run"]
    epochs = [r.get("epoch") for r in history if isinstance(r.get("epoch"), int)]
    return max(epochs) if epochs else None


class _Run:
    """What the comparison needs of one run folder."""

    def __init__(self, run: RunDir, name: str):
        self.run, self.name = run, name
        config = run.read_json(run.config)
        summary = run.read_json(run.summary)
        self.config = config if isinstance(config, dict) else None
        self.summary = summary if isinstance(summary, dict) else {}
        self.history = [r for r in run.read_metrics() if isinstance(r, dict)]
        self.test, self.test_entries = _test_metrics(run, self.summary)
        self.parameters, self.parameters_error = _count_parameters(run)
        self.epochs_run = _epochs_run(self.summary, self.history)


# ---------------------------------------------------------------------- formatting
def _number(v, spec: str) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "n/a"
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if spec == "int":
        return f"{round(v):,}"
    return format(float(v), spec)


def _with_se(entry: dict | None, spec: str) -> str:
    """A value with ``± se`` when the entry has a finite standard error."""
    if not entry:
        return "n/a"
    text = _number(entry.get("value"), spec)
    se = entry.get("se")
    if text != "n/a" and isinstance(se, (int, float)) and not isinstance(se, bool) and math.isfinite(se):
        text += f" ± {format(float(se), spec)}"
    return text


def _duration(seconds) -> str:
    from pyro_vae.figures.report import duration

    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "n/a"
    return "< 0.1 s" if seconds < 0.05 else duration(float(seconds))


def samples_k(entry: dict | None) -> int | None:
    """k of an importance-sampled log p(x): its note says ``importance sampled, k=...``."""
    m = re.search(r"\bk\s*=\s*(\d+)", str((entry or {}).get("note") or ""))
    return int(m.group(1)) if m else None


def _setting(v) -> str:
    """A configuration value as it reads in config.json, floats to 4 significant digits."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return format(v, ".4g")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_setting(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_setting(x)}" for k, x in v.items()) + "}"
    return str(v)


# ---------------------------------------------------------------------- the three parts
def _active_unit_sites(runs) -> list[str]:
    sites = []
    for r in runs:
        sites += [k for k in r.test if k.startswith("active_units_") and k not in sites]
    return sites


def metrics_table(runs) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per run of the test-metrics table."""
    sites = _active_unit_sites(runs)
    with_accuracy = any(isinstance(r.test.get("accuracy"), (int, float)) for r in runs)
    headers = ["Run", "Test ELBO (nats/image)", "Test log p(x) (nats/image)", "k (importance samples)"]
    headers += [f"Active units of {s[len('active_units_') :]}" for s in sites]
    headers += ["Accuracy"] if with_accuracy else []
    headers += ["Training time", "Parameters", "Epochs run", "Evaluated on"]
    rows = []
    for r in runs:
        e = r.test_entries
        row = [
            r.name,
            _with_se(e.get("elbo"), ".2f"),
            _with_se(e.get("log_px"), ".2f"),
            _number(samples_k(e.get("log_px")), "int"),
        ]
        for s in sites:
            text = _number(r.test.get(s), "int")
            unit = str((e.get(s) or {}).get("unit") or "")
            row.append(f"{text} {unit}" if text != "n/a" and re.fullmatch(r"of \d+", unit) else text)
        if with_accuracy:
            row.append(_number(r.test.get("accuracy"), ".3f"))
        data = r.test.get("data")
        row += [
            _duration(r.summary.get("train_time_s")),
            _number(r.parameters, "int"),
            _number(r.epochs_run, "int"),
            str(data) if isinstance(data, str) and data else "n/a",
        ]
        rows.append(row)
    return headers, rows


def flat_settings(d: dict) -> dict:
    """Nested dicts -> ``{"model.options.latent_dim": 2, ...}`` (the report's flattening)."""
    return dict(flatten(d))


_MISSING = object()


def config_differences(configs) -> list[tuple[str, list]]:
    """``[(dotted key, [value of each config or MISSING]), ...]`` for the settings whose values
    differ (a key absent from some configs differs), sorted by key; the command line is left out."""
    flat = [flat_settings({k: v for k, v in c.items() if k not in SKIP_SETTINGS}) for c in configs]
    keys = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    out = []
    for k in sorted(keys):
        values = [f.get(k, _MISSING) for f in flat]
        if any(v is _MISSING for v in values) or any(v != values[0] for v in values[1:]):
            out.append((k, values))
    return out


def plot_val_curves(runs, path) -> Path | None:
    """Validation -ELBO (nats per image) against epoch, one line per run; a second panel with
    the validation accuracy when a run has one. A star marks each run's best checkpoint.
    Returns the path, or None when no run has a validation ELBO."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    from pyro_vae.drawing import save

    def column(rows, key, sign=1.0):
        return np.array([sign * r[key] if isinstance(r.get(key), (int, float)) else np.nan for r in rows], dtype=float)

    curves = []
    for r in runs:
        epochs = np.array([row.get("epoch", i + 1) for i, row in enumerate(r.history)], dtype=float)
        curves.append((r, epochs, column(r.history, "val_elbo", -1.0), column(r.history, "val_accuracy")))
    if not any(np.isfinite(val).any() for _, _, val, _ in curves):
        return None
    with_accuracy = any(np.isfinite(acc).any() for *_, acc in curves)
    fig, axes = plt.subplots(1, 2 if with_accuracy else 1, figsize=(12 if with_accuracy else 7, 4.5), squeeze=False)
    axes = axes[0]
    colors = plt.get_cmap("tab10").colors
    marker = "o" if max(len(e) for _, e, _, _ in curves) <= 30 else None
    for i, (r, epochs, val, acc) in enumerate(curves):
        color = colors[i % len(colors)]
        panels = [(axes[0], val)] + ([(axes[1], acc)] if with_accuracy else [])
        for j, (ax, y) in enumerate(panels):
            if not np.isfinite(y).any():
                continue
            ax.plot(epochs, y, marker=marker, ms=4, color=color, label=r.name if j == 0 else None)
            best = r.summary.get("best_epoch")
            at = np.flatnonzero(epochs == best) if isinstance(best, int) else []
            if len(at) and np.isfinite(y[at[0]]):
                ax.plot([epochs[at[0]]], [y[at[0]]], "*", ms=12, color=color, mec="black", mew=0.6, zorder=5)
    axes[0].set_ylabel("validation -ELBO (nats per image)  \u2193 better")
    axes[0].set_title("Validation -ELBO")
    if with_accuracy:
        axes[1].set_ylabel("validation accuracy  \u2191 better")
        axes[1].set_title("Validation accuracy")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout()
    # below the axes: inside, it would cover the curves
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(labels), 4),
        fontsize=9,
        frameon=False,
    )
    return save(fig, path)


# ---------------------------------------------------------------------- the page
def _relative(path: Path, out_dir: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return path.resolve().as_posix()


def _blocks(runs, out_dir: Path, figure: Path | None) -> list:
    blocks = [
        ("h1", f"Comparison of {len(runs)} run{'s' if len(runs) != 1 else ''}"),
        ("table", ["Run", "Run folder"], [[r.name, _relative(r.run.path, out_dir)] for r in runs]),
    ]

    headers, rows = metrics_table(runs)
    blocks += [
        ("h2", "Test metrics"),
        (
            "p",
            "The best checkpoint of each run. ELBO and log p(x) are in nats per image, higher is "
            "better, ± one standard error over the images; log p(x) is importance sampled with "
            "k samples per image.",
        ),
        ("table", headers, rows),
    ]
    failed = [r for r in runs if r.parameters is None]
    if failed:
        blocks.append(("p", "Parameters n/a: " + "; ".join(f"{r.name}: {r.parameters_error}" for r in failed)))

    blocks.append(("h2", "Settings that differ"))
    with_config = [r for r in runs if r.config is not None]
    without = [r.name for r in runs if r.config is None]
    if without:
        blocks.append(("p", f"No {RunDir.CONFIG} in: {', '.join(without)}."))
    if len(with_config) < 2:
        blocks.append(("p", "Fewer than two configurations: nothing to compare."))
    else:
        diffs = config_differences([r.config for r in with_config])
        if diffs:
            rows = [[k] + ["n/a" if v is _MISSING else _setting(v) for v in values] for k, values in diffs]
            blocks += [
                ("p", "The settings of config.json whose values differ between the runs (n/a: not set in that run)."),
                ("table", ["Setting"] + [r.name for r in with_config], rows),
            ]
        else:
            blocks.append(
                ("p", f"All {len(with_config)} runs have the same configuration (apart from the command line).")
            )

    blocks.append(("h2", "Validation curves"))
    if figure is not None:
        blocks.append(
            (
                "img",
                "Validation -ELBO per epoch (and validation accuracy, where a run has one); a star "
                "marks the epoch of each run's best checkpoint",
                _relative(figure, out_dir),
                "Line chart of the validation negative ELBO in nats per image against epoch, one line per run",
            )
        )
    else:
        blocks.append(("p", f"No run has a validation ELBO in its {RunDir.METRICS}."))

    commands = [(r.name, r.config.get("command")) for r in with_config if r.config.get("command")]
    if commands:
        blocks += [
            ("h2", "How the runs were made"),
            ("code", "\n".join(f"# {name}\n{command}" for name, command in commands)),
        ]
    return blocks


def compare_runs(run_dirs, out_dir, names=None) -> Path:
    """Compare run folders: write ``out_dir/compare.md``, ``out_dir/index.html`` and
    ``out_dir/val_curves.png``; return the Markdown path.

    Args:
        run_dirs: run folders written by ``pyro-vae train`` (each holds at least one of
            config.json, metrics.jsonl, summary.json).
        out_dir: the output folder (created; must not be a file, a run folder or a folder inside
            one).
        names: display names, one per run (default: the folder names, with as many parent
            folders as it takes to tell them apart).

    Raises:
        ValueError: no runs, a path that is not a run folder, ``out_dir`` a file or a run folder
            (or inside one), names that do not fit the runs, or a run file that cannot be read
            (:class:`pyro_vae.runs.folder.UnreadableRunFile`).
    """

    run_dirs = list(run_dirs)
    if not run_dirs:
        raise ValueError("compare needs at least one run folder")
    checked = [_check_run(p) for p in run_dirs]
    out_dir = _check_out(out_dir, checked)
    runs = [_Run(run, name) for run, name in zip(checked, _display_names(checked, names))]
    out_dir.mkdir(parents=True, exist_ok=True)

    figure = plot_val_curves(runs, out_dir / f"{FIGURE}.png")
    blocks = _blocks(runs, out_dir, figure)
    md_path = out_dir / MARKDOWN
    write_text(md_path, to_markdown(blocks))
    write_text(out_dir / HTML, to_html(blocks, blocks[0][1]))
    return md_path


__all__ = ["compare_runs", "config_differences", "metrics_table", "plot_val_curves", "samples_k", "HTML"]

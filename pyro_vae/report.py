"""A run report: one Markdown file (``report.md``, plus a plain ``index.html``) in the run folder.

The report collects what a run folder holds — ``config.json``, ``summary.json``, the last rows
of ``metrics.jsonl`` — together with a dict of evaluation metrics and the figures written by
:func:`pyro_vae.plots.make_figures`, embedded by relative links so the folder can be moved or
shared as a whole. No dependencies beyond the standard library.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
from pathlib import Path

from .config import read_metrics

FIGURE_TITLES = {
    "curves": "Training and validation loss",
    "reconstructions": "Test images and their reconstructions",
    "samples": "Samples from the model",
    "manifold": "Learned 2-D manifold",
    "latent_space": "Latent space of the test data",
    "interpolation": "Latent interpolation",
}
# formats for the columns of metrics.jsonl
METRIC_FORMATS = {"train_loss": ".2f", "val_elbo": ".2f", "kl_weight": ".3g", "images_per_s": ".0f",
                  "time_s": ".1f"}


# ---------------------------------------------------------------------- values
def _fmt(v, spec: str | None = None) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return format(v, spec or ".6g")
    if isinstance(v, (list, tuple, dict)):
        text = json.dumps(v, default=str)
        return text if len(text) <= 120 else text[:117] + "..."
    return str(v)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested dicts -> [("model.latent_dim", 2), ...]."""
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def _metric_rows(metrics: dict) -> tuple[list[str], list[list[str]]]:
    """Accept ``{name: value}`` and ``{name: {"value": v, "unit": u, ...}}`` (mixed is fine)."""
    has_unit = any(isinstance(v, dict) and "unit" in v for v in metrics.values())
    rows = []
    for name, v in metrics.items():
        if isinstance(v, dict) and "value" in v:
            value, unit = v["value"], v.get("unit", "")
        else:
            value, unit = v, ""
        rows.append([str(name), _fmt(value)] + ([_fmt(unit) if unit else ""] if has_unit else []))
    return (["metric", "value"] + (["unit"] if has_unit else [])), rows


# ---------------------------------------------------------------------- document model
# A report is a list of blocks, rendered to Markdown and to HTML:
#   ("h1"|"h2"|"p", text)  ("table", headers, rows)  ("img", title, src)  ("code", text)


def _md_cell(s: str) -> str:
    return str(s).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _to_markdown(blocks) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind == "h1":
            out.append(f"# {b[1]}\n")
        elif kind == "h2":
            out.append(f"## {b[1]}\n")
        elif kind == "p":
            out.append(f"{b[1]}\n")
        elif kind == "table":
            headers, rows = b[1], b[2]
            out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            out.append("|" + "|".join("---" for _ in headers) + "|")
            for r in rows:
                out.append("| " + " | ".join(_md_cell(c) for c in r) + " |")
            out.append("")
        elif kind == "img":
            title, src = b[1], b[2]
            out.append(f"![{title}]({src.replace(' ', '%20')})\n")
        elif kind == "code":
            out.append("```\n" + b[1].rstrip() + "\n```\n")
    return "\n".join(out).rstrip() + "\n"


def _to_html(blocks, title: str) -> str:
    e = html.escape
    body = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{e(b[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{e(b[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            body.append(f'<figure><img src="{e(b[2], quote=True)}" alt="{e(b[1], quote=True)}">'
                        f"<figcaption>{e(b[1])}</figcaption></figure>")
        elif kind == "code":
            body.append(f"<pre>{e(b[1])}</pre>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
             "td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:left}"
             "th{background:#f3f3f3}img{max-width:100%}figure{margin:1em 0 2em}")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>{style}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _relative(path, run_dir: Path) -> str:
    p = Path(path)
    if not p.is_absolute():
        # a bare file name or a path relative to the run folder
        if (run_dir / p).exists() or not p.exists():
            return p.as_posix()
        p = p.resolve()
    try:
        return p.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return Path(os.path.relpath(p.resolve(), run_dir.resolve())).as_posix()


# ---------------------------------------------------------------------- entry point
def write_report(run_dir, metrics: dict | None = None, figures: dict | None = None,
                 last_rows: int = 10, html_too: bool = True, titles: dict | None = None) -> Path:
    """Write ``run_dir/report.md`` (and ``run_dir/index.html`` when ``html_too``); return the
    Markdown path.

    Args:
        run_dir: a run folder (``config.json``, ``summary.json``, ``metrics.jsonl`` are used
            when present; none is required).
        metrics: evaluation results, ``{name: value}`` or ``{name: {"value": v, "unit": u}}``.
        figures: ``{name: path}`` as returned by :func:`pyro_vae.plots.make_figures`; linked
            relative to ``run_dir``. None: every ``*.png`` in ``run_dir``.
        last_rows: how many final rows of ``metrics.jsonl`` to tabulate.
        titles: ``{figure name: title}`` for a family's own figures (``family.figure_titles``).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    title = f"Run report: {run_dir.resolve().name}"
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    blocks = [("h1", title), ("p", f"Run folder `{run_dir}`, report written {now}.")]

    summary = _read_json(run_dir / "summary.json")
    if isinstance(summary, dict) and summary:
        unit = summary.get("unit", "nats per image")
        blocks += [("h2", "Summary"),
                   ("p", f"From `summary.json`. ELBO values are in {unit} (higher is better).")]
        blocks.append(("table", ["key", "value"],
                       [[k, _fmt(v, ".2f" if "elbo" in k else None)] for k, v in summary.items()
                        if not isinstance(v, dict)]))  # nested (the test metrics): own table below

    if metrics:
        headers, rows = _metric_rows(metrics)
        blocks += [("h2", "Evaluation metrics"), ("table", headers, rows)]

    history = read_metrics(run_dir / "metrics.jsonl")
    if history:
        shown = history[-last_rows:] if last_rows else history
        columns = []
        for r in shown:
            for k in r:
                if k not in columns:
                    columns.append(k)
        note = (f"The last {len(shown)} of {len(history)} epochs" if len(shown) < len(history)
                else f"All {len(history)} epochs") + (
            " from `metrics.jsonl`. `train_loss` is -ELBO averaged over the epoch (with the KL "
            "weight of that step), `val_elbo` the validation ELBO; both in nats per image.")
        blocks += [("h2", "Training history"), ("p", note),
                   ("table", columns, [[_fmt(r.get(c), METRIC_FORMATS.get(c)) for c in columns]
                                       for r in shown])]

    if figures is None:
        order = {n: i for i, n in enumerate(FIGURE_TITLES)}
        pngs = sorted(run_dir.glob("*.png"), key=lambda p: (order.get(p.stem, len(order)), p.name))
        figures = {p.stem: p for p in pngs}
    if figures:
        blocks.append(("h2", "Figures"))
        for name, path in figures.items():
            if path is None:
                continue
            fig_title = {**FIGURE_TITLES, **(titles or {})}.get(name, str(name).replace("_", " ").capitalize())
            blocks += [("p", f"**{fig_title}**"), ("img", fig_title, _relative(path, run_dir))]

    config = _read_json(run_dir / "config.json")
    if isinstance(config, dict) and config:
        blocks += [("h2", "Configuration"), ("p", "From `config.json`."),
                   ("table", ["setting", "value"], [[k, _fmt(v)] for k, v in _flatten(config)])]

    md_path = run_dir / "report.md"
    md_path.write_text(_to_markdown(blocks))
    if html_too:
        # HTML has no Markdown emphasis: strip the ** and backticks used above
        plain = [(b[0], b[1].replace("**", "").replace("`", ""), *b[2:]) if b[0] == "p" else b
                 for b in blocks]
        (run_dir / "index.html").write_text(_to_html(plain, title))
    return md_path


__all__ = ["write_report"]

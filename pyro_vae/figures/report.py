"""A run report: one Markdown file (``report.md``) and one self-contained HTML page
(``index.html``) in the run folder.

The report reads what the run folder holds (``config.json``, ``summary.json``,
``metrics.jsonl``, the figures) and the test metrics, and lays them out in sections that follow
the model family: summary, test metrics, the family's own measures and figures (with the
captions and alt texts the family gives them), the latent space (KL per dimension of
every latent site), samples and reconstructions, training, and how the run was made (command
line, versions, configuration, links to its checkpoints and metrics). Every quantity has a
human name and a unit and is rounded to what it means; every figure has one caption and alt
text. Figures are linked relatively, so the folder can be moved or shared; the HTML uses no
external scripts, fonts or styles. Every text taken from a run folder (its name, the data set,
settings, metric keys, captions) is escaped by one helper per format (:func:`md_text`,
:func:`html_text`): a folder named ``<img onerror=...>`` shows as that text. Standard library only.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import re
from pathlib import Path
from urllib.parse import quote

from pyro_vae.files import write_text
from pyro_vae.runs.folder import RunDir

# name -> caption (FIGURE_ALT: the alt text) of the generic figures; a family gives its own
FIGURE_TITLES = {
    "curves": "Training and validation loss per epoch",
    "reconstructions": "Test images (top) and their reconstructions (bottom)",
    "samples": "Samples from the model",
    "manifold": "Learned 2-D manifold: E[x|z] over a grid of prior quantiles",
    "latent_space": "Latent space: posterior means of test images, coloured by label",
    "interpolation": "Interpolation in latent space between two test images",
    "log_px_terms": "The terms of log p(x) = E_q[log p(x|z)] - KL(q || p(z)) + KL(q || p(z|x)) over the test images",
}
FIGURE_ALT = {
    "curves": "Line chart of the training loss and validation negative ELBO in nats per image against epoch",
    "reconstructions": "Two rows of digit images: test images above, the model's reconstructions below",
    "samples": "A grid of images generated from the prior",
    "manifold": "A square grid of generated images varying smoothly along two latent coordinates",
    "latent_space": "Scatter plot of latent codes coloured by class",
    "interpolation": "A row of images morphing from one test image into another",
    "log_px_terms": "A bar chart of the mean terms of log p(x) and histograms of the per-image ELBO, log p(x), "
    "KL and inference gap",
}
# a run on vectors (a data shape of one dimension: a table's rows) is drawn column by column
VECTOR_TITLES = {
    "reconstructions": (
        "Each column of the test data observed against its reconstruction E[x|z] at z = the mean "
        "of q(z|x): numbers as a scatter around the line y = x with the RMSE, categories as "
        "counts of the observed level against the most probable one with the accuracy",
        "A panel per column: scatter plots of observed against reconstructed values, and "
        "confusion-count grids for categorical columns",
    ),
    "feature_log_lik": (
        "The mean log-likelihood log p(x_j | z) of each column at z = the mean of q(z|x), with "
        "its standard error over the test data points where the column is observed",
        "Horizontal bars: the mean log-likelihood of each column",
    ),
    "samples": (
        "Each column in the test data and in draws x ~ p(x|z), z ~ p(z): histograms for numbers, level "
        "shares for categories",
        "A panel per column comparing the data's distribution with the model's",
    ),
    "latent_space": (
        "Latent space: posterior means of test data points, coloured by label",
        "Scatter plot of latent codes coloured by class",
    ),
}
SECTIONS = [  # (title, figure names) in page order; a family's own figures get their own section
    ("Latent space", ("latent_space", "manifold", "interpolation")),
    ("Samples and reconstructions", ("samples", "reconstructions", "feature_log_lik")),
    ("The terms of log p(x)", ("log_px_terms",)),
    ("Training", ("curves",)),
]

# quantity -> (human name, unit, format); format "duration", "bool", "int" or a format spec
QUANTITIES = {
    # summary.json
    "best_val_elbo": ("Best validation ELBO", "nats/image", ".2f"),
    "final_val_elbo": ("Final validation ELBO", "nats/image", ".2f"),
    "best_val_accuracy": ("Best validation accuracy", "", ".3f"),
    "select_by": ("Best checkpoint chosen by", "", None),
    "best_epoch": ("Epoch of the best checkpoint", "", "int"),
    "epochs_run": ("Epochs run", "", "int"),
    "steps": ("Optimizer steps", "", "int"),
    "stopped_early": ("Stopped early", "", "bool"),
    "train_time_s": ("Training time", "", "duration"),
    "device": ("Device", "", None),
    "world_size": ("Processes", "", "int"),
    # evaluation
    "num_images": ("Images evaluated", "", "int"),
    "elbo": ("ELBO", "nats/image", ".2f"),
    "elbo_bpd": ("-ELBO", "bits/dim", ".4f"),
    "recon_log_lik": ("Reconstruction log-likelihood", "nats/image", ".2f"),
    "kl": ("KL divergence", "nats/image", ".2f"),
    "log_px": ("log p(x)", "nats/image", ".2f"),
    "log_px_bpd": ("-log p(x)", "bits/dim", ".4f"),
    "gap": ("Inference gap log p(x) - ELBO", "nats/image", ".2f"),
    "objective": ("Training objective at the code", "nats/image", ".2f"),
    "accuracy": ("Accuracy", "", ".3f"),
    "eval_time_s": ("Evaluation time", "", "duration"),
    # metrics.jsonl
    "epoch": ("Epoch", "", "int"),
    "step": ("Step", "", "int"),
    "train_loss": ("Training loss (-ELBO)", "nats/image", ".2f"),
    "val_elbo": ("Validation ELBO", "nats/image", ".2f"),
    "val_accuracy": ("Validation accuracy", "", ".3f"),
    "kl_weight": ("KL weight", "", ".3g"),
    "images_per_s": ("Images/s", "", ",.0f"),
    "time_s": ("Epoch time", "", "duration"),
}
PATTERNS = [  # names with a suffix: (regex, human name with {0}, unit, format)
    (r"iwae_(\d+)", "IWAE bound, k = {0}", "nats/image", ".2f"),
    (r"active_units_(.+)", "Active units of {0}", "", "int"),
    (r"best_val_(.+)", "Best validation {0}", "", ".4g"),
    (r"val_(.+)", "Validation {0}", "", ".4g"),
]
SKIP = {"unit", "test", "data"}


# ---------------------------------------------------------------------- values
def human(name: str) -> tuple[str, str, str | None]:
    """(human name, unit, format) of a quantity's key; unknown keys become words."""
    if name in QUANTITIES:
        return QUANTITIES[name]
    for pattern, label, unit, spec in PATTERNS:
        m = re.fullmatch(pattern, name)
        if m:
            return label.format(*(g.replace("_", " ") for g in m.groups())), unit, spec
    if "_" not in name:  # already words (a user's label): kept as given
        return name, "", None
    words = name.replace("_", " ").strip()
    return (words[:1].upper() + words[1:]) if words else name, "", None


def duration(seconds: float) -> str:
    """1.23 s, 4 min 12 s, 1 h 05 min."""
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(round(seconds % 60)):02d} s"
    return f"{int(seconds // 3600)} h {int(round(seconds % 3600 / 60)):02d} min"


def fmt(v, spec: str | None = None) -> str:
    """A value rounded to what it means (4 significant digits when nothing says otherwise)."""
    if v is None:
        return "n/a"
    if isinstance(v, bool) or spec == "bool":
        return "yes" if v else "no"
    if spec == "duration" and isinstance(v, (int, float)):
        return duration(float(v))
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}" if spec in (None, "int") else format(v, spec)
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if spec == "int":
            return f"{round(v):,}"
        return format(v, spec or ".4g")
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v) if len(v) <= 8 else f"{len(v)} values"
    if isinstance(v, dict):
        return json.dumps(v, default=str) if len(json.dumps(v, default=str)) <= 80 else f"{len(v)} entries"
    text = str(v)
    return text.replace("_", " ") if spec is None and re.fullmatch(r"val_\w+", text) else text


def flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested dicts -> [("model.options.latent_dim", 2), ...]."""
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.extend(flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def is_vector_run(config: dict) -> bool:
    """Whether a run's ``config.json`` (a dict) says its data points are vectors (one dimension)."""
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    shape = model.get("data_shape")
    return isinstance(shape, list) and len(shape) == 1


def per_point(text: str, vector: bool) -> str:
    """A unit or a sentence said per data point rather than per image, for a run on vectors."""
    if not vector:
        return text
    for image, point in (
        ("nats/image", "nats/data point"),
        ("per image", "per data point"),
        ("per-image", "per-data-point"),
        ("Images evaluated", "Data points evaluated"),
        ("Images/s", "Data points/s"),
        ("images", "data points"),
    ):
        text = text.replace(image, point)
    return text


VECTOR_SKIP = {"elbo_bpd", "log_px_bpd"}  # bits per dimension: a unit of images, not of a table's mixed columns


def _metric_rows(metrics: dict, vector: bool = False) -> tuple[list[str], list[list[str]]]:
    """Rows of (measure, value, unit, note) from ``{name: value}`` or ``{name: {"value", "unit",
    "se", "note"}}`` (mixed is fine); lists (per-dimension values) are drawn, not tabulated. For a
    run on vectors (``vector``) the units are per data point and bits per dimension are left out."""
    rows = []
    order = [
        "num_images",
        "elbo",
        "elbo_bpd",
        "recon_log_lik",
        "kl",
        "objective",
        "iwae",
        "log_px",
        "log_px_bpd",
        "gap",
        "active_units",
        "accuracy",
    ]

    def rank(name):
        return next((i for i, k in enumerate(order) if name == k or name.startswith(k + "_")), len(order))

    for name, v in sorted(metrics.items(), key=lambda kv: rank(kv[0])):
        entry = v if isinstance(v, dict) and "value" in v else {"value": v}
        value = entry["value"]
        if name in SKIP or isinstance(value, (list, tuple, dict)) or (vector and name in VECTOR_SKIP):
            continue
        label, unit, spec = human(name)
        text = "undefined" if value is None and entry.get("note") else fmt(value, spec)
        se = entry.get("se")
        if isinstance(se, float) and math.isfinite(se) and isinstance(value, float):
            text += f" ± {fmt(se, spec)}"
        unit = "" if spec == "duration" else unit or ("" if entry.get("unit") in (None, "") else str(entry["unit"]))
        rows.append(
            [
                per_point(label, vector),
                text,
                per_point(unit, vector),
                per_point(str(entry.get("note", "") or ""), vector),
            ]
        )
    return ["measure", "value", "unit", "note"], rows


# ---------------------------------------------------------------------- document model
# A report is a list of blocks, rendered to Markdown and to HTML:
#   ("h1"|"h2"|"h3", text)  ("p", text or [text, ("code", text), ("b", text), ...])
#   ("table", headers, rows)  ("img", caption, src[, alt])  ("code", text)  ("links", [(text, href), ...])
# Every text is plain text, escaped by the renderer (md_text, html_text): a run folder's name, a data
# set's path, a setting, a metric key or a --names entry may hold "<script>", "|" or "`". Marks are
# never written into a text: code and bold are parts of a paragraph.

_MD_MARKS = re.compile(r"([\\`*\[\]|])")


def md_text(text) -> str:
    """``text`` as literal Markdown text: ``& < >`` as HTML entities (Markdown viewers render inline
    HTML), the marks of code, emphasis, links and table cells (``\\ ` * [ ] |``) escaped with a
    backslash, line breaks as spaces (they would end a table row or a paragraph)."""
    t = " ".join(str(text).splitlines())
    t = t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_MARKS.sub(r"\\\1", t)


def html_text(text) -> str:
    """``text`` as literal HTML text or a double-quoted attribute value."""
    return html.escape(str(text), quote=True)


def _href(path) -> str:
    """A relative link as a URL: every character but letters, digits, ``/`` and ``_.-~``
    percent-encoded (a ``:`` would make ``javascript:x.png`` a scheme; ``)`` would end a
    Markdown link)."""
    return quote(str(path), safe="/")


def _md_code(text) -> str:
    """An inline code span holding ``text`` literally: fenced by one backtick more than its
    longest run of backticks (CommonMark), so the text cannot close it."""
    t = " ".join(str(text).splitlines())
    fence = "`" * (max(map(len, re.findall(r"`+", t)), default=0) + 1)
    pad = " " if t[:1] in ("`", " ") or t[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{t}{pad}{fence}"


def _md_block(text) -> str:
    """A fenced code block holding ``text`` literally (a fence longer than any run of backticks in it)."""
    fence = "`" * max(3, max(map(len, re.findall(r"`+", text)), default=0) + 1)
    return f"{fence}\n{text.rstrip()}\n{fence}\n"


def _parts(p) -> list:
    return [p] if isinstance(p, str) else list(p)


def _md_inline(p) -> str:
    out = []
    for part in _parts(p):
        if isinstance(part, tuple):
            mark, text = part
            out.append(_md_code(text) if mark == "code" else f"**{md_text(text)}**")
        else:
            out.append(md_text(part))
    return "".join(out)


def _html_inline(p) -> str:
    out = []
    for part in _parts(p):
        if isinstance(part, tuple):
            tag = "code" if part[0] == "code" else "strong"
            out.append(f"<{tag}>{html_text(part[1])}</{tag}>")
        else:
            out.append(html_text(part))
    return "".join(out)


def to_markdown(blocks) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + f" {md_text(b[1])}\n")
        elif kind == "p":
            out.append(f"{_md_inline(b[1])}\n")
        elif kind == "table":
            headers, rows = b[1], b[2]
            out.append("| " + " | ".join(md_text(h) for h in headers) + " |")
            out.append("|" + "|".join("---" for _ in headers) + "|")
            for r in rows:
                out.append("| " + " | ".join(md_text(c) for c in r) + " |")
            out.append("")
        elif kind == "img":
            caption, src = b[1], b[2]
            alt = b[3] if len(b) > 3 else caption
            out.append(f"![{md_text(alt)}]({_href(src)})\n\n*{md_text(caption)}*\n")
        elif kind == "code":
            out.append(_md_block(b[1]))
        elif kind == "links":
            out.append("\n".join(f"- [{md_text(t)}]({_href(h)})" for t, h in b[1]) + "\n")
    return "\n".join(out).rstrip() + "\n"


def to_html(blocks, title: str) -> str:
    e = html_text
    body = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{e(b[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_html_inline(b[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            alt = b[3] if len(b) > 3 else b[1]
            body.append(
                f'<figure><img src="{e(_href(b[2]))}" alt="{e(alt)}"><figcaption>{e(b[1])}</figcaption></figure>'
            )
        elif kind == "code":
            body.append(f"<pre>{e(b[1])}</pre>")
        elif kind == "links":
            body.append("<ul>" + "".join(f'<li><a href="{e(_href(h))}">{e(t)}</a></li>' for t, h in b[1]) + "</ul>")
    style = (
        "body{font-family:sans-serif;max-width:62em;margin:2em auto;padding:0 1em;line-height:1.4}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}figure{margin:1em 0 2em}"
        "figcaption{color:#444;font-style:italic}pre{background:#f6f6f6;padding:0.6em;overflow-x:auto}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


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


def family_texts(titles: dict | None, vector: bool = False) -> tuple[dict, dict]:
    """``(captions, alt texts)`` by figure name: the generic ones (for data drawn column by column
    when ``vector``), then a family's ``titles``, each value a caption or a ``(caption, alt text)``
    pair."""
    captions, alts = dict(FIGURE_TITLES), dict(FIGURE_ALT)
    if vector:
        captions = {k: per_point(v, True) for k, v in captions.items()}
        alts = {k: per_point(v, True) for k, v in alts.items()}
        captions.update({k: v[0] for k, v in VECTOR_TITLES.items()})
        alts.update({k: v[1] for k, v in VECTOR_TITLES.items()})
    for name, text in (titles or {}).items():
        if isinstance(text, (tuple, list)) and len(text) == 2:
            captions[name], alts[name] = str(text[0]), str(text[1])
        else:
            captions[name] = text
    return captions, alts


# ---------------------------------------------------------------------- entry point
def write_report(
    run_dir,
    metrics: dict | None = None,
    figures: dict | None = None,
    last_rows: int = 10,
    html_too: bool = True,
    titles: dict | None = None,
    family_figures=(),
    family_name: str | None = None,
) -> Path:
    """Write ``run_dir/report.md`` (and ``run_dir/index.html`` when ``html_too``); return the
    Markdown path.

    Args:
        run_dir: a run folder (``config.json``, ``summary.json``, ``metrics.jsonl`` are used
            when present; none is required).
        metrics: evaluation results, ``{name: value}`` or ``{name: {"value": v, "unit": u}}``.
        figures: ``{name: path}`` as returned by :func:`pyro_vae.figures.plots.make_figures`; linked
            relative to ``run_dir``. None: every ``*.png`` in ``run_dir``.
        last_rows: how many final rows of ``metrics.jsonl`` to tabulate.
        titles: ``{figure name: caption or (caption, alt text)}`` for a family's own figures
            (``family.figure_titles``); without an alt text the caption is the alt text.
        family_figures: the names of the family's own figures: they get a section of their own,
            titled ``family_name``, beside the family's measures.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = RunDir(run_dir)
    config = run.read_json(run.config) or {}
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    family_name = family_name or model.get("model")
    title = f"Run report: {run_dir.resolve().name}"
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    intro = ["Run folder ", ("code", str(run_dir)), f", report written {now}."]
    if family_name:
        intro += [" Model family ", ("b", family_name)] + (
            [", data set ", ("b", data["dataset"]), "."] if data.get("dataset") else ["."]
        )
    blocks = [("h1", title), ("p", intro)]
    vector = is_vector_run(config)

    summary = run.read_json(run.summary)
    if isinstance(summary, dict) and summary:
        rows = []
        order = {k: i for i, k in enumerate(QUANTITIES)}
        for k, v in sorted(summary.items(), key=lambda kv: order.get(kv[0], len(order))):
            if k in SKIP or isinstance(v, dict):
                continue
            label, unit, spec = human(k)
            unit = per_point(unit, vector)
            rows.append([per_point(label, vector), fmt(v, spec) + (f" {unit}" if unit and v is not None else "")])
        blocks += [
            ("h2", "Summary"),
            (
                "p",
                per_point("ELBO and log-likelihoods are in nats per image; higher is better.", vector)
                + (f" Data: {data['scale']}." if vector and data.get("scale") else ""),
            ),
            ("table", ["quantity", "value"], rows),
        ]

    if metrics:
        where = metrics.get("data", {})
        where = where.get("value") if isinstance(where, dict) else where
        headers, rows = _metric_rows(metrics, vector)
        blocks += [
            ("h2", "Test metrics"),
            (
                "p",
                ["The best checkpoint, evaluated on ", ("code", str(where)), "."] if where else "The best checkpoint.",
            ),
            ("table", headers, rows),
        ]

    if figures is None:
        figures = {p.stem: p for p in sorted(run_dir.glob("*.png"))}
    figures = {k: v for k, v in figures.items() if v is not None}
    captions, alts = family_texts(titles, vector)

    def figure_block(name):
        if name.startswith("kl_per_dim_"):
            site = name[len("kl_per_dim_") :]
            captions[name] = (
                f"KL(q || p) of each dimension of {site}, sorted, and its activity with the active-unit threshold"
            )
        caption = captions.get(name) or human(name)[0]
        alt = alts.get(
            name,
            "Bar charts of the KL divergence and the activity of every latent dimension"
            if name.startswith("kl_per_dim_")
            else caption,
        )
        return ("img", caption, _relative(figures[name], run_dir), alt)

    placed = set()
    own = [n for n in family_figures if n in figures]
    if own:
        blocks.append(("h2", f"{family_name or 'Model'}: its own measures and figures"))
        blocks += [figure_block(n) for n in own]
        placed.update(own)
    for section, names in SECTIONS:
        present = [n for n in names if n in figures and n not in placed]
        kl = sorted(n for n in figures if n.startswith("kl_per_dim")) if section == "Latent space" else []
        if not present and not kl:
            continue
        blocks.append(("h2", section))
        for n in kl:  # one block per latent site
            blocks += [("h3", f"Latent site {n[len('kl_per_dim_') :] or 'z'}"), figure_block(n)]
        blocks += [figure_block(n) for n in present]
        placed.update(present + kl)
        if section == "Training":
            blocks += _history_blocks(run_dir, last_rows, vector)
    rest = [n for n in figures if n not in placed]
    if rest:
        blocks.append(("h2", "Other figures"))
        blocks += [figure_block(n) for n in rest]
    if "curves" not in figures:
        hist = _history_blocks(run_dir, last_rows, vector)
        if hist:
            blocks += [("h2", "Training")] + hist

    blocks += _provenance_blocks(run_dir, config)

    md_path = run.report
    write_text(md_path, to_markdown(blocks))
    if html_too:
        write_text(run.html, to_html(blocks, title))
    return md_path


def _history_blocks(run_dir: Path, last_rows: int, vector: bool = False) -> list:
    history = RunDir(run_dir).read_metrics()
    if not history:
        return []
    shown = history[-last_rows:] if last_rows else history
    columns = []
    for r in shown:
        columns += [k for k in r if k not in columns]
    heads = [per_point(human(c)[0] + (f" ({human(c)[1]})" if human(c)[1] else ""), vector) for c in columns]
    note = (
        f"The last {len(shown)} of {len(history)} epochs" if len(shown) < len(history) else f"All {len(history)} epochs"
    ) + (
        ". The training loss is -ELBO averaged over the epoch (with that step's KL weight, plus any "
        "loss term of the family outside the ELBO); the validation ELBO uses KL weight 1."
    )
    note = per_point(note, vector)
    return [("p", note), ("table", heads, [[fmt(r.get(c), human(c)[2]) for c in columns] for r in shown])]


def _provenance_blocks(run_dir: Path, config: dict) -> list:
    blocks = [("h2", "How this run was made")]
    if config.get("command"):
        blocks += [("p", "Command line:"), ("code", config["command"])]
    versions = config.get("versions")
    if isinstance(versions, dict) and versions:
        blocks.append(("table", ["package", "version"], [[k, str(v)] for k, v in versions.items()]))
    run = RunDir(run_dir)
    files = [
        ("configuration", run.config),
        ("per-epoch metrics", run.metrics),
        ("test metrics", run.test_metrics),
        ("summary", run.summary),
        ("best checkpoint", run.best),
        ("last checkpoint", run.last),
    ]
    present = [(f"{t} ({f.name})", f.name) for t, f in files if f.exists()]
    if present:
        blocks += [("p", "Files of this run:"), ("links", present)]
    shown = {k: v for k, v in config.items() if k not in ("command", "versions")}
    if shown:
        blocks += [("h3", "Configuration"), ("table", ["setting", "value"], [[k, fmt(v)] for k, v in flatten(shown)])]
    return blocks if len(blocks) > 1 else []


__all__ = ["write_report", "human", "fmt", "duration", "md_text", "html_text"]

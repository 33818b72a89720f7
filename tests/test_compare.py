"""``pyro-vae compare``: tiny real runs side by side (table, differing settings, curves, pages)."""

from __future__ import annotations

import argparse
import json
import re
from html.parser import HTMLParser

import pytest
import torch

from pyro_vae.cli import main
from pyro_vae.cli.compare import add_compare_parser as add_parser, cmd_compare
from pyro_vae.figures.compare import compare_runs, config_differences
from pyro_vae.runs.folder import RunDir

LONG_FLOAT = re.compile(r"-?\d+\.\d{5,}")  # a float not rounded to what it means


def _md_table(md: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the Markdown table whose first header is ``first_header``."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    cells = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells.append([c.strip() for c in line.strip("|").split(" | ")])
    return cells[0], cells[2:]


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.src, self.external = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.src.append(a.get("src"))
        if tag in ("script", "link") or any(
            str(v or "").startswith(("http:", "https:", "//")) for k, v in attrs if k in ("src", "href")
        ):
            self.external.append((tag, a))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny runs on synthetic data: a base VAE, one with another lr and latent size, and
    an M2 (it has an accuracy); the last two skip figures to stay fast."""
    tmp = tmp_path_factory.mktemp("compare")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(200, 1, 12, 12, generator=g) < 0.3).float()
    torch.save({"x": x, "y": torch.arange(200) % 4}, tmp / "d.pt")
    common = [
        "--dataset",
        str(tmp / "d.pt"),
        "--binarize",
        "none",
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--eval-k",
        "5",
        "--no-progress",
        "--hidden",
        "16",
        "--no-plots",
    ]
    out = {"base": tmp / "base", "wide": tmp / "wide", "m2": tmp / "m2"}
    assert main(["train", *common, "--latent-dim", "2", "--out", str(out["base"])]) == 0
    assert main(["train", *common, "--latent-dim", "3", "--lr", "0.01", "--out", str(out["wide"])]) == 0
    assert main(["train", "--model", "ssvae", *common, "--latent-dim", "2", "--out", str(out["m2"])]) == 0
    return tmp, out


def test_compare_page_table_settings_and_figure(runs, capsys):
    tmp, out = runs
    dest = tmp / "cmp"
    md_path = compare_runs([out["base"], out["wide"], out["m2"]], dest)
    assert md_path == dest / "compare.md"
    for name in ("compare.md", "index.html", "val_curves.png"):
        assert (dest / name).stat().st_size > 0, name
    md, page = md_path.read_text(), (dest / "index.html").read_text()

    headers, rows = _md_table(md[md.index("## Test metrics") :], "Run")
    assert [r[0] for r in rows] == ["base", "wide", "m2"]
    col = {h: i for i, h in enumerate(headers)}
    for row, key in zip(rows, ("base", "wide", "m2")):
        summary = json.loads(RunDir(out[key]).summary.read_text())
        assert row[col["Test ELBO (nats/image)"]].split(" ± ")[0] == f"{round(summary['test']['elbo'], 2):.2f}"
        assert row[col["Test log p(x) (nats/image)"]].split(" ± ")[0] == f"{round(summary['test']['log_px'], 2):.2f}"
        assert row[col["k (importance samples)"]] == "5"
        assert row[col["Epochs run"]] == "2"
        assert re.fullmatch(r"[\d,]+", row[col["Parameters"]])
        assert row[col["Training time"]].endswith(" s")
    assert rows[1][col["Active units of z"]].endswith("of 3")
    assert rows[2][col["Accuracy"]] == f"{json.loads(RunDir(out['m2']).summary.read_text())['test']['accuracy']:.3f}"
    assert rows[0][col["Accuracy"]] == "n/a"

    settings = md[md.index("## Settings that differ") :]
    s_headers, s_rows = _md_table(settings, "Setting")
    assert s_headers == ["Setting", "base", "wide", "m2"]
    keys = {r[0]: r[1:] for r in s_rows}
    assert keys["train.lr"] == ["0.001", "0.01", "0.001"]
    assert keys["model.options.latent_dim"] == ["2", "3", "2"]
    assert "train.epochs" not in keys and "command" not in keys
    assert keys["model.options.aux_weight"][0] == "n/a"  # an M2 option the VAEs do not have

    for text in (md, page):
        assert not LONG_FLOAT.search(text), LONG_FLOAT.search(text).group(0)
    parser = _Images()
    parser.feed(page)
    assert parser.src == ["val_curves.png"]
    assert all((dest / src).is_file() for src in parser.src)
    assert not parser.external  # works offline
    assert "<style>" in page

    # the CLI entry: a parser built with add_parser, names given
    sub = argparse.ArgumentParser(prog="pyro-vae").add_subparsers(dest="command")
    p = add_parser(sub, argparse.HelpFormatter)
    args = p.parse_args(
        [str(out["base"]), str(out["wide"]), "--out", str(tmp / "cmp2"), "--names", "lr 1e-3", "lr 1e-2"]
    )
    assert cmd_compare(args) == 0
    assert "compare.md" in capsys.readouterr().out
    md2 = (tmp / "cmp2" / "compare.md").read_text()
    _, rows2 = _md_table(md2[md2.index("## Test metrics") :], "Run")
    assert [r[0] for r in rows2] == ["lr 1e-3", "lr 1e-2"]
    assert "Accuracy" not in md2  # no run has one: no column

    # one run, same run twice: a page, and a sentence instead of a settings table
    compare_runs([out["base"], out["base"]], tmp / "same", names=["one", "two"])
    assert "have the same configuration" in (tmp / "same" / "compare.md").read_text()


def test_fallbacks_when_files_are_missing(runs, tmp_path):
    """Without metrics_test.json the summary's test dict is used; a checkpoint that does not
    load shows n/a parameters; a run without metrics.jsonl has no curve."""
    import shutil

    _, out = runs
    run = RunDir(tmp_path / "stripped")
    shutil.copytree(out["base"], run.path)
    run.test_metrics.unlink()
    run.best.write_bytes(b"not a checkpoint")
    md = compare_runs([run.path], tmp_path / "cmp").read_text()
    headers, rows = _md_table(md[md.index("## Test metrics") :], "Run")
    col = {h: i for i, h in enumerate(headers)}
    summary = json.loads(run.summary.read_text())
    assert rows[0][col["Test ELBO (nats/image)"]] == f"{summary['test']['elbo']:.2f}"  # no se in summary
    assert rows[0][col["k (importance samples)"]] == "n/a"
    assert rows[0][col["Parameters"]] == "n/a" and "Parameters n/a" in md
    assert "nothing to compare" in md


def test_config_differences_flattens_and_marks_missing_keys():
    a = {"command": "x", "train": {"lr": 0.001, "epochs": 2}, "model": {"options": {"latent_dim": 2}}}
    b = {"command": "y", "train": {"lr": 0.01, "epochs": 2}, "model": {"options": {"latent_dim": 2, "k": 1}}}
    diffs = dict(config_differences([a, b]))
    assert set(diffs) == {"train.lr", "model.options.k"}
    assert diffs["train.lr"] == [0.001, 0.01]


def test_errors_name_the_problem(runs, tmp_path):
    _, out = runs
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a run folder"):
        compare_runs([out["base"], tmp_path / "empty"], tmp_path / "cmp")
    with pytest.raises(ValueError, match="no such run folder"):
        compare_runs([tmp_path / "nowhere"], tmp_path / "cmp")
    with pytest.raises(ValueError, match="at least one run"):
        compare_runs([], tmp_path / "cmp")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        compare_runs([out["base"]], tmp_path / "file")
    with pytest.raises(ValueError, match="one name per run"):
        compare_runs([out["base"], out["wide"]], tmp_path / "cmp", names=["only one"])
    with pytest.raises(ValueError, match="not a run folder"):
        cmd_compare(argparse.Namespace(runs=[str(tmp_path / "empty")], out=str(tmp_path / "cmp"), names=None))
    assert not (tmp_path / "cmp").exists()  # nothing written before the checks pass

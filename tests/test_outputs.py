"""What a run folder's outputs survive (issue 21): ``compare --out`` never writes into a run folder,
every ``evaluate`` result has a name of its own, text from run folders is escaped in Markdown and
HTML, and damaged run files are named in one line instead of a traceback."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from pyro_vae.cli import main
from pyro_vae.figures.report import write_report
from pyro_vae.runs.folder import RunDir

EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny trained run (1 epoch) on a data file with a dot in its name, with its report."""
    tmp = tmp_path_factory.mktemp("outputs")
    rng = np.random.default_rng(0)
    np.save(tmp / "bin.npy", (rng.random((120, 8, 8)) < 0.3).astype(np.float32))
    out = tmp / "a"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(tmp / "bin.npy"),
                "--binarize",
                "none",
                "--epochs",
                "1",
                "--batch-size",
                "40",
                "--hidden",
                "8",
                "--latent-dim",
                "2",
                "--eval-k",
                "3",
                "--no-progress",
                "--no-plots",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    write_report(out)  # index.html and report.md, without figures (fast)
    return out


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------- compare --out
@pytest.mark.parametrize("where", ["itself", "inside", "other run", "link"])
def test_compare_refuses_an_out_folder_in_a_run(run, tmp_path, capsys, where):
    """``--out`` a compared run, a folder inside one, another run folder, or a link to a run:
    refused in one line naming the run folder and the fix, and nothing of the run changes."""
    b = _copy(run, tmp_path / "b")
    other = _copy(run, tmp_path / "other")
    out = {"itself": run, "inside": run / "cmp", "other run": other, "link": tmp_path / "link"}[where]
    if where == "link":
        out.symlink_to(run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(["compare", str(run), str(b), "--out", str(out)]) == 2
    line = _error(capsys)
    target = other if where == "other run" else run
    assert f"run folder {target.resolve()}" in line and "choose a folder outside every run folder" in line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert not (run / "cmp").exists() and not (other / "compare.md").exists()


def test_compare_writes_beside_runs_and_replaces_links_instead_of_following_them(run, tmp_path):
    """A folder holding runs, or holding a project's own config.json, is not a run folder; a
    link planted at ``OUT/index.html`` towards a run's report is replaced, not written through."""
    b = _copy(run, tmp_path / "b")
    (tmp_path / "config.json").write_text('{"name": "my project"}')
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "index.html").symlink_to(run / "index.html")
    report = (run / "index.html").read_bytes()
    assert main(["compare", str(run), str(b), "--out", str(tmp_path)]) == 0
    assert main(["compare", str(run), str(b), "--out", str(out)]) == 0
    assert (run / "index.html").read_bytes() == report
    assert not (out / "index.html").is_symlink() and "Comparison of 2 runs" in (out / "index.html").read_text()


# ---------------------------------------------------------------------- evaluate result names
def test_evaluate_results_with_another_k_keep_their_own_files(run, capsys):
    """``bin.npy``: the dot must not cut the split and k out of the name (Path.with_suffix did,
    and ``--k 3`` overwrote ``--k 2``)."""
    for k in (2, 3):
        assert main(["evaluate", str(run), "--k", str(k), "--iwae-k", "0", "--no-progress"]) == 0
    capsys.readouterr()
    results = sorted(run.glob("eval_*.json"))
    assert len(results) == 2, results
    for k, path in zip((2, 3), results):
        stem = path.name[: -len(".json")]
        assert re.fullmatch(rf"eval_bin-npy-[0-9a-f]{{8}}_val_(iwae0_)?k{k}", stem), stem  # data set, split, k
        assert path.with_name(stem + ".txt").is_file() and path.with_name(stem + "_per_image.npz").is_file()
        assert json.loads(path.read_text())["log_px"]["note"].endswith(f"k={k}")


def test_result_names_carry_every_setting_and_are_safe(tmp_path):
    from pyro_vae.runs.folder import name_part

    run = RunDir(tmp_path)
    base = run.evaluation("bin.npy/test", 50)
    variants = [
        run.evaluation("bin.npy/val", 50),
        run.evaluation("bin.npy/test", 51),
        run.evaluation("bin.npy/test", 50, limit=10),
        run.evaluation("bin.npy/test", 50, iwae_k=5),
        run.evaluation("bin.npy/test", 50, seed=3),
        run.evaluation("other/bin.npy/test", 50),
        run.evaluation("bin-npy/test", 50),
        run.evaluation("bin_npy/test", 50),
    ]
    assert len({base, *variants}) == len(variants) + 1
    gens = {
        run.generation("d.npy/test", s, components=c, n=n, limit=lim, seed=seed)
        for s, c, n, lim, seed in [
            ("prior", 10, 100, None, 0),
            ("mixture", 10, 100, None, 0),
            ("mixture", 5, 100, None, 0),
            ("mixture", 5, 200, None, 0),
            ("mixture", 5, 200, 30, 0),
            ("mixture", 5, 200, 30, 1),
        ]
    }
    assert len(gens) == 6
    hostile = ["../../etc/passwd/test", "a b;$(rm -rf x)`|<>.npy/test", "x" * 400 + "/test", "é.npy/val"]
    for label in hostile:
        for path in (run.evaluation(label, 5, iwae_k=50), run.generation(label, "prior", n=10)):
            assert path.parent == tmp_path and re.fullmatch(r"[A-Za-z0-9_-]+", path.name)
            assert len(path.name) + len("_per_image.npz") < 255
    assert run.figure("kl_per_dim_../../x").parent == tmp_path
    assert name_part("mnist") == "mnist" and name_part("a/bin.npy") != name_part("b/bin.npy")


# ---------------------------------------------------------------------- escaping
class _Tags(HTMLParser):
    """Start tags, link targets, and the number of cells of each row of each table."""

    def __init__(self, text: str):
        super().__init__()
        self.tags, self.hrefs, self.tables = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.hrefs += [v or "" for k, v in attrs if k in ("href", "src")]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append(0)
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self.tables[-1][-1] += 1

    def check(self, images: int) -> None:
        """No script, no other images than ``images``, no javascript: link, every table's rows
        as wide as its header (a ``|`` in a name did not split a cell)."""
        assert "script" not in self.tags and self.tags.count("img") == images, self.tags
        assert not [h for h in self.hrefs if h.strip().lower().startswith("javascript")], self.hrefs
        assert self.tables and all(len(set(rows)) == 1 for rows in self.tables), self.tables


try:  # Python-Markdown passes inline HTML through, as Markdown viewers do: the check is sharp
    import markdown
except ImportError:  # pragma: no cover
    markdown = None


def _check_markdown(md: str, images: int = 0) -> None:
    """No raw tag in a heading or a table (a code block may show one: it is literal there), and
    the rendered page passes :meth:`_Tags.check`."""
    outside = re.sub(r"(?ms)^(`{3,})\n.*?^\1$", "", md)  # fenced code blocks left out
    assert not [line for line in outside.splitlines() if line.startswith(("#", "|")) and "<" in line]
    if markdown is not None:
        _Tags(markdown.markdown(md, extensions=["tables", "fenced_code"])).check(images)


def test_text_from_run_folders_is_escaped_in_the_report(run, tmp_path, capsys):
    """A run folder named like an HTML tag, with backticks, a link and a pipe: report.md shows it
    as text (no tag, no link, no broken code span or table), index.html escapes it."""
    evil = _copy(run, tmp_path / f"{EVIL} `x` [a](javascript:alert(1)) |")
    assert main(["plot", str(evil), "--no-progress"]) == 0
    capsys.readouterr()
    md, page = (evil / "report.md").read_text(), (evil / "index.html").read_text()
    figures = len(list(evil.glob("*.png")))
    _check_markdown(md, images=figures)
    assert "&lt;img src=x onerror=alert(1)&gt;" in md  # shown, as text
    _Tags(page).check(images=figures)
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_text_from_run_folders_and_names_is_escaped_in_the_comparison(run, tmp_path, capsys):
    evil = _copy(run, tmp_path / EVIL)
    out = tmp_path / "cmp"
    names = ["<script>alert(1)</script>", "a|b `c` [x](javascript:alert(1))"]
    assert main(["compare", str(evil), str(run), "--out", str(out), "--names", *names]) == 0
    md, page = (out / "compare.md").read_text(), (out / "index.html").read_text()
    _check_markdown(md, images=1)  # the validation curves
    for table in re.findall(r"(?m)(?:^\|.*\n)+", md):  # one cell per header in every row
        assert len({len(re.split(r"(?<!\\)\|", row)) for row in table.splitlines()}) == 1, table
    _Tags(page).check(images=1)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in md


# ---------------------------------------------------------------------- damaged run files
@pytest.mark.parametrize(
    "name, content, command",
    [
        ("metrics_test.json", "[1, 2]", "plot"),
        ("metrics_test.json", '{"elbo": ', "plot"),
        ("metrics_test_per_image.npz", "not a zip archive", "plot"),
        ("metrics_test.json", "[1, 2]", "compare"),
        ("summary.json", '"a string"', "compare"),
        ("config.json", "{garbled", "compare"),
        ("metrics.jsonl", None, "compare"),  # a folder where the file belongs
    ],
)
def test_a_damaged_run_file_is_named_in_one_line(run, tmp_path, capsys, name, content, command):
    copy = _copy(run, tmp_path / "run")
    path = copy / name
    assert path.exists()
    if content is None:
        path.unlink()
        path.mkdir()
    else:
        path.write_text(content)
    argv = (
        ["plot", str(copy), "--no-progress"]
        if command == "plot"
        else ["compare", str(copy), "--out", str(tmp_path / "cmp")]
    )
    capsys.readouterr()
    assert main(argv) == 2
    line = _error(capsys)
    assert str(path) in line and ("delete it" in line or "move it away" in line), line


def test_garbled_metrics_lines_are_left_out_and_said_once(run, tmp_path, capsys):
    """Lines of metrics.jsonl cut short or garbled: the rows that remain are used (the report and
    the comparison still work) and one line names the file and the fix."""
    copy = _copy(run, tmp_path / "run")
    with open(copy / "metrics.jsonl", "ab") as f:
        f.write(b'garbage\n[1, 2]\n\xff\n{"epo')
    capsys.readouterr()
    assert main(["compare", str(copy), "--out", str(tmp_path / "cmp")]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "metrics.jsonl" in line]
    assert len(notes) == 1 and "4 of 5 lines" in notes[0] and "restore the file" in notes[0], err
    assert len(RunDir(copy).read_metrics()) == 1

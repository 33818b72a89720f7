"""The run report as a user meets it: every figure loads (checked in headless Chromium when one is
installed, and by plain HTML checks always), one caption and alt text per figure, human names,
rounded numbers, the family's own section, provenance; and ``--config`` reproduces a run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from pyro_vae.cli import main

RAW_KEY = re.compile(r"\b[a-z]+_[a-z_]+\b")  # snake_case: a key shown as it is stored
LONG_FLOAT = re.compile(r"-?\d+\.\d{5,}")  # a float not rounded to what it means


class Page(HTMLParser):
    """Images (src, alt), figure captions, tables (headers, rows) and text outside <pre>."""

    def __init__(self):
        super().__init__()
        self.images, self.captions, self.tables, self.links, self.text = [], [], [], [], []
        self._stack, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._stack.append(tag)
        if tag == "img":
            self.images.append((a.get("src"), a.get("alt")))
        elif tag in ("link", "script"):
            self.links.append(a.get("href") or a.get("src") or "inline")
        elif tag == "a":
            self.links.append(a.get("href"))
        elif tag == "table":
            self.tables.append({"headers": [], "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            text = "".join(self._cell).strip()
            (self.tables[-1]["headers"] if tag == "th" else self.tables[-1]["rows"][-1]).append(text)
            self._cell = None
        if self._stack:
            self._stack.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if "figcaption" in self._stack:
            self.captions.append(data)
        if "pre" not in self._stack and "style" not in self._stack and "title" not in self._stack:
            self.text.append(data)


def _parse(path: Path) -> Page:
    p = Page()
    p.feed(path.read_text())
    for t in p.tables:
        t["rows"] = [r for r in t["rows"] if r]
    return p


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny real runs (a VAE and M2) trained from the CLI on a small labelled data file."""
    tmp = tmp_path_factory.mktemp("runs")
    g = torch.Generator().manual_seed(0)
    y = torch.arange(240) % 4
    x = (torch.rand(240, 1, 12, 12, generator=g) < 0.1 + 0.3 * (y[:, None, None, None] == torch.arange(12) % 4)).float()
    torch.save({"x": x, "y": y}, tmp / "d.pt")
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
        "--latent-dim",
        "2",
        "--hidden",
        "16",
    ]
    assert main(["train", *common, "--out", str(tmp / "vae")]) == 0
    assert main(["train", "--model", "ssvae", "--labels", "8", *common, "--out", str(tmp / "m2")]) == 0
    return tmp, common


def _check_page(path: Path) -> Page:
    page = _parse(path)
    assert page.images, "no figures"
    for src, alt in page.images:
        assert (path.parent / src).is_file(), f"missing image {src}"
        assert alt and len(alt) > 10, f"no alt text for {src}"
    assert len(page.captions) == len(page.images)  # one caption per figure
    assert not [u for u in page.links if u and re.match(r"(https?:)?//", u)], "external resource"
    text = " ".join(page.text)
    assert not LONG_FLOAT.search(text), LONG_FLOAT.search(text).group(0)
    for table in page.tables:
        if table["headers"] and table["headers"][0] in ("quantity", "measure"):  # summary and metrics
            for row in table["rows"]:
                assert not RAW_KEY.search(row[0]), row
    return page


def test_the_report_page(runs):
    tmp, _ = runs
    page = _check_page(tmp / "vae" / "index.html")
    text = " ".join(page.text)
    assert "Best validation ELBO" in text and "Training time" in text and "kl_per_dim" not in text
    assert (tmp / "vae" / "kl_per_dim_z.png").is_file()  # the KL per dimension, drawn
    for href in ("checkpoint_best.pt", "metrics.jsonl", "config.json"):
        assert href in page.links and (tmp / "vae" / href).exists()
    config = json.loads((tmp / "vae" / "config.json").read_text())
    assert config["command"].startswith("pyro-vae train") and config["versions"]["torch"] == torch.__version__
    md = (tmp / "vae" / "report.md").read_text()
    assert "pyro-vae train --dataset" in md and "| torch |" in md


def test_the_family_gets_its_own_section(runs):
    tmp, _ = runs
    page = _check_page(tmp / "m2" / "index.html")
    md = (tmp / "m2" / "report.md").read_text()
    own = md.split("## ssvae: its own measures and figures")[1].split("\n## ")[0]
    assert "(confusion.png)" in own and "(analogies.png)" in own
    assert "| Accuracy |" in md and r"argmax q(y\|x) against the true labels" in md
    assert len(page.images) >= 6


def test_config_reproduces_a_run_and_records_overrides(runs):
    tmp, common = runs
    assert (
        main(["train", "--config", str(tmp / "vae" / "config.json"), "--out", str(tmp / "again"), "--no-progress"]) == 0
    )
    a = torch.load(tmp / "vae" / "checkpoint_last.pt", weights_only=True)["model_state"]
    b = torch.load(tmp / "again" / "checkpoint_last.pt", weights_only=True)["model_state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again = json.loads((tmp / "again" / "config.json").read_text())
    assert again["reproduced_from"]["overrides"] == {}
    assert (
        main(
            [
                "train",
                "--config",
                str(tmp / "vae" / "config.json"),
                "--out",
                str(tmp / "other"),
                "--epochs",
                "3",
                "--lr",
                "0.01",
                "--no-progress",
            ]
        )
        == 0
    )
    other = json.loads((tmp / "other" / "config.json").read_text())
    assert other["reproduced_from"]["overrides"] == {"epochs": 3, "lr": 0.01}
    assert other["train"]["epochs"] == 3 and other["model"]["options"]["latent_dim"] == 2
    assert main(["train", "--config", str(tmp / "vae" / "summary.json"), "--out", str(tmp / "bad")]) == 2


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def _render(page: Path, tmp: Path) -> dict:
    """Open ``page`` in headless Chromium inside a harness page that reports, after loading,
    which images failed to load and the visible text."""
    harness = tmp / "harness.html"
    harness.write_text(
        '<!DOCTYPE html><html><body><pre id="result">pending</pre>'
        f'<iframe id="f" src="{page.resolve().as_uri()}"></iframe><script>'
        'document.getElementById("f").addEventListener("load", function () {'
        " var d = this.contentDocument; var imgs = Array.from(d.images);"
        ' document.getElementById("result").textContent = JSON.stringify({images: imgs.length,'
        "  broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })"
        '   .map(function (i) { return i.getAttribute("src"); }), text: d.body.innerText}); });'
        "</script></body></html>"
    )
    out = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp / 'profile'}",
            "--allow-file-access-from-files",
            "--virtual-time-budget=5000",
            "--dump-dom",
            harness.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    m = re.search(r'<pre id="result">(.*?)</pre>', out, re.S)
    assert m and m.group(1) != "pending", out[-500:]
    import html

    return json.loads(html.unescape(m.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
def test_pages_in_a_real_browser(runs, tmp_path):
    tmp, _ = runs
    from pyro_vae.figures.compare import compare_runs

    compare_runs([tmp / "vae", tmp / "m2"], tmp / "cmp")
    for page in (tmp / "vae" / "index.html", tmp / "m2" / "index.html", tmp / "cmp" / "index.html"):
        result = _render(page, tmp_path)
        assert result["images"] > 0 and result["broken"] == [], (page, result["broken"])
        assert not LONG_FLOAT.search(result["text"]), (page, LONG_FLOAT.search(result["text"]).group(0))
        shown = result["text"].split("How this run was made")[0]  # the configuration keeps setting names
        assert not re.search(r"\b(best_val|train_time|num_images|recon_log_lik|elbo_bpd|images_per_s)\b", shown)
    # the check can fail: a page with a missing image is caught
    broken = tmp_path / "broken.html"
    broken.write_text('<html><body><img src="nope.png" alt="missing"><img src="nope2.png" alt="x"></body></html>')
    assert _render(broken, tmp_path)["broken"] == ["nope.png", "nope2.png"]

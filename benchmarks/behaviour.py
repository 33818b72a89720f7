"""Behaviour fingerprint: the final parameters of a short seeded run of every built-in family,
objective, prior and KL control, as a hash. Run it before and after a change that should not
change behaviour (a refactor) and compare the tables; a differing row names a run whose numbers
moved.

    python benchmarks/behaviour.py                      # writes benchmarks/results/behaviour.md
    python benchmarks/behaviour.py --compare benchmarks/results/behaviour.md

Each run: `pyro-vae train` in-process on 96 seeded binary 8x8 images with 4 classes, 2 epochs,
batch 16, one thread, CPU; the hash is sha256 of the trained checkpoint's parameters and buffers
(sorted by name). Takes about a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout this script is in, not an installed copy

RUNS = {
    # family defaults
    "vae": [],
    "ae": ["--model", "ae"],
    "ssvae (enum, 8 labels)": ["--model", "ssvae", "--labels", "8"],
    "ssvae jit_enum": ["--model", "ssvae", "--objective", "jit_enum"],
    "cvae class": ["--model", "cvae"],
    "cvae quadrant": ["--model", "cvae", "--condition", "quadrant"],
    "hvae ladder": ["--model", "hvae", "--latent-dims", "4", "2", "--guide", "ladder"],
    "hvae bottomup": ["--model", "hvae", "--latent-dims", "4", "2", "--guide", "bottomup"],
    "iaf": ["--model", "iaf", "--flow-steps", "2"],
    "gmvae enumerate": ["--model", "gmvae", "--clusters", "4"],
    "gmvae relaxed": ["--model", "gmvae", "--clusters", "4", "--discrete", "relaxed"],
    # objectives on the VAE
    **{
        f"vae {o}": ["--objective", o]
        for o in ("trace", "meanfield", "graph", "jit", "jit_meanfield", "jit_graph", "stl")
    },
    "vae renyi K=2": ["--objective", "renyi", "--num-particles", "2"],
    "vae iwae K=3": ["--objective", "iwae", "--num-particles", "3"],
    "vae iwae_dreg K=3": ["--objective", "iwae_dreg", "--num-particles", "3"],
    "vae score-function": ["--estimator", "score-baseline"],
    # priors, likelihoods, KL controls, denoising
    "vae vampprior": ["--prior", "vampprior", "--prior-components", "5"],
    "vae flow prior": ["--prior", "flow"],
    "vae mixture prior": ["--prior", "mixture"],
    "vae gaussian likelihood": ["--likelihood", "gaussian", "--binarize", "none"],
    "vae beta 4, warm-up 2": ["--beta", "4", "--warmup-epochs", "2"],
    "vae free bits 0.5": ["--free-bits", "0.5"],
    "vae denoising mask": ["--noise", "mask", "--noise-rate", "0.25"],
}
COMMON = [
    "--latent-dim",
    "4",
    "--hidden",
    "16",
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--eval-k",
    "0",
    "--no-plots",
    "--no-progress",
    "--patience",
    "0",
    "--seed",
    "3",
]


def state_hash(path: Path) -> str:
    state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run_all() -> dict:
    from pyro_vae.cli import main

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        np.savez(Path(tmp) / "d.npz", x=(rng.random((96, 1, 8, 8)) < 0.3).astype(np.float32), y=np.arange(96) % 4)
        for i, (name, extra) in enumerate(RUNS.items()):
            run = Path(tmp) / f"r{i}"
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
                code = main(["train", "--dataset", str(Path(tmp) / "d.npz"), *COMMON, *extra, "--out", str(run)])
            out[name] = state_hash(run / "checkpoint_last.pt") if code == 0 else f"exit {code}: {err.getvalue()[-80:]}"
            print(f"{name:28s} {out[name]}", flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/results/behaviour.md")
    p.add_argument("--compare", default=None, help="a behaviour.md written before: report the rows that differ")
    a = p.parse_args()
    torch.set_num_threads(1)
    hashes = run_all()
    table = "| run | parameter hash |\n|---|---|\n" + "".join(f"| {k} | `{v}` |\n" for k, v in hashes.items())
    if a.compare:
        before = {}
        for line in Path(a.compare).read_text().split("\n\n## ")[0].splitlines():  # the first table
            if line.startswith("| ") and "`" in line:
                name, value = line.strip("|").replace("`", "").split(" | ")
                before[name.strip()] = value.strip()
        moved = [k for k in hashes if before.get(k) != hashes[k]]
        print("same as before" if not moved else "differ from before: " + ", ".join(moved))
        return 1 if moved else 0
    Path(a.out).write_text(
        "# Behaviour fingerprint\n\n`python benchmarks/behaviour.py` (CPU, one thread, torch "
        f"{torch.__version__}).\n\n" + table
    )
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

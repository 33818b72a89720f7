#!/usr/bin/env python
"""Benchmark: pyro-vae against a hand-written plain-PyTorch VAE on MNIST, same budget.

Both models are the default pyro-vae VAE: MLP encoder 784-400-(50 loc, 50 scale) with
scale = softplus + 1e-4, MLP decoder 50-400-784, ReLU, Bernoulli likelihood with logits,
standard-normal prior. Both are trained, one after the other in this process, with

    Adam lr 1e-3, batch 128, E epochs, dynamic binarization (a fresh Bernoulli draw of the
    training images every epoch), loss = -ELBO per image (sum over pixels, mean over batch),

on the 4,500-image ``mnist5k`` training split, with the same seed. Test data: the official
MNIST test set (10,000 images) from ``--data-dir``, binarized once with seed 0 (as the
``pyro-vae`` CLI does).

(a) pyro-vae: ``pyro_vae.fit`` with Trace_ELBO (or --elbo meanfield / jit);
    test ELBO and log p(x) with ``pyro_vae.inference.marginal.elbo`` / ``log_marginal``.
(b) plain:    the same network in plain torch, single-sample ELBO
    log p(x|z) + log p(z) - log q(z|x) (Monte Carlo KL, the Trace_ELBO estimator; analytic
    KL with --elbo meanfield), and an independent plain-torch importance-sampling
    estimator of log p(x).

Reported: training images/s (training steps only: the per-batch binarization, batching,
forward, backward and optimizer step; validation and evaluation excluded), overall and
median per epoch (steady state), per-epoch throughput, test ELBO (1 sample) and test log p(x)
(k importance samples), all in nats per image. A cross-check evaluates the pyro-vae-trained
network with the plain evaluator too (--cross-check N images).

    python benchmarks/train_mnist.py                      # full run (50 epochs, k = 1000)
    python benchmarks/train_mnist.py --epochs 1 --k 10 --limit 200 --threads 1 --out /tmp/smoke.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pyro  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from pyro_vae.config import ModelConfig, TrainConfig  # noqa: E402
from pyro_vae.data.batch import EVAL_BINARIZATION_SEED, Batch, DataError
from pyro_vae.data.batch import binarize  # noqa: E402
from pyro_vae.data.datasets import load_data  # noqa: E402
from pyro_vae.inference.marginal import elbo as pyro_elbo  # noqa: E402
from pyro_vae.inference.marginal import log_marginal as pyro_log_marginal  # noqa: E402
from pyro_vae.models import build_model  # noqa: E402
from pyro_vae.devices import select_device, set_seed  # noqa: E402
from pyro_vae.cli.logs import console  # noqa: E402
from pyro_vae.training.fit import fit  # noqa: E402

LOG_2PI = math.log(2 * math.pi)
BATCH_SIZE = 128
LR = 1e-3
LATENT = 50
HIDDEN = 400


# ============================================================================ plain PyTorch VAE
class PlainVAE(nn.Module):
    """784-400-(50, 50) encoder, 50-400-784 decoder, ReLU; q scale = softplus + 1e-4.

    Layers are created in the same order as pyro-vae's ``build_model`` creates them
    (encoder body, loc head, scale head, decoder layers), so the same seed gives the same
    initial parameters.
    """

    def __init__(self, data_dim=784, hidden=HIDDEN, latent=LATENT):
        super().__init__()
        self.enc_fc = nn.Linear(data_dim, hidden)
        self.enc_loc = nn.Linear(hidden, latent)
        self.enc_scale = nn.Linear(hidden, latent)
        self.dec_fc = nn.Linear(latent, hidden)
        self.dec_out = nn.Linear(hidden, data_dim)

    def encode(self, x):
        h = F.relu(self.enc_fc(x))
        return self.enc_loc(h), F.softplus(self.enc_scale(h)) + 1e-4

    def decode(self, z):
        """Bernoulli logits, shape (..., 784)."""
        return self.dec_out(F.relu(self.dec_fc(z)))


def log_normal(z, loc, scale):
    """log N(z; loc, diag scale^2), summed over the last dim (as torch's Normal computes it)."""
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * LOG_2PI).sum(-1)


def log_std_normal(z):
    return (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)


def bernoulli_log_lik(logits, x):
    """log p(x|z) per image: minus BCE with logits, summed over pixels. Broadcasts x."""
    x = x.expand_as(logits)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def plain_elbo_per_image(net, x, analytic_kl=False):
    """Single-sample ELBO per image, shape (B,). MC KL (Trace_ELBO) or analytic KL (meanfield)."""
    loc, scale = net.encode(x)
    z = loc + scale * torch.randn_like(loc)
    ll = bernoulli_log_lik(net.decode(z), x)
    if analytic_kl:
        kl = (0.5 * (loc**2 + scale**2 - 1.0) - scale.log()).sum(-1)
        return ll - kl
    return ll + log_std_normal(z) - log_normal(z, loc, scale)


def train_plain(net, x_train, x_val, epochs, seed, analytic_kl, device, log=print):
    """Adam, batch 128, dynamic binarization per batch (drawn as fit() draws it), data indexed on the device."""
    set_seed(seed)  # same RNG state at the start of training as pyro_vae.fit
    # like fit(): shuffling and dynamic binarization draw from their own generator, so both
    # models see the same binarized images in the same order
    data_gen = torch.Generator(device=device).manual_seed(seed)
    net.to(device)
    x_train, x_val = x_train.to(device), x_val.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    n = x_train.shape[0]
    history = []
    for epoch in range(epochs):
        net.train()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        # ---- timed: the training steps of one epoch
        # as fit() does: one seed per epoch, then the order, then each batch binarized with a
        # generator seeded from (epoch seed + batch index)
        seed_e = int(torch.randint(0, 2**62, (1,), generator=data_gen, device=device).item())
        perm = torch.randperm(n, device=device, generator=data_gen)
        total = torch.zeros((), device=device)
        for i, start in enumerate(range(0, n, BATCH_SIZE)):
            idx = perm[start : start + BATCH_SIZE]
            g = torch.Generator(device=device).manual_seed(seed_e + i)
            xb = torch.bernoulli(x_train[idx], generator=g)
            loss = -plain_elbo_per_image(net, xb, analytic_kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * idx.numel()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        # ---- untimed: bookkeeping and validation
        train_loss = total.item() / n
        if not math.isfinite(train_loss):
            raise RuntimeError(f"plain VAE: loss became {train_loss} in epoch {epoch + 1}")
        net.eval()
        with torch.no_grad():
            val = (
                torch.cat([plain_elbo_per_image(net, x_val[i : i + 1000]) for i in range(0, x_val.shape[0], 1000)])
                .mean()
                .item()
            )
        row = {"epoch": epoch + 1, "train_loss": train_loss, "val_elbo": val, "images_per_s": n / dt, "time_s": dt}
        history.append(row)
        log(
            f"epoch {epoch + 1:3d}  train loss {train_loss:.2f}  val ELBO {val:.2f} nats/img"
            f"  ({row['images_per_s']:.0f} img/s)"
        )
    return history


def warm_up(steps, x_flat, data_shape, elbo_name, analytic_kl, device):
    """Untimed training steps of both code paths (the same step as fit() and as train_plain())
    on throwaway models, so neither timed run pays the process's one-off start-up costs."""
    from pyro_vae.inference.objectives import Loss, make_objective

    x = torch.bernoulli(x_flat[:BATCH_SIZE]).to(device)
    n = x_flat.shape[0]
    module = build_model(ModelConfig(data_shape=data_shape)).to(device)
    loss_fn = Loss(module, make_objective(elbo_name, module))
    opt = torch.optim.Adam(module.parameters(), lr=LR)
    xs = x.reshape(-1, *data_shape)
    for _ in range(steps):
        loss = loss_fn(Batch(xs), torch.tensor(1.0, device=device), num_data=n) / n
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net = PlainVAE(x.shape[-1], HIDDEN, LATENT).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    for _ in range(steps):
        loss = -plain_elbo_per_image(net, x, analytic_kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    pyro.clear_param_store()


# ============================================================================ plain evaluator
@torch.no_grad()
def plain_test_elbo(encode, decode, x, batch_size=1000):
    """One-sample ELBO log p(x|z) + log p(z) - log q(z|x) per image, shape (N,)."""
    out = []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        loc, scale = encode(xb)
        z = loc + scale * torch.randn_like(loc)
        out.append(bernoulli_log_lik(decode(z), xb) + log_std_normal(z) - log_normal(z, loc, scale))
    return torch.cat(out)


@torch.no_grad()
def plain_log_marginal(encode, decode, x, k, batch_size=100, budget=2**25, desc="log p(x)", progress=True):
    """Importance-sampled log p(x) = logsumexp_k [log p(x,z_k) - log q(z_k|x)] - log k, with
    z_k ~ q(z|x); images in batches, particles in chunks (running logsumexp), shape (N,)."""
    from tqdm.auto import tqdm

    d = x.shape[-1]
    out = []
    with tqdm(total=x.shape[0], desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            loc, scale = encode(xb)  # (B, L)
            chunk = max(1, min(k, budget // (xb.shape[0] * d)))
            acc, done = None, 0
            while done < k:
                kc = min(chunk, k - done)
                z = loc + scale * torch.randn(kc, *loc.shape, device=loc.device, dtype=loc.dtype)
                lw = bernoulli_log_lik(decode(z), xb) + log_std_normal(z) - log_normal(z, loc, scale)  # (kc, B)
                lse = lw.logsumexp(0)
                acc = lse if acc is None else torch.logaddexp(acc, lse)
                done += kc
            out.append(acc - math.log(k))
            bar.update(xb.shape[0])
    return torch.cat(out)


# ============================================================================ helpers
def mean_se(v):
    v = v.double()
    se = (v.std() / math.sqrt(v.numel())).item() if v.numel() > 1 else float("nan")
    return v.mean().item(), se


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def throughput(history, n):
    rates = [r["images_per_s"] for r in history]
    total_time = sum(r["time_s"] for r in history)
    return {
        "overall": n * len(history) / total_time,
        "median_epoch": statistics.median(rates),
        "median_epoch_after_first": statistics.median(rates[1:]) if len(rates) > 1 else None,
        "first_epoch": rates[0],
        "train_time_s": total_time,
        "per_epoch": rates,
    }


def fmt(v, digits=2):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:,.{digits}f}"


def pm(mean, se, digits=2):
    return f"{fmt(mean, digits)} ± {fmt(se, digits)}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Train the default pyro-vae VAE and a hand-written plain-PyTorch VAE of the "
        "same architecture side by side on mnist5k (same seed, data, budget); report "
        "training images/s, test ELBO and test log p(x) on the official MNIST test set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--epochs", type=int, default=50, help="training epochs for each model")
    p.add_argument("--k", type=int, default=1000, help="importance samples for test log p(x)")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images (default: all 10,000)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument(
        "--elbo",
        default="auto",
        choices=["auto", "trace", "meanfield", "jit"],
        help="pyro-vae ELBO: auto (the library's default for the VAE: jit), Trace_ELBO, "
        "TraceMeanField_ELBO (the plain model then uses the analytic KL), JitTrace_ELBO (the plain "
        "model stays eager)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="pyro-vae's precision (the plain model stays fp32)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with the official MNIST test files t10k-images-idx3-ubyte(.gz) "
        "(default: ../shared/data/mnist relative to the project root)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the split, initialisation, training and evaluation")
    p.add_argument(
        "--out",
        default=None,
        help="Markdown report (default: benchmarks/results/train_mnist.md in the project); "
        "the raw numbers go beside it with suffix .json",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto (the same device for both models)")
    p.add_argument(
        "--order",
        default="pyro-first",
        choices=["pyro-first", "plain-first"],
        help="which model trains first (to check for order/warm-up effects)",
    )
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=20,
        help="untimed training steps of both code paths on throwaway models before the "
        "timed runs (one-off costs: allocator, kernels, Pyro; 0: none)",
    )
    p.add_argument(
        "--cross-check",
        type=int,
        default=1000,
        metavar="N",
        help="also evaluate the pyro-vae-trained network with the plain evaluator on the first N test images (0: skip)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars in the evaluations")
    p.add_argument(
        "--num-generated",
        type=int,
        default=10000,
        help="images drawn from each model's prior for the generation scores (0: skip them)",
    )
    a = p.parse_args(argv)
    for name in ("epochs", "k", "threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1")
    if a.limit is not None and a.limit < 1:
        p.error("--limit must be >= 1")
    if a.cross_check < 0 or a.warmup_steps < 0:
        p.error("--cross-check and --warmup-steps must be >= 0")
    return a


# ============================================================================ main
def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    argv_used = sys.argv if argv is None else [sys.argv[0], *argv]
    command = " ".join(shlex.quote(s) for s in ["python", *argv_used])
    started = datetime.datetime.now().astimezone()
    data_dir = Path(a.data_dir) if a.data_dir else ROOT.parent / "shared" / "data" / "mnist"
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / "train_mnist.md"
    device = select_device(a.device)
    analytic_kl = a.elbo == "meanfield"
    progress = not a.no_progress
    say = lambda s="": print(s, flush=True)  # noqa: E731

    # ---------------------------------------------------------------- data
    try:
        splits = load_data("mnist5k", data_dir, val_fraction=0.1, seed=a.seed)
    except DataError as e:
        sys.exit(
            f"train_mnist.py: error: {e}\n(pass --data-dir with the folder holding the "
            f"official MNIST test files t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz)"
        )
    train, val, test = splits.train, splits.val, splits.test
    if test is None or test.x.shape[0] == 0:
        sys.exit(f"train_mnist.py: error: no MNIST test set found in {data_dir}")
    x_test_full = binarize(test.x, seed=EVAL_BINARIZATION_SEED)
    x_test = x_test_full[: a.limit] if a.limit else x_test_full
    n_train, n_test = len(train), x_test.shape[0]
    data_shape = train.data_shape
    d = math.prod(data_shape)
    # the plain model works on flat vectors; the same numbers in the same memory order, so
    # the same data generator state draws the same binarization for both models
    x_train_flat = train.x.reshape(n_train, d)
    x_val_flat = binarize(val.x, seed=EVAL_BINARIZATION_SEED).reshape(len(val), d)  # as fit() binarizes val
    x_test_flat = x_test.reshape(n_test, d).to(device)
    say(
        f"data: mnist5k {n_train} train / {len(val)} validation; test: official MNIST test set "
        f"({x_test_full.shape[0]} images in {data_dir}), evaluating on {n_test}"
    )
    say(f"torch {torch.__version__}, pyro {pyro.__version__}, {a.threads} thread(s), device {device}, CPU {cpu_name()}")

    # ---------------------------------------------------------------- training
    def run_pyro():
        say(f"\n=== (a) pyro-vae: fit(), {a.elbo} ELBO, {a.epochs} epochs ===")
        mcfg = ModelConfig(data_shape=data_shape)
        set_seed(a.seed)  # network initialisation, as the CLI does
        module = build_model(mcfg)
        tcfg = TrainConfig(
            epochs=a.epochs,
            batch_size=BATCH_SIZE,
            lr=LR,
            binarize="dynamic",
            patience=None,
            objective=a.elbo,
            seed=a.seed,
            device=str(device),
            precision=a.precision,
        )
        with tempfile.TemporaryDirectory(prefix="train_mnist_") as tmp:
            # with run_dir but no model_config, fit() writes metrics.jsonl (per-epoch timing:
            # training steps only) but no checkpoints
            with console(lambda s: say(f"[pyro-vae] {s}")):  # fit's epoch lines, marked
                fit(module, (train, val), tcfg, tmp, progress=False)
            history = [
                json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines() if line.strip()
            ]
        module.eval()
        return module, history

    def run_plain():
        say(f"\n=== (b) plain PyTorch: {'analytic' if analytic_kl else 'Monte Carlo'} KL, {a.epochs} epochs ===")
        set_seed(a.seed)
        net = PlainVAE(d, HIDDEN, LATENT)
        history = train_plain(
            net, x_train_flat, x_val_flat, a.epochs, a.seed, analytic_kl, device, log=lambda s: say(f"[plain]    {s}")
        )
        net.eval()
        return net, history

    if a.warmup_steps:
        say(f"\nwarm-up: {a.warmup_steps} untimed steps of each code path on throwaway models")
        warm_up(a.warmup_steps, x_train_flat, data_shape, a.elbo, analytic_kl, device)
    order = ["pyro", "plain"] if a.order == "pyro-first" else ["plain", "pyro"]
    trained = {}
    for name in order:
        trained[name] = run_pyro() if name == "pyro" else run_plain()
    module, pyro_hist = trained["pyro"]
    net, plain_hist = trained["plain"]

    # same initial parameters? (rebuild both from the seed and compare)
    set_seed(a.seed)
    init_pyro = build_model(ModelConfig(data_shape=data_shape))
    set_seed(a.seed)
    init_plain = PlainVAE(d, HIDDEN, LATENT)
    pairs = [
        (init_pyro.encoder.body[0], init_plain.enc_fc),
        (init_pyro.encoder.head.loc, init_plain.enc_loc),
        (init_pyro.encoder.head.scale, init_plain.enc_scale),
        (init_pyro.decoder.net[0], init_plain.dec_fc),
        (init_pyro.decoder.net[2], init_plain.dec_out),
    ]
    same_init = all(torch.equal(p.weight, q.weight) and torch.equal(p.bias, q.bias) for p, q in pairs)
    n_params = (sum(p.numel() for p in module.parameters()), sum(p.numel() for p in net.parameters()))
    del init_pyro, init_plain

    # ---------------------------------------------------------------- evaluation
    def pyro_encode(xf):
        return module.encoder(xf.reshape(-1, *data_shape))

    def pyro_decode(z):
        return module.decoder(z).reshape(*z.shape[:-1], d)

    say(f"\n=== test evaluation on {n_test} images: ELBO (1 sample), log p(x) (k={a.k}) ===")
    x_test_dev = x_test.to(device)
    set_seed(a.seed)
    t0 = time.perf_counter()
    pyro_el = pyro_elbo(module.model, module.guide, x_test_dev, batch_size=1000).cpu()
    t_el_pyro = time.perf_counter() - t0
    say(f"[pyro-vae] test ELBO {pyro_el.mean():.3f}  ({t_el_pyro:.1f} s)")
    t0 = time.perf_counter()
    pyro_lp = pyro_log_marginal(
        module.model, module.guide, x_test_dev, num_particles=a.k, batch_size=100, progress=progress
    ).cpu()
    t_lp_pyro = time.perf_counter() - t0
    say(f"[pyro-vae] test log p(x) {pyro_lp.mean():.3f}  (k={a.k}, {t_lp_pyro:.1f} s)")

    set_seed(a.seed)
    t0 = time.perf_counter()
    plain_el = plain_test_elbo(net.encode, net.decode, x_test_flat).cpu()
    t_el_plain = time.perf_counter() - t0
    say(f"[plain]    test ELBO {plain_el.mean():.3f}  ({t_el_plain:.1f} s)")
    t0 = time.perf_counter()
    plain_lp = plain_log_marginal(
        net.encode, net.decode, x_test_flat, a.k, desc=f"log p(x), k={a.k}", progress=progress
    ).cpu()
    t_lp_plain = time.perf_counter() - t0
    say(f"[plain]    test log p(x) {plain_lp.mean():.3f}  (k={a.k}, {t_lp_plain:.1f} s)")

    cross = None
    if a.cross_check:
        nc = min(a.cross_check, n_test)
        say(f"cross-check: the pyro-vae-trained network under the plain evaluator, first {nc} images")
        set_seed(a.seed + 1)
        cc_el = plain_test_elbo(pyro_encode, pyro_decode, x_test_flat[:nc]).cpu()
        cc_lp = plain_log_marginal(
            pyro_encode, pyro_decode, x_test_flat[:nc], a.k, desc=f"cross-check log p(x), k={a.k}", progress=progress
        ).cpu()
        cross = {
            "images": nc,
            "library_elbo": mean_se(pyro_el[:nc]),
            "plain_elbo": mean_se(cc_el),
            "library_log_px": mean_se(pyro_lp[:nc]),
            "plain_log_px": mean_se(cc_lp),
            "log_px_diff": mean_se(pyro_lp[:nc] - cc_lp),
            "elbo_diff": mean_se(pyro_el[:nc] - cc_el),
        }
        say(
            f"cross-check log p(x): library {cross['library_log_px'][0]:.3f}, plain evaluator "
            f"{cross['plain_log_px'][0]:.3f} (diff {cross['log_px_diff'][0]:+.3f} ± {cross['log_px_diff'][1]:.3f})"
        )

    gen = None
    if a.num_generated:
        from pyro_vae.analysis.generation import generation_scores, load_or_train_classifier
        from pyro_vae.analysis.samplers import generate

        say(f"\n=== generation: {a.num_generated} images from each model's prior against the test images ===")
        clf, clf_info = load_or_train_classifier(
            Path(tempfile.gettempdir()) / "pyro_vae_bench" / "feature_classifier_train_mnist.pt",
            Batch(binarize(train.x, seed=EVAL_BINARIZATION_SEED), train.y),
            seed=a.seed,
            name="mnist5k",
        )
        set_seed(a.seed)
        gen_pyro = generate(module, a.num_generated, "prior", mean=False).cpu()
        set_seed(a.seed)
        with torch.no_grad():
            z = torch.randn(a.num_generated, LATENT, device=device)
            gen_plain = torch.bernoulli(torch.sigmoid(net.decode(z))).reshape(-1, *data_shape).cpu()
        ref = x_test.reshape(-1, *data_shape)
        gen = {"classifier_val_accuracy": clf_info["val_accuracy"]}
        for name, images in (("pyro", gen_pyro), ("plain", gen_plain)):
            sc = generation_scores(images, ref, clf)
            gen[name] = {
                "fd": sc["frechet_distance"]["value"],
                "is": sc["inception_score"]["value"],
                "is_std": sc["inception_score"]["se"],
                "modes": sc["modes_covered"]["value"],
            }
            say(
                f"[{name}] Fréchet distance {gen[name]['fd']:.1f}, Inception score {gen[name]['is']:.2f}, "
                f"{gen[name]['modes']} of 10 classes"
            )

    # ---------------------------------------------------------------- numbers
    tp = {"pyro": throughput(pyro_hist, n_train), "plain": throughput(plain_hist, n_train)}
    ev = {
        "pyro": {
            "elbo": mean_se(pyro_el),
            "log_px": mean_se(pyro_lp),
            "elbo_time_s": t_el_pyro,
            "log_px_time_s": t_lp_pyro,
        },
        "plain": {
            "elbo": mean_se(plain_el),
            "log_px": mean_se(plain_lp),
            "elbo_time_s": t_el_plain,
            "log_px_time_s": t_lp_plain,
        },
    }
    d_elbo = mean_se(pyro_el - plain_el)  # paired over the same test images
    d_lp = mean_se(pyro_lp - plain_lp)
    ratio = tp["pyro"]["overall"] / tp["plain"]["overall"]
    ratio_med = tp["pyro"]["median_epoch"] / tp["plain"]["median_epoch"]
    estimator = (
        "analytic KL (TraceMeanField_ELBO in pyro-vae; closed-form KL in the plain model)"
        if analytic_kl
        else "single-sample Monte Carlo ELBO log p(x|z) + log p(z) - log q(z|x) in both "
        f"({'Trace_ELBO compiled (pyro-vae JitTraceELBO)' if a.elbo in ('jit', 'auto') else 'Trace_ELBO'}"
        f" in pyro-vae"
        + ("; the plain model is not JIT-compiled" if a.elbo in ("jit", "auto") else "")
        + f"; pyro-vae: {a.precision}, Adam(fused=True); plain: fp32, torch.optim.Adam defaults)"
    )

    # ---------------------------------------------------------------- report
    L = []
    L.append("# pyro-vae vs plain PyTorch: VAE training on MNIST (mnist5k)")
    L.append("")
    L.append(f"- command: `{command}`")
    L.append(f"- date: {started.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    L.append(f"- torch {torch.__version__}, pyro {pyro.__version__}, Python {platform.python_version()}")
    L.append(f"- device: {device}; threads: {a.threads} (torch.set_num_threads); CPU: {cpu_name()}")
    L.append(
        f"- data: mnist5k: {n_train} training images (validation {len(val)}, untimed); test: "
        f"official MNIST test set, {n_test} of {x_test_full.shape[0]} images"
        f"{' (--limit)' if n_test < x_test_full.shape[0] else ''}, binarized once with seed "
        f"{EVAL_BINARIZATION_SEED}"
    )
    L.append(
        f"- model: MLP 784-400-50 / 50-400-784, ReLU, softplus+1e-4 scale, Bernoulli logits; "
        f"{n_params[0]:,} parameters (pyro-vae), {n_params[1]:,} (plain); identical initial "
        f"parameters from seed {a.seed}: {'yes' if same_init else 'NO'}"
    )
    L.append(
        f"- training: {a.epochs} epochs, batch {BATCH_SIZE}, Adam lr {LR:g}, dynamic binarization, "
        f"seed {a.seed}, order: {' then '.join(order)} (sequential, same process, after "
        f"{a.warmup_steps} untimed warm-up steps of each code path on throwaway models)"
    )
    L.append(f"- training estimator: {estimator}")
    L.append(
        f"- evaluation: test ELBO = 1 sample of z per image; log p(x) = importance sampling with "
        f"k = {a.k} samples from q(z|x); nats per image, mean ± standard error over test images. "
        f"pyro-vae: `pyro_vae.inference.marginal.elbo` / `log_marginal`; plain: own torch code"
    )
    L.append(
        "- throughput: training images / time of the training steps (per-batch binarization, "
        "batching, forward, backward, Adam step); validation and evaluation excluded"
    )
    L.append("")
    L.append(f"| metric | pyro-vae ({a.elbo}) | plain PyTorch | pyro-vae vs plain |")
    L.append("|---|---:|---:|---:|")
    L.append(
        f"| training img/s, overall | {fmt(tp['pyro']['overall'], 0)} | {fmt(tp['plain']['overall'], 0)} "
        f"| ratio {ratio:.3f} |"
    )
    L.append(
        f"| training img/s, median epoch (steady state) | {fmt(tp['pyro']['median_epoch'], 0)} "
        f"| {fmt(tp['plain']['median_epoch'], 0)} | ratio {ratio_med:.3f} |"
    )
    L.append(
        f"| training img/s, first epoch | {fmt(tp['pyro']['first_epoch'], 0)} "
        f"| {fmt(tp['plain']['first_epoch'], 0)} | ratio {tp['pyro']['first_epoch'] / tp['plain']['first_epoch']:.3f} |"
    )
    L.append(
        f"| training time (s, steps only) | {fmt(tp['pyro']['train_time_s'], 1)} "
        f"| {fmt(tp['plain']['train_time_s'], 1)} | |"
    )
    L.append(
        f"| final train loss (-ELBO/img, last epoch) | {fmt(pyro_hist[-1]['train_loss'])} "
        f"| {fmt(plain_hist[-1]['train_loss'])} | |"
    )
    L.append(
        f"| final validation ELBO (nats/img) | {fmt(pyro_hist[-1]['val_elbo'])} | {fmt(plain_hist[-1]['val_elbo'])} | |"
    )
    L.append(
        f"| test ELBO (nats/img, 1 sample) | {pm(*ev['pyro']['elbo'])} | {pm(*ev['plain']['elbo'])} "
        f"| diff {d_elbo[0]:+.2f} ± {d_elbo[1]:.2f} |"
    )
    L.append(
        f"| test log p(x) (nats/img, k={a.k}) | {pm(*ev['pyro']['log_px'])} | {pm(*ev['plain']['log_px'])} "
        f"| diff {d_lp[0]:+.2f} ± {d_lp[1]:.2f} |"
    )
    L.append(
        f"| log p(x) - ELBO (nats/img) | {fmt(ev['pyro']['log_px'][0] - ev['pyro']['elbo'][0])} "
        f"| {fmt(ev['plain']['log_px'][0] - ev['plain']['elbo'][0])} | |"
    )
    L.append(
        f"| evaluation time (s): ELBO / log p(x) | {ev['pyro']['elbo_time_s']:.2f} / {ev['pyro']['log_px_time_s']:.1f} "
        f"| {ev['plain']['elbo_time_s']:.2f} / {ev['plain']['log_px_time_s']:.1f} | |"
    )
    if gen is not None:
        L.append(
            f"| Fréchet distance, {a.num_generated} prior samples vs test (lower is better) "
            f"| {gen['pyro']['fd']:.1f} | {gen['plain']['fd']:.1f} | |"
        )
        L.append(
            f"| Inception score of the prior samples (± std over 10 splits) | {gen['pyro']['is']:.2f} ± "
            f"{gen['pyro']['is_std']:.2f} | {gen['plain']['is']:.2f} ± {gen['plain']['is_std']:.2f} | |"
        )
        L.append(
            f"| classes covered by the prior samples | {gen['pyro']['modes']} of 10 | {gen['plain']['modes']} of 10 | |"
        )
    L.append("")
    L.append(
        "Ratio = pyro-vae img/s ÷ plain img/s (below 1: pyro-vae is slower). Differences are "
        "pyro-vae − plain, paired over the same test images (± standard error)."
    )
    if gen is not None:
        L.append("")
        L.append(
            "Generation scores (`pyro_vae.analysis.generation`): images drawn from p(x|z), z ~ N(0, I), against the "
            "binarized test images, through a small classifier trained on the binarized training labels "
            f"(held-out accuracy {gen['classifier_val_accuracy']:.3f}) standing in for Inception: the Fréchet "
            "distance of its penultimate features and its Inception score. Not comparable with published "
            "FIDs or Inception scores."
        )
    if cross is not None:
        L.append("")
        L.append(
            f"Evaluator cross-check: the pyro-vae-trained network, first {cross['images']} test images, "
            f"k = {a.k}, independent random draws:"
        )
        L.append("")
        L.append("| | library evaluator | plain evaluator | difference |")
        L.append("|---|---:|---:|---:|")
        L.append(
            f"| test ELBO (nats/img) | {pm(*cross['library_elbo'])} | {pm(*cross['plain_elbo'])} "
            f"| {cross['elbo_diff'][0]:+.3f} ± {cross['elbo_diff'][1]:.3f} |"
        )
        L.append(
            f"| test log p(x) (nats/img) | {pm(*cross['library_log_px'])} | {pm(*cross['plain_log_px'])} "
            f"| {cross['log_px_diff'][0]:+.3f} ± {cross['log_px_diff'][1]:.3f} |"
        )
    L.append("")
    L.append(
        "Per-epoch training throughput (img/s, training steps only), train loss (-ELBO/img) and "
        "validation ELBO (nats/img):"
    )
    L.append("")
    L.append(
        "| epoch | pyro-vae img/s | plain img/s | ratio | pyro-vae loss | plain loss | pyro-vae val ELBO | plain val ELBO |"
    )
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rp, rq in zip(pyro_hist, plain_hist):
        L.append(
            f"| {rp['epoch']} | {rp['images_per_s']:.0f} | {rq['images_per_s']:.0f} "
            f"| {rp['images_per_s'] / rq['images_per_s']:.3f} | {rp['train_loss']:.2f} | {rq['train_loss']:.2f} "
            f"| {rp['val_elbo']:.2f} | {rq['val_elbo']:.2f} |"
        )
    report = "\n".join(L) + "\n"

    raw = {
        "command": command,
        "argv": argv_used[1:],
        "date": started.isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "python": platform.python_version(),
        "threads": a.threads,
        "device": str(device),
        "cpu": cpu_name(),
        "settings": {
            "epochs": a.epochs,
            "batch_size": BATCH_SIZE,
            "lr": LR,
            "k": a.k,
            "elbo": a.elbo,
            "plain_kl": "analytic" if analytic_kl else "monte_carlo",
            "seed": a.seed,
            "order": order,
            "warmup_steps": a.warmup_steps,
            "binarize": "dynamic",
            "test_binarization_seed": EVAL_BINARIZATION_SEED,
        },
        "data": {
            "train": n_train,
            "val": len(val),
            "test_available": int(x_test_full.shape[0]),
            "test_evaluated": n_test,
            "data_dir": str(data_dir),
        },
        "same_initial_parameters": same_init,
        "parameters": {"pyro": n_params[0], "plain": n_params[1]},
        "unit": "nats per image; throughput in training images per second",
        "throughput": tp,
        "ratio_overall": ratio,
        "ratio_median_epoch": ratio_med,
        "eval": {
            m: {
                "elbo": v["elbo"][0],
                "elbo_se": v["elbo"][1],
                "log_px": v["log_px"][0],
                "log_px_se": v["log_px"][1],
                "elbo_time_s": v["elbo_time_s"],
                "log_px_time_s": v["log_px_time_s"],
            }
            for m, v in ev.items()
        },
        "diff_elbo": d_elbo[0],
        "diff_elbo_se": d_elbo[1],
        "diff_log_px": d_lp[0],
        "diff_log_px_se": d_lp[1],
        "history": {"pyro": pyro_hist, "plain": plain_hist},
        "cross_check": None
        if cross is None
        else {k: (list(v) if isinstance(v, tuple) else v) for k, v in cross.items()},
        "generation": gen,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    out.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n")
    say("\n" + report)
    say(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

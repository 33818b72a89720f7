"""M1 of Kingma, Rezende, Mohamed & Welling (2014): a classifier on a trained VAE's latent means.

A VAE trained on all (unlabelled) training images is a feature extractor: each image becomes
its latent mean E_q[z|x]. A small classifier is then trained on the codes of the few labelled
images only, and judged by its accuracy on the codes of held-out images::

    family, _ = load_checkpoint("runs/mnist/checkpoint_best.pt")
    result = m1_classify(family, for_evaluation(splits.train, "dynamic"),
                         for_evaluation(splits.test, "dynamic"), labels=100, seed=0)
    result["accuracy"]

or from the command line (``pyro-vae classify RUN --labels 100``), which writes
``RUN/m1_labels100_seed0.json``.

Protocol (every choice is recorded in the result):

* codes: the latent means of every training and test image (:func:`latent_means`), centred by
  the mean of *all* training codes and divided by one overall scale, their root mean variance
  (unlabelled images are available in the semi-supervised setting; no test statistic is
  used). One scale for all dimensions keeps the relative sizes of the codes: inactive latent
  units, whose means barely move, stay small instead of being blown up to unit variance
  (per-dimension standardization, ``standardize="dim"``, lost 9 points of validation accuracy
  at 100 labels with a 50-dimensional VAE on mnist5k);
* labels: ``labels / num_classes`` per class, drawn with ``seed`` by
  :func:`pyro_vae.data.select_labels`;
* classifier: the MLP of M2's q(y|x) (:class:`pyro_vae.models.ssvae.Classifier`) on the codes,
  softmax cross-entropy, Adam, initialised and shuffled from ``seed``, a fixed number of
  epochs, the final weights kept: no further labels are looked at. With ``val_labels`` a
  labelled validation subset of that many more training points (disjoint from the labelled
  ones) picks the epoch of best validation accuracy instead, and the result says that
  ``labels + val_labels`` labels were used.

The caller prepares the images: the CLI binarizes training and test images once by the
evaluation rule (:func:`pyro_vae.data.for_evaluation`), so the codes are deterministic.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from .data import Batch, DataError, check_labels, num_classes_of, select_labels
from .generation import classifier_accuracy
from .models.base import plan

STANDARDIZE = {  # how the codes are scaled, by statistics of all training codes (never the test codes)
    "global": "centred per dimension, divided by one scale (root mean variance over dimensions)",
    "dim": "centred and divided by the standard deviation of each dimension",
    "none": "raw latent means",
}
RESULT = "m1_labels{labels}_seed{seed}{suffix}.json"  # written into the run folder by ``classify``


def result_name(labels: int, seed: int, split: str = "test", val_labels: int | None = None,
                dataset: str | None = None, settings: dict | None = None) -> str:
    """File name of a ``classify`` result: ``m1_labels{N}_seed{S}.json`` for the test split
    without validation labels, with ``_val`` (validation split), ``_vl{V}`` (``val_labels``),
    the data set when it is not the run's own, and a hash of classifier ``settings`` that differ
    from the defaults added otherwise, so that different protocols do not overwrite each other."""
    from .run import name_part

    suffix = ("_val" if split == "val" else "") + (f"_vl{val_labels}" if val_labels else "")
    if dataset is not None:
        suffix += "_" + name_part(dataset, Path(str(dataset)).name)
    short = {"epochs": "e", "hidden": "h", "lr": "lr", "standardize": "std-"}
    for key, value in sorted((settings or {}).items()):
        value = "-".join(map(str, value)) if isinstance(value, (list, tuple)) else f"{value:g}" \
            if isinstance(value, float) else str(value)
        suffix += "_" + name_part(f"{short.get(key, key)}{value}")
    return RESULT.format(labels=labels, seed=seed, suffix=suffix)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------------- codes
def _device_of(module) -> torch.device:
    if isinstance(module, torch.nn.Module):
        for t in list(module.parameters()) + list(module.buffers()):
            return t.device
    return torch.device("cpu")


def _as_mean(out) -> torch.Tensor:
    """The location from what an ``encode`` returns: ``(loc, scale)``, a tensor or a distribution."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, torch.distributions.Distribution):
        out = out.mean
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"encode returned {type(out).__name__}, not (loc, scale), a tensor or a distribution")
    return out


def _guide_means(family, chunk: Batch) -> torch.Tensor:
    """Means of the continuous latent sites ``family.latent_sites`` in a trace of the guide."""
    import pyro
    from pyro import poutine

    sites = tuple(getattr(family, "latent_sites", ("z",)))
    with torch.random.fork_rng(devices=[]):  # a guide may draw (e.g. a discrete site first)
        pyro.set_rng_seed(0)
        trace = poutine.trace(family.guide).get_trace(*family.args(chunk))
    means = []
    for name in sites:
        site = trace.nodes.get(name)
        if site is None or site["type"] != "sample" or site["is_observed"]:
            continue
        fn = site["fn"]
        if site["infer"].get("enumerate") or getattr(fn.support, "is_discrete", False):
            continue  # a class label or other discrete latent: not a code
        try:
            mean = fn.mean
        except NotImplementedError:
            raise ValueError(f"the guide's distribution of latent site {name!r} ({type(fn).__name__}) has no "
                             f"mean") from None
        means.append(mean.reshape(len(chunk), -1))
    if not means:
        raise ValueError(f"the guide has no continuous latent site among latent_sites {sites}")
    return torch.cat(means, -1)


@torch.no_grad()
def latent_means(family, data: Batch, batch_size: int = 1000) -> torch.Tensor:
    """E_q[z|x] of every data point: ``(N, latent_dim)``, on the family's device.

    Through ``family.encode(x)`` (the location of what it returns) when the family has it and it
    works from x alone; otherwise the means of the continuous latent sites
    (``family.latent_sites``, concatenated; discrete ones skipped) in a trace of
    ``family.guide`` on the data with their labels removed, so that no label reaches the codes.
    A family whose encoder needs the labels (a class-conditional VAE) is refused with a
    ValueError, as is one with neither ``encode`` nor a guide with continuous latents.
    """
    if not isinstance(data, Batch):
        raise TypeError(f"latent_means needs a pyro_vae.data.Batch, got {type(data).__name__}")
    if len(data) == 0:
        raise DataError("latent_means: no data points")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    name = type(family).__name__
    device = _device_of(family)
    blind = data.replace(y=None, labelled=None)  # labels never reach the codes
    was_training = getattr(family, "training", None)
    if was_training is not None:
        family.eval()
    reasons = []
    try:
        encode = getattr(family, "encode", None)
        if callable(encode):
            try:
                return torch.cat([_as_mean(encode(blind.x[i:i + batch_size].to(device)))
                                  .reshape(min(batch_size, len(data) - i), -1)
                                  for i in range(0, len(data), batch_size)])
            except (ValueError, TypeError, NotImplementedError) as e:  # e.g. encode needs a condition
                reasons.append(f"encode(x): {e}")
        if not callable(getattr(family, "guide", None)) or not hasattr(family, "args"):
            reasons.append("no guide(*args(batch)) to trace")
        else:
            try:
                return torch.cat([_guide_means(family, blind.subset(slice(i, i + batch_size)).to(device))
                                  for i in range(0, len(data), batch_size)])
            except (ValueError, TypeError, AttributeError, KeyError, RuntimeError, NotImplementedError) as e:
                reasons.append(f"guide without labels: {type(e).__name__}: {e}")
    finally:
        if was_training is not None:
            family.train(was_training)
    raise ValueError(f"cannot compute latent means of this {name} from the images alone "
                     f"({'; '.join(reasons)}); M1 needs a family that encodes x without labels or conditions, "
                     f"e.g. --model vae")


# ---------------------------------------------------------------------- the classifier
@torch.no_grad()
def _check_labelled(ds, what: str, num_classes: int | None = None):
    if not isinstance(ds, Batch):
        raise TypeError(f"m1_classify: {what} must be a pyro_vae.data.Batch, got {type(ds).__name__}")
    if ds.y is None:
        raise DataError(f"M1 classification needs labelled {what} data (y), and these {len(ds)} {what} points "
                        f"have no labels")
    if len(ds) == 0:
        raise DataError(f"M1 classification: the {what} data are empty")
    if num_classes is not None:
        check_labels(ds.y, num_classes, f"{what} labels")


def m1_classify(family, train: Batch, test: Batch, labels: int = 100, seed: int = 0, hidden=(500,),
                epochs: int = 300, lr: float = 1e-3, batch_size: int = 100, weight_decay: float = 0.0,
                val_labels: int | None = None, standardize: str = "global", device=None,
                progress: bool = False) -> dict:
    """Kingma et al.'s M1: a classifier on the latent means of a trained VAE, from few labels.

    ``train`` gives the codes (all of them scale the codes, see ``standardize`` and
    :data:`STANDARDIZE`) and the labels, of which
    ``labels`` (``labels / num_classes`` per class, drawn with ``seed``) are used; ``test`` is
    held-out labelled data for the accuracy. Both should already be prepared the way the
    family expects (binarized by :func:`pyro_vae.data.for_evaluation` for a Bernoulli
    likelihood). The classifier is the MLP of M2's q(y|x) with ``hidden`` layers, trained
    ``epochs`` passes over the labelled codes (mini-batches of ``batch_size``) by Adam
    (``lr``, ``weight_decay``); the final weights are kept, unless ``val_labels`` more
    training labels (disjoint from the others) are used to keep the epoch of best validation
    accuracy. Deterministic given ``seed`` (on CPU). ``device``: where the classifier trains
    (default: the family's device).

    Returns a dict: ``accuracy`` (test), ``labels``, ``seed``, ``train_accuracy`` (on the
    labelled codes), ``unlabelled_accuracy`` (on the training points whose labels were not
    used), ``num_test``, ``num_train``, ``num_classes``, ``latent_dim``, ``epochs``, the
    classifier's settings, ``selection`` (how the weights were chosen), ``labels_used`` and
    ``time_s``; with ``val_labels`` also ``val_labels``, ``val_accuracy`` and ``best_epoch``.
    """
    from tqdm.auto import tqdm

    from .models.ssvae import Classifier

    t0 = time.perf_counter()
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"m1_classify: {name} must be a positive integer, got {value!r}")
    if not _finite(lr) or not lr > 0 or not _finite(weight_decay) or weight_decay < 0:
        raise ValueError(f"m1_classify: need a finite lr > 0 and a finite weight_decay >= 0 (an infinite step "
                         f"trains nothing), got lr={lr}, weight_decay={weight_decay}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"m1_classify: seed must be an integer from 0 to 2**32 - 1, got {seed!r}")
    if standardize not in STANDARDIZE:
        raise ValueError(f"m1_classify: standardize must be one of {', '.join(STANDARDIZE)}, got {standardize!r}")
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"m1_classify: hidden must be integers >= 1 (layer sizes), got {hidden!r}")
    _check_labelled(train, "training")
    num_classes = num_classes_of(train)
    if num_classes < 2:
        raise DataError(f"M1 classification needs at least 2 classes; the training labels have {num_classes}")
    _check_labelled(test, "test", num_classes)
    chosen = select_labels(train, labels, seed=seed, num_classes=num_classes).labelled.cpu()
    val_mask = None
    if val_labels:
        rest = (~chosen).nonzero().reshape(-1)
        try:
            picked = select_labels(train.subset(rest.to(train.x.device)), val_labels, seed=seed + 1,
                                   num_classes=num_classes).labelled.cpu()
        except DataError as e:
            raise DataError(f"val_labels {val_labels} (drawn from the training points outside the {labels} "
                            f"labelled ones): {e}") from None
        val_mask = torch.zeros(len(train), dtype=torch.bool)
        val_mask[rest[picked]] = True

    # codes, standardized by the statistics of all training codes
    codes_train = latent_means(family, train)
    codes_test = latent_means(family, test)
    dev = torch.device(device) if device is not None else codes_train.device
    codes_train, codes_test = codes_train.to(dev), codes_test.to(dev)
    if not (torch.isfinite(codes_train).all() and torch.isfinite(codes_test).all()):
        raise ValueError("the latent means contain NaN or Inf: is the checkpoint a diverged run?")
    if standardize != "none":
        mean = codes_train.mean(0)
        var = codes_train.var(0) if len(train) > 1 else torch.ones_like(mean)
        scale = (var if standardize == "dim" else var.mean()).sqrt().clamp_min(1e-6)
        codes_train, codes_test = (codes_train - mean) / scale, (codes_test - mean) / scale
    y_train, y_test = train.y.to(dev), test.y.to(dev)
    lab_idx = chosen.nonzero().reshape(-1).to(dev)
    x_lab, y_lab = codes_train[lab_idx], y_train[lab_idx]
    latent_dim = codes_train.shape[1]

    def build():
        return Classifier("mlp", (latent_dim,), num_classes, hidden)

    plan(build, "the M1 classifier", f"use smaller --hidden sizes than {' '.join(map(str, hidden))}")
    with torch.random.fork_rng(devices=[]):  # seeded initialisation that leaves the caller's RNG alone
        torch.manual_seed(seed)
        net = build()
    net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    best = (-math.inf, None, 0)  # (validation accuracy, state, epoch)
    if val_mask is not None:
        val_idx = val_mask.nonzero().reshape(-1).to(dev)
        x_val, y_val = codes_train[val_idx], y_train[val_idx]
    for epoch in tqdm(range(1, epochs + 1), desc="M1 classifier", unit="epoch", disable=not progress, leave=False):
        net.train()
        for idx in torch.randperm(len(lab_idx), generator=gen).split(batch_size):
            idx = idx.to(dev)
            loss = F.cross_entropy(net(x_lab[idx]), y_lab[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if val_mask is not None:
            net.eval()
            acc = classifier_accuracy(net, x_val, y_val)
            if acc > best[0]:
                best = (acc, {k: v.detach().clone() for k, v in net.state_dict().items()}, epoch)
    if val_mask is not None:
        net.load_state_dict(best[1])
    net.eval()
    unused = ~chosen if val_mask is None else ~(chosen | val_mask)
    unused_idx = unused.nonzero().reshape(-1).to(dev)
    result = {
        "accuracy": classifier_accuracy(net, codes_test, y_test),
        "labels": int(labels),
        "seed": int(seed),
        "train_accuracy": classifier_accuracy(net, x_lab, y_lab),
        "unlabelled_accuracy": classifier_accuracy(net, codes_train[unused_idx], y_train[unused_idx]),
        "num_test": len(test),
        "num_train": len(train),
        "num_classes": num_classes,
        "chance": 1.0 / num_classes,
        "latent_dim": latent_dim,
        "epochs": epochs,
        "hidden": list(hidden),
        "lr": lr,
        "batch_size": batch_size,
        "weight_decay": weight_decay,
        "standardize": STANDARDIZE[standardize],
        "codes": "latent means E_q[z|x]",
        "selection": "fixed epochs, final weights" if val_mask is None else
                     f"epoch of best accuracy on {int(val_labels)} more labelled training points",
        "labels_used": int(labels) + int(val_labels or 0),
    }
    if val_mask is not None:
        result.update(val_labels=int(val_labels), val_accuracy=best[0], best_epoch=best[2])
    result["time_s"] = round(time.perf_counter() - t0, 2)
    return result


# ---------------------------------------------------------------------- the CLI subcommand
def add_parser(sub, formatter_class):
    """Add the ``classify`` subcommand to the subparsers ``sub``; return its parser. Numbers are
    checked where they are parsed, with the ``train`` command's rules (a finite lr > 0, a seed in
    0..2**32-1, sizes >= 1): one line, before any work."""
    from .cli import _positive_float, _positive_int, _seed  # the CLI imports this module first: no cycle

    p = sub.add_parser("classify", help="M1: classify from a few labels on a trained VAE's latent means",
                       description="Kingma et al.'s M1: the latent means E_q[z|x] of the run's best checkpoint "
                                   "become the inputs of a small MLP classifier trained on --labels labelled "
                                   "training images (the same number per class, drawn with --seed); its "
                                   "accuracy on the test split is printed and written to "
                                   "RUN/m1_labels{N}_seed{S}.json.",
                       formatter_class=formatter_class)
    p.add_argument("run", metavar="RUN", help="a run folder (its checkpoint_best.pt) or a checkpoint .pt file")
    p.add_argument("--labels", type=_positive_int, default=100,
                   help="labelled training images the classifier learns from (a multiple of the number of classes)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the labelled subset, the initialisation and the shuffling")
    p.add_argument("--epochs", type=_positive_int, default=300, help="passes of the classifier over the labelled codes")
    p.add_argument("--hidden", type=_positive_int, nargs="+", default=[500], metavar="N",
                   help="hidden layer sizes of the classifier")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate of the classifier")
    p.add_argument("--standardize", default="global", choices=sorted(STANDARDIZE),
                   help="scaling of the codes by all training codes: global (centred, one overall scale), dim "
                        "(per-dimension standard deviation) or none")
    p.add_argument("--val-labels", type=_positive_int, default=None,
                   help="also use this many more training labels to keep the epoch of best validation accuracy "
                        "(default: none, a fixed number of epochs)")
    p.add_argument("--dataset", default=None,
                   help="data set or path (default: the one the checkpoint was trained on)")
    p.add_argument("--data-dir", default=None,
                   help="folder of torchvision data sets; for mnist5k, the folder holding the official MNIST test "
                        "files (default: the checkpoint's)")
    p.add_argument("--split", default="test", choices=["test", "val"],
                   help="where to measure accuracy (test falls back to val if the data set has none)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE (a module name or a .py file) first, so that a plugin family's checkpoint "
                        "loads (repeatable)")
    p.add_argument("--device", default="auto", help="auto (cuda when present, else cpu), cpu, cuda, ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


INTERRUPTED = ("interrupted; no result was written (classify keeps nothing between runs and has no --resume: "
               "run the same command again)")


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
    from .cli import _eval_split, _load, _load_splits
    from .config import save_json
    from .data import for_evaluation
    from .run import RunDir

    for flag, value in (("--labels", a.labels), ("--epochs", a.epochs)):
        if value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}")
    if a.val_labels is not None and a.val_labels < 1:
        raise ValueError(f"--val-labels must be a positive integer, got {a.val_labels}")
    if any(h < 1 for h in a.hidden):
        raise ValueError(f"--hidden sizes must be positive, got {' '.join(map(str, a.hidden))}")
    if not (_finite(a.lr) and a.lr > 0):
        raise ValueError(f"--lr must be a finite number > 0, got {a.lr}")
    if not 0 <= a.seed < 2**32:
        raise ValueError(f"--seed must be an integer from 0 to 2**32 - 1, got {a.seed}")
    path = RunDir.checkpoint_path(a.run)
    family, ckpt = _load(path, a.device)
    data_cfg = ckpt.get("extra", {}).get("data", {})
    mode = ckpt.get("train_config", {}).get("binarize", "dynamic")
    name, splits = _load_splits(data_cfg, a.dataset, a.data_dir)
    test, label = _eval_split(splits, name, a.split, mode)
    train = for_evaluation(splits.train, mode)  # the same fixed binary images every time: fixed codes
    result = m1_classify(family, train, test, labels=a.labels, seed=a.seed, hidden=tuple(a.hidden),
                         epochs=a.epochs, lr=a.lr, val_labels=a.val_labels, standardize=a.standardize,
                         progress=not a.no_progress)
    result.update(data=label, train_data=f"{name}/train", checkpoint=str(path), checkpoint_epoch=ckpt.get("epoch"),
                  binarize=mode if mode == "none" else f"{mode} training; codes of images binarized once "
                                                       f"(evaluation rule, seed 0)")
    typed = getattr(a, "typed", {})  # classifier settings given on the command line name the result too
    changed = {k: getattr(a, k) for k in ("epochs", "hidden", "lr", "standardize") if k in typed}
    out = RunDir.of_checkpoint(path).path / result_name(a.labels, a.seed, "val" if label.endswith("/val") else "test",
                                                        a.val_labels, a.dataset, changed)
    save_json(out, result)
    rows = [("accuracy", f"{result['accuracy']:.4f}  ({label}, {result['num_test']} images; chance "
                         f"{result['chance']:.2f})"),
            ("labels", f"{result['labels']} of {result['num_train']} training images"
                       + (f" (+ {a.val_labels} for validation)" if a.val_labels else "")),
            ("seed", str(result["seed"])),
            ("train accuracy", f"{result['train_accuracy']:.4f}  (labelled codes)"),
            ("classifier", f"MLP {result['hidden']} on {result['latent_dim']} latent means, {result['epochs']} epochs, "
                           f"{result['selection']}"),
            ("time", f"{result['time_s']:.1f} s")]
    width = max(len(k) for k, _ in rows)
    print(f"M1 on {path}:\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in rows) + f"\nsaved {out}")
    return 0


__all__ = ["latent_means", "m1_classify", "add_parser", "cmd_classify", "result_name", "RESULT", "STANDARDIZE"]

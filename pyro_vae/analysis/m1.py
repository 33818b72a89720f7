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
* classifier: the MLP of M2's q(y|x) (:class:`pyro_vae.models.parts.Classifier`) on the codes,
  softmax cross-entropy, Adam, initialised and shuffled from ``seed``, a fixed number of
  epochs, the final weights kept: no further labels are looked at. With ``val_labels`` a
  labelled validation subset of that many more training points (disjoint from the labelled
  ones) picks the epoch of best validation accuracy instead, and the result says that
  ``labels + val_labels`` labels were used.

The caller prepares the images: the CLI binarizes training and test images once by the
evaluation rule (:func:`pyro_vae.data.batch.for_evaluation`), so the codes are deterministic.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from pyro_vae.data.batch import Batch, DataError, check_labels, num_classes_of, select_labels
from pyro_vae.analysis.generation import classifier_accuracy
from pyro_vae.analysis.samplers import latent_means
from pyro_vae.models.base import plan
from pyro_vae.models.parts import Classifier

STANDARDIZE = {  # how the codes are scaled, by statistics of all training codes (never the test codes)
    "global": "centred per dimension, divided by one scale (root mean variance over dimensions)",
    "dim": "centred and divided by the standard deviation of each dimension",
    "none": "raw latent means",
}
RESULT = "m1_labels{labels}_seed{seed}{suffix}.json"  # written into the run folder by ``classify``


def result_name(
    labels: int,
    seed: int,
    split: str = "test",
    val_labels: int | None = None,
    dataset: str | None = None,
    settings: dict | None = None,
) -> str:
    """File name of a ``classify`` result: ``m1_labels{N}_seed{S}.json`` for the test split
    without validation labels, with ``_val`` (validation split), ``_vl{V}`` (``val_labels``),
    the data set when it is not the run's own, and a hash of classifier ``settings`` that differ
    from the defaults added otherwise, so that different protocols do not overwrite each other."""
    from pyro_vae.runs.folder import name_part

    suffix = ("_val" if split == "val" else "") + (f"_vl{val_labels}" if val_labels else "")
    if dataset is not None:
        suffix += "_" + name_part(dataset, Path(str(dataset)).name)
    short = {"epochs": "e", "hidden": "h", "lr": "lr", "standardize": "std-"}
    for key, value in sorted((settings or {}).items()):
        value = (
            "-".join(map(str, value))
            if isinstance(value, (list, tuple))
            else f"{value:g}"
            if isinstance(value, float)
            else str(value)
        )
        suffix += "_" + name_part(f"{short.get(key, key)}{value}")
    return RESULT.format(labels=labels, seed=seed, suffix=suffix)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------------- codes
def _check_labelled(ds, what: str, num_classes: int | None = None):
    if not isinstance(ds, Batch):
        raise TypeError(f"m1_classify: {what} must be a pyro_vae.data.Batch, got {type(ds).__name__}")
    if ds.y is None:
        raise DataError(
            f"M1 classification needs labelled {what} data (y), and these {len(ds)} {what} points have no labels"
        )
    if len(ds) == 0:
        raise DataError(f"M1 classification: the {what} data are empty")
    if num_classes is not None:
        check_labels(ds.y, num_classes, f"{what} labels")


def m1_classify(
    family,
    train: Batch,
    test: Batch,
    labels: int = 100,
    seed: int = 0,
    hidden=(500,),
    epochs: int = 300,
    lr: float = 1e-3,
    batch_size: int = 100,
    weight_decay: float = 0.0,
    val_labels: int | None = None,
    standardize: str = "global",
    device=None,
    progress: bool = False,
) -> dict:
    """Kingma et al.'s M1: a classifier on the latent means of a trained VAE, from few labels.

    ``train`` gives the codes (all of them scale the codes, see ``standardize`` and
    :data:`STANDARDIZE`) and the labels, of which
    ``labels`` (``labels / num_classes`` per class, drawn with ``seed``) are used; ``test`` is
    held-out labelled data for the accuracy. Both should already be prepared the way the
    family expects (binarized by :func:`pyro_vae.data.batch.for_evaluation` for a Bernoulli
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

    t0 = time.perf_counter()
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"m1_classify: {name} must be a positive integer, got {value!r}")
    if not _finite(lr) or not lr > 0 or not _finite(weight_decay) or weight_decay < 0:
        raise ValueError(
            f"m1_classify: need a finite lr > 0 and a finite weight_decay >= 0 (an infinite step "
            f"trains nothing), got lr={lr}, weight_decay={weight_decay}"
        )
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
            picked = select_labels(
                train.subset(rest.to(train.x.device)), val_labels, seed=seed + 1, num_classes=num_classes
            ).labelled.cpu()
        except DataError as e:
            raise DataError(
                f"val_labels {val_labels} (drawn from the training points outside the {labels} labelled ones): {e}"
            ) from None
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
        "selection": "fixed epochs, final weights"
        if val_mask is None
        else f"epoch of best accuracy on {int(val_labels)} more labelled training points",
        "labels_used": int(labels) + int(val_labels or 0),
    }
    if val_mask is not None:
        result.update(val_labels=int(val_labels), val_accuracy=best[0], best_epoch=best[2])
    result["time_s"] = round(time.perf_counter() - t0, 2)
    return result


__all__ = ["latent_means", "m1_classify", "result_name", "RESULT", "STANDARDIZE"]

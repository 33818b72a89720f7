"""The base class of every family, :class:`Family`, and the rules of the model contract: what
training, evaluation, figures, report and CLI rely on. The contract as code (the required core,
the optional abilities as protocols, the declared traits and their defaults, and the only
look-ups of a family's members) is :mod:`pyro_vae.contract`; :func:`check_family_class` and
:func:`check_family` run its checks when a family is registered and when one is built.

A family is an ``nn.Module`` holding two Pyro programs over a batch of data points, written as
Pyro's VAE tutorial writes them::

    model(*args)    # p(latents) p(x | latents), every site inside pyro.plate("data", B)
    guide(*args)    # q(latents | x)

with ``args = family.args(batch)``. The rules:

* **Batch to arguments.** :meth:`Family.args` maps a :class:`~pyro_vae.data.Batch` (``x``, and
  optionally labels ``y`` with their ``labelled`` mask, a condition ``c``) to a tuple of
  *tensors*, the same length for every batch. Training calls
  ``objective.differentiable_loss(model, guide, *args, kl_weight, num_data=N)`` (``kl_weight``
  positional as a 0-d tensor, so JIT objectives compile once); the evaluator calls
  ``model(*args)`` on chunks of the batch. Neither looks inside the batch.
* **The data plate.** Every sample site sits inside ``pyro.plate(family.plate_name, B)`` over
  the batch (``"data"``; dim ``-1`` unless the family nests more plates: ``max_plate_nesting``
  says how deep).
* **Scaling, from outside.** Training runs the programs under
  :class:`pyro_vae.inference.scaling.ScaleSites`: every *latent* sample site (not observed; in the model
  and the guide) gets the KL weight w (beta times the warm-up), every site inside the data plate
  gets ``N / B`` (N the training-set size), so an observed site there gets ``N / B`` and a latent
  one ``N / B * w``. ``kl_sites`` (a tuple of names; default None: every latent site) names the
  sites that get w instead. The evaluator runs the programs unweighted.
* **The explicit form**, also accepted: ``model(*args, kl_weight=1.0, num_data=None)`` (and
  ``guide``) take the two weights and scale their sites themselves, opening the plate with
  :func:`data_plate` (the data-set scaling ``num_data / B``) and wrapping the latent sites in
  ``poutine.scale(scale=kl_weight)``; ``None`` / 1.0 give the per-batch ELBO. Each program's
  form is read from its signature once, when training builds its loss
  (:func:`pyro_vae.inference.scaling.program_form`).
* **Sites.** ``latent_sites`` and ``observed_sites`` name them (the observed site is ``"x"`` for
  the data). A discrete latent to be summed out exactly is marked
  ``infer={"enumerate": "parallel"}`` in the guide; ``default_objective = "enum"`` then makes
  training use ``TraceEnum_ELBO`` and the evaluator sums it out exactly.
* **Prior draws.** ``model(None)`` (``x=None``) samples x from the prior predictive, Pyro's own
  convention, so ``pyro.infer.Predictive(family.model, num_samples=n)()`` draws images.
* **Terms outside the ELBO** (M2's classifier loss): ``extra_loss`` (the ``ExtraLoss``
  ability), added to the loss.
* **Schedules.** An optional ``on_epoch(epoch, epochs)`` (``Schedules``) is called at the start of
  every training epoch (also the first one of a resumed run): a schedule that is a function of the
  epoch, kept in a buffer so checkpoints hold it (the Gaussian-mixture VAE's relaxation temperature).
* **Point-mass guides.** ``point_estimate = True`` (the autoencoder) makes the evaluator report
  the ELBO, log p(x) and the inference gap as undefined, with ``undefined_note`` as the reason.
* **Measures and figures.** ``metrics`` (``Measures``) adds family measures (test accuracy) to
  evaluation and validation; ``select_by`` names the validation measure that keeps the best
  checkpoint; ``figures`` lists what the plots draw: a generic one needs its abilities
  (``Codes``: ``encode``/``decode``/``reconstruct``; ``Samples``: ``sample``; ``Prior``), any
  other name is drawn by the family's own ``figure`` (``Figures``). Unset, it is every generic
  figure the family has the abilities for.
* **Abilities.** A family has an ability when it defines all of its members
  (:func:`pyro_vae.contract.has`); :class:`Family`'s ``extra_loss``, ``metrics`` and ``figure`` are
  placeholders that do not count. What a family declares is checked against what it has when it
  is registered and built; a command that needs an ability it lacks refuses in one line
  (:class:`~pyro_vae.contract.MissingAbility`).
* **Configuration.** ``Config`` is a dataclass of the family's options (typed, with defaults);
  :meth:`~Family.from_config` builds the family from it and the data's shape (and number of classes).
  The CLI makes a flag of every field; checkpoints store the family's name and these options.

A family meeting this needs no change anywhere in the library: register it with
``@register_model("name")`` (or pass the instance to :func:`pyro_vae.fit` directly).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyro
import torch
from pyro import poutine
from torch import nn
from torch.overrides import TorchFunctionMode

from pyro_vae.contract import (
    GENERIC_FIGURES,
    ContractError,
    Declared,
    check_abilities,
    check_core,
    check_core_class,
    placeholder,
    traits,
)
from pyro_vae.inference.scaling import program_form
from pyro_vae.registry import SCALARS, scalar_problem


@contextlib.contextmanager
def data_plate(size: int, num_data=None, name: str = "data", dim: int | None = None):
    """``pyro.plate(name, size)`` over the batch, scaled by ``num_data / size`` (the batch stands
    for the data set; ``num_data=None``: no scaling)."""
    scale = 1.0 if num_data is None else float(num_data) / size
    with pyro.plate(name, size, dim=dim) as idx, poutine.scale(scale=scale):
        yield idx


def batch_size_of(*tensors, default: int = 1) -> int:
    """The batch size: the first dimension of the first tensor that is not None."""
    for t in tensors:
        if t is not None:
            return t.shape[0]
    return default


@dataclass
class NoOptions:
    """A family without options."""


class Family(Declared, nn.Module):
    """Base class of every model family; see the module docstring for the contract.

    Subclasses set ``data_shape`` and define ``model`` and ``guide``; the rest has defaults
    that fit a plain VAE (``args = (x,)``, the declared traits of
    :class:`pyro_vae.contract.Declared`). ``extra_loss``, ``metrics`` and ``figure`` here are
    placeholders: a family has those abilities once it defines its own.
    """

    Config = NoOptions
    data_shape: tuple = ()

    def __init__(self):
        super().__init__()
        self.pyro_name = f"{type(self).__name__.lower()}_{uuid.uuid4().hex[:12]}"

    # ------------------------------------------------------------ built from a config
    @classmethod
    @placeholder
    def from_config(cls, config, data_shape, num_classes=None) -> "Family":
        raise NotImplementedError(f"{cls.__name__} cannot be built by name: define from_config")

    # ------------------------------------------------------------ the contract
    def args(self, batch) -> tuple:
        """The positional arguments of ``model`` and ``guide`` for ``batch``."""
        return (batch.x,)

    @placeholder
    def model(self, x=None):
        """p(latents) p(x | latents), plain (training scales its sites) or with ``kl_weight=1.0,
        num_data=None`` (it scales them itself); see the module docstring."""
        raise NotImplementedError

    @placeholder
    def guide(self, x):
        """q(latents | x), in the same form as ``model``."""
        raise NotImplementedError

    @placeholder
    def extra_loss(self, batch, num_data=None):
        """Loss terms outside the ELBO, on the same per-data-set scale (None: none). A family whose
        ``extra_loss`` also declares a ``kl_weight`` parameter receives the step's KL weight (a
        0-d tensor: beta times warm-up) as well."""
        return None

    @placeholder
    @torch.no_grad()
    def metrics(self, batch) -> dict:
        """Family measures on ``batch`` for validation and evaluation: ``{name: value}``
        (floats; higher is better for ``select_by``)."""
        return {}

    def check_batch(self, batch) -> None:
        """Raise a ValueError naming the problem if ``batch`` does not fit this family."""
        if tuple(batch.x.shape[1:]) != tuple(self.data_shape):
            raise ValueError(
                f"this model expects data of shape (batch, {', '.join(map(str, self.data_shape))}) "
                f"but got {tuple(batch.x.shape)}"
            )
        if self.needs_labels and batch.y is None:
            raise ValueError(f"{type(self).__name__} needs labelled data (y); this data set has none")
        self.check_labels(batch.y)

    def check_labels(self, y) -> None:
        """Raise a DataError unless the labels ``y`` (or None) are classes of this model: integers
        in 0..num_classes-1 when the family has ``num_classes`` (a label it has no class for would
        index past its one-hot vectors and classifier outputs)."""
        num_classes = traits(self).num_classes
        if y is None or not isinstance(num_classes, int) or isinstance(num_classes, bool):
            return
        from pyro_vae.data.batch import DataError, check_labels

        if y.numel() and not (y.is_floating_point() or y.dtype == torch.bool) and y.dim() == 1:
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= num_classes:
                raise DataError(
                    f"the data have labels {'from ' + str(low) + ' ' if low < 0 else ''}up to {high} but "
                    f"this model has {num_classes} classes (0..{num_classes - 1}): labels must lie in "
                    f"[0, {num_classes - 1}], the classes it was built for"
                )
        check_labels(y, num_classes)

    def check_shape(self, x) -> None:
        """Raise a ValueError unless ``x`` is a batch of data points of ``data_shape``."""
        if x is not None and tuple(x.shape[1:]) != tuple(self.data_shape):
            raise ValueError(
                f"this model expects data of shape (batch, {', '.join(map(str, self.data_shape))}) "
                f"but got {tuple(x.shape)}"
            )

    @placeholder
    def figure(self, name: str, data, path) -> Path:
        """Draw the family's own figure ``name`` (one listed in ``figures`` that is not generic)
        for test data ``data`` (a Batch) into ``path``."""
        raise NotImplementedError(f"{type(self).__name__} lists figure {name!r} but does not draw it")


class CodeFigures:
    """``decode`` and ``reconstruct`` for a family whose ``encode(x)`` gives ``(loc, scale)`` of the
    code its ``decoder`` reads, with a ``likelihood`` (the generic figures use them)."""

    @torch.no_grad()
    def decode(self, z):
        """E[x|z] (the likelihood's mean) for codes ``z (..., latent_dim)``."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x, sample_z: bool = False):
        """E[x|z] at z = the code's mean given x (or one draw of it when ``sample_z``)."""
        loc, scale = self.encode(x)
        return self.decode(loc + scale * torch.randn_like(scale) if sample_z else loc)


# ---------------------------------------------------------------------- checks
def _check_signatures(obj, name: str) -> None:
    """Each program in one of the two forms (:func:`pyro_vae.inference.scaling.program_form`): plain (no
    ``kl_weight``, no ``num_data``: training scales its sites) or explicit (both)."""
    for program, fn in (("model", obj.model), ("guide", obj.guide)):
        if program_form(fn) is None:
            raise ContractError(
                f"{name}.{program} takes one of kl_weight and num_data: take neither (the plain form, "
                f"def {program}(self, x{'=None' if program == 'model' else ''}); training scales the sites, "
                f"see docs/families.md) or both (def {program}(self, x=None, kl_weight=1.0, num_data=None), "
                f"scaling its own sites)"
            )


def check_family_class(cls) -> None:
    """Raise :class:`ContractError` naming what family class ``cls`` lacks to be built by name
    (``register_model`` runs it, so a plugin is refused when it is imported): the required core
    (:func:`pyro_vae.contract.check_core_class`), programs in one of the two forms, and the
    abilities that what it declares needs (:func:`pyro_vae.contract.check_abilities`)."""
    check_core_class(cls)
    _check_signatures(cls, cls.__name__)
    check_abilities(cls)


def check_family(module) -> None:
    """Raise :class:`ContractError` naming what ``module`` lacks to be trained and evaluated: the
    required core, programs in one of the two forms, parameters to train, and the abilities that
    what it declares needs."""
    check_core(module)
    _check_signatures(module, type(module).__name__)
    if not any(p.requires_grad for p in module.parameters()):
        raise ContractError(
            f"{type(module).__name__} has no parameters to train: make its networks submodules (self.encoder = "
            f"MLPEncoder(...)) or its weights nn.Parameter attributes (a pyro.param outside the module is not "
            f"trained or saved)"
        )
    check_abilities(module)


def option(default, help: str = "", choices=None, min=None, only_with: dict | None = None):
    """A field of a family's ``Config`` with its ``--help`` text, and optionally the allowed
    ``choices``, the smallest value ``min``, and ``only_with``: the values other options must have
    for this one to do anything (``{"noise": ("mask", "gaussian")}``; the CLI refuses the flag
    otherwise). Mutable defaults are copied."""
    meta = {
        "help": help,
        **({"choices": tuple(choices)} if choices else {}),
        **({"min": min} if min is not None else {}),
        **({"only_with": {k: tuple(v) for k, v in only_with.items()}} if only_with else {}),
    }
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def config_fields(config_cls) -> list:
    """The dataclass fields of a family's ``Config`` (for the CLI and for checking options)."""
    return list(dataclasses.fields(config_cls)) if dataclasses.is_dataclass(config_cls) else []


# ---------------------------------------------------------------------- typed options
def _default_of(f: dataclasses.Field):
    """A dataclass field's default value (a fresh one from its factory; None without one)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _field_types(config_cls) -> dict:
    """``{field: annotation}`` of a Config dataclass (resolved; a field whose annotation does not
    resolve is left out and checked by its default's type)."""
    try:
        return typing.get_type_hints(config_cls)
    except Exception:  # a plugin's forward reference that does not resolve: fall back per field
        return {}


def _expected(hint, default):
    """``(kind, element type, may be None)`` that an option must have: kind one of bool, int, float,
    str, tuple, dict (or None: not checked), from its annotation, else from its default's type."""
    if hint is None:  # no annotation that resolves: the default's type, if it has one
        if default is None:
            return None, None, True
        hint = type(default)
    optional = False
    if typing.get_origin(hint) in (typing.Union, getattr(types, "UnionType", None)):  # X | None
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else None
    origin = typing.get_origin(hint) or hint
    if origin in (tuple, list):
        elems = [a for a in typing.get_args(hint) if a is not Ellipsis]
        elem = elems[0] if elems and all(e is elems[0] for e in elems) else None
        if elem is None and isinstance(default, (tuple, list)) and default:
            kinds = {type(v) for v in default}
            elem = kinds.pop() if len(kinds) == 1 else None
        return tuple, elem, optional
    if origin in (bool, int, float, str, dict):
        return origin, None, optional
    return None, None, optional


PLURALS = {bool: "true/false values", int: "integers", float: "finite numbers", str: "strings"}


def _type_name(kind, elem) -> str:
    if kind is tuple:
        return f"a list of {PLURALS[elem]}" if elem in PLURALS else "a list"
    return "a dict of options" if kind is dict else SCALARS[kind]


def check_options(config_cls, options: dict) -> dict:
    """``options`` (a family's options from flags, a ``--config`` file or a checkpoint) checked
    against the types of ``config_cls``'s fields (its annotations, else its defaults' types): an
    integer option takes an integer (not 2.5, not true), a float one a finite number, a tuple one
    a list or tuple of its element type, a str one a string, a bool one true or false. Returns
    them with lists made tuples; raises a ValueError naming the option, the value and the type."""
    hints = _field_types(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    out = {}
    for name, value in options.items():
        f = fields.get(name)
        if f is None:  # unknown names: from_dict refuses them with the list of known ones
            out[name] = value
            continue
        kind, elem, optional = _expected(hints.get(name), _default_of(f))
        if kind is None or (value is None and optional):
            out[name] = value
            continue
        bad = False
        if kind is tuple:
            bad = not isinstance(value, (tuple, list)) or any(scalar_problem(v, elem) for v in value)
            value = tuple(value) if not bad else value
        elif kind is dict:
            bad = not isinstance(value, dict) or not all(isinstance(k, str) for k in value)
        else:
            bad = scalar_problem(value, kind) is not None
        if bad:
            raise ValueError(
                f"option {name} must be {_type_name(kind, elem)}, got {value!r}"
                + (f" ({type(value).__name__})" if not isinstance(value, (list, tuple, dict)) else "")
            )
        out[name] = float(value) if kind is float else value
    return out


# ---------------------------------------------------------------------- sizes before allocating
PLAN_NUMBERS = 2**20  # a tensor of this many numbers (4 MB) or more is planned (a shape on the meta device), not made
MAX_MODULES = 5_000  # more submodules than this is a count typed by mistake (flow steps 10**9), not a network
_FACTORIES = {
    torch.empty,
    torch.zeros,
    torch.ones,
    torch.full,
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
    torch.arange,
    torch.linspace,
    torch.logspace,
    torch.eye,
    torch.empty_strided,
    torch.Tensor.new_empty,
    torch.Tensor.new_zeros,
    torch.Tensor.new_ones,
    torch.Tensor.new_full,
}


class TooLarge(ValueError):
    """A model (or a network) larger than the memory of this machine, refused before it is made."""


def _factory_numel(func, args, kwargs) -> int:
    """How many numbers a factory call (``torch.zeros(3, 4)``, ``torch.arange(n)``, ...) makes (0 when
    it cannot tell: such a call is made for real)."""
    try:
        if func in (torch.linspace, torch.logspace):
            return int(kwargs["steps"] if "steps" in kwargs else args[2])
        if func is torch.arange:
            nums = [float(a) for a in args[:3]] + [float(kwargs[k]) for k in ("start", "end", "step") if k in kwargs]
            start, end, step = (0.0, nums[0], 1.0) if len(nums) == 1 else (nums + [1.0])[:3]
            return max(0, math.ceil((end - start) / step))
        if func is torch.randperm:
            return int(args[0])
        if func is torch.eye:
            n = int(args[0])
            return n * (int(args[1]) if len(args) > 1 and isinstance(args[1], int) else n)
        if func in (torch.Tensor.new_empty, torch.Tensor.new_zeros, torch.Tensor.new_ones, torch.Tensor.new_full):
            args = args[1:]  # after self
        size = kwargs.get("size")
        if size is None:
            size = next((a for a in args if isinstance(a, (tuple, list, torch.Size))), None)
        if size is None:
            size = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
            if func is torch.randint:  # randint(low, high, size): the bounds are not the size
                return 0
        return math.prod(int(s) for s in size)
    except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError):
        return 0


def _tensors(obj):
    """The tensors among a call's arguments (nested in tuples, lists and dicts)."""
    if torch.is_tensor(obj):
        yield obj
    elif type(obj) in (tuple, list):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _meta(obj):
    """``obj`` with every tensor in it on the meta device."""
    if torch.is_tensor(obj):
        return obj if obj.device.type == "meta" else obj.to("meta")
    if type(obj) in (tuple, list):
        return type(obj)(_meta(o) for o in obj)
    return {k: _meta(v) for k, v in obj.items()} if isinstance(obj, dict) else obj


class _Planning(TorchFunctionMode):
    """Build modules without allocating their large tensors: a factory call of
    :data:`PLAN_NUMBERS` numbers or more makes a meta tensor (a shape without storage); smaller ones
    are made, so code that reads a small tensor's value (``.item()``) still runs; an operation
    that mixes the two runs on the meta device."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _FACTORIES and kwargs.get("device") is None and _factory_numel(func, args, kwargs) >= PLAN_NUMBERS:
            kwargs["device"] = "meta"
        elif any(t.device.type == "meta" for t in _tensors((args, kwargs))):
            args, kwargs = _meta(args), _meta(kwargs)
        return func(*args, **kwargs)


def available_memory() -> int:
    """Bytes of RAM available on this machine (``MemAvailable`` of /proc/meminfo, else the free
    memory that :func:`pyro_vae.devices.memory_budget` reads)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    from pyro_vae.devices import MEMORY_SHARE, memory_budget

    return int(memory_budget("cpu") / MEMORY_SHARE)


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}" if n < 10 else f"{n:.0f} {unit}"
        n /= 1000


def _too_large(numbers: int, size: int, memory: int, what: str, fix: str, least: bool = False) -> TooLarge:
    return TooLarge(
        f"{what} would have {'at least ' if least else ''}{numbers:.1e} parameters ({_bytes(size)} as "
        f"float32), more than this machine's memory ({_bytes(memory)} available): {fix}"
    )


def plan(build, what: str = "the model", fix: str = "use smaller sizes", memory: int | None = None):
    """Run ``build()`` (which makes an ``nn.Module``) without allocating its large tensors, and
    raise :class:`TooLarge` (a ValueError, one line) if its parameters and buffers would need more
    bytes than ``memory`` (default: :func:`available_memory`), or if it makes more than
    :data:`MAX_MODULES` modules. The random number generators are left as they were. A build that
    fails while planned (code that needs the values of a large tensor) is not judged: the real
    build shows its own error. Returns ``(numbers, bytes)`` or None when not judged."""
    from torch.nn.modules import module as nn_module

    memory = available_memory() if memory is None else memory
    count = {"bytes": 0, "modules": 0}

    def on_tensor(module, name, t):
        if t is not None:
            count["bytes"] += t.numel() * t.element_size()
            if count["bytes"] > memory:  # stop at once: a loop of 10**9 layers would run for hours
                raise _too_large(count["bytes"] // 4, count["bytes"], memory, what, fix, least=True)

    def on_module(module, name, sub):
        count["modules"] += 1
        if count["modules"] > MAX_MODULES:
            raise TooLarge(f"{what} would have more than {MAX_MODULES} layers and other modules: {fix}")

    hooks = [
        nn_module.register_module_parameter_registration_hook(on_tensor),
        nn_module.register_module_buffer_registration_hook(on_tensor),
        nn_module.register_module_module_registration_hook(on_module),
    ]
    try:
        with torch.random.fork_rng(devices=[]), pyro.validation_enabled(False), _Planning():
            module = build()
    except TooLarge:
        raise
    except Exception:  # noqa: BLE001 - not judged; the real build raises what is wrong
        return None
    finally:
        for h in hooks:
            h.remove()
    tensors = list(module.parameters()) + list(module.buffers()) if isinstance(module, nn.Module) else []
    numbers = sum(t.numel() for t in tensors)
    size = sum(t.numel() * t.element_size() for t in tensors)
    if size > memory:
        raise _too_large(numbers, size, memory, what, fix)
    return numbers, size


def _short(value) -> str:
    """A size option as the message shows it: a long tuple by its length."""
    if isinstance(value, (tuple, list)) and len(value) > 6:
        return f"({', '.join(map(str, value[:3]))}, ... {len(value)} entries)"
    return repr(value)


def size_fix(options, config_cls, num_classes=None) -> str:
    """How to make a model smaller: its size options (integers and tuples of them) above their
    defaults, and the number of classes of the data when it is large."""

    def sizes(v) -> list:
        values = v if isinstance(v, (tuple, list)) else (v,)
        return [x for x in values if isinstance(x, int) and not isinstance(x, bool)]

    grown = []
    for f in config_fields(config_cls):
        value, default = getattr(options, f.name, None), _default_of(f)
        if isinstance(value, dict):  # a component's options (prior_kwargs): its counts, as given
            given = {k: v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool) and v > 1}
            grown += [f"{f.name} {given!r}"] if given else []
            continue
        longer = isinstance(value, (tuple, list)) and len(value) > len(default or ())  # more layers
        if sizes(value) and (max(sizes(value)) > max(sizes(default) or [0]) or longer):
            grown.append(f"{f.name} {_short(value)} (default {default!r})")
    if num_classes is not None and num_classes > 1000:
        grown.append(f"{num_classes} classes (the data's largest label + 1)")
    return "use smaller sizes: " + ", ".join(grown) if grown else "use smaller hidden/latent sizes"


__all__ = [
    "Family",
    "CodeFigures",
    "ContractError",
    "check_family",
    "check_family_class",
    "check_options",
    "plan",
    "TooLarge",
    "data_plate",
    "batch_size_of",
    "GENERIC_FIGURES",
    "NoOptions",
    "config_fields",
    "option",
]

"""The model contract: what every family declares, and all that training, evaluation, figures,
report and CLI rely on.

A family is an ``nn.Module`` holding two Pyro programs over a batch of data points::

    model(*args, kl_weight=1.0, num_data=None)    # p(latents) p(x | latents)
    guide(*args, kl_weight=1.0, num_data=None)    # q(latents | x)

with ``args = family.args(batch)``. The rules:

* **Batch to arguments.** :meth:`Family.args` maps a :class:`~pyro_vae.data.Batch` (``x``, and
  optionally labels ``y`` with their ``labelled`` mask, a condition ``c``) to a tuple of
  *tensors*, the same length for every batch. Training calls
  ``objective.differentiable_loss(model, guide, *args, kl_weight, num_data=N)`` (``kl_weight``
  positional as a 0-d tensor, so JIT objectives compile once); the evaluator calls
  ``model(*args)`` on chunks of the batch. Neither looks inside the batch.
* **The data plate.** Every sample site sits inside ``pyro.plate(family.plate_name, B)`` over
  the batch (``"data"``; dim ``-1`` unless the family nests more plates: ``max_plate_nesting``
  says how deep). :func:`data_plate` opens it with the data-set scaling ``num_data / B``.
* **Scaling.** ``num_data`` (the training-set size) scales the batch up to the data set;
  ``kl_weight`` (beta, KL warm-up) scales the latent sites in *both* programs. ``None`` / 1.0
  give the plain per-batch ELBO, which is what the evaluator uses.
* **Sites.** ``latent_sites`` and ``observed_sites`` name them (the observed site is ``"x"`` for
  the data). A discrete latent to be summed out exactly is marked
  ``infer={"enumerate": "parallel"}`` in the guide; ``default_objective = "enum"`` then makes
  training use ``TraceEnum_ELBO`` and the evaluator sums it out exactly.
* **Prior draws.** ``model(None)`` (``x=None``) samples x from the prior predictive, Pyro's own
  convention, so ``pyro.infer.Predictive(family.model, num_samples=n)()`` draws images.
* **Terms outside the ELBO** (M2's classifier loss): :meth:`extra_loss`, added to the loss.
* **Schedules.** An optional ``on_epoch(epoch, epochs)`` is called at the start of every training
  epoch (also the first one of a resumed run): a schedule that is a function of the epoch, kept in
  a buffer so checkpoints hold it (the Gaussian-mixture VAE's relaxation temperature).
* **Point-mass guides.** ``point_estimate = True`` (the autoencoder) makes the evaluator report
  the ELBO, log p(x) and the inference gap as undefined, with ``undefined_note`` as the reason.
* **Measures and figures.** :meth:`metrics` adds family measures (test accuracy) to evaluation
  and validation; ``select_by`` names the validation measure that keeps the best checkpoint;
  ``figures`` lists what the plots may ask of the family: the generic ones use
  ``encode``/``decode``/``reconstruct``/``sample``, any other name is drawn by the family's
  own :meth:`figure`.
* **Configuration.** ``Config`` is a dataclass of the family's options (typed, with defaults);
  :meth:`from_config` builds the family from it and the data's shape (and number of classes).
  The CLI makes a flag of every field; checkpoints store the family's name and these options.

A family meeting this needs no change anywhere in the library: register it with
``@register_model("name")`` (or pass the instance to :func:`pyro_vae.fit` directly).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyro
import torch
from pyro import poutine
from torch import nn

GENERIC_FIGURES = ("reconstructions", "samples", "manifold", "latent_space", "interpolation")


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


class Family(nn.Module):
    """Base class of every model family; see the module docstring for the contract.

    Subclasses set ``data_shape`` and define ``model`` and ``guide``; the rest has defaults
    that fit a plain VAE (``args = (x,)``, no extra loss, no extra measures).
    """

    Config = NoOptions
    plate_name = "data"  # the plate over the data points (evaluation keeps one number per point)
    max_plate_nesting = 1
    latent_sites: tuple = ("z",)  # named in evaluation notes (KL of which latents)
    observed_sites: tuple = ("x",)  # named in evaluation notes (likelihood of what)
    default_objective = "trace"
    select_by = "elbo"  # validation measure that picks the best checkpoint (higher is better)
    figures: tuple = GENERIC_FIGURES
    figure_titles: dict = {}
    metric_notes: dict = {}  # {measure: what it is}, shown beside the family's measures in evaluation
    needs_labels = False  # True: training data must carry labels (y)
    conditional = False  # True: samples need a condition (``sample(n, condition=...)``)
    joint_prior = False  # True (with conditional): ``sample(n)`` also draws the condition (M2's class)
    point_estimate = False  # True: the guide is a point mass (an autoencoder): no ELBO, no log p(x)
    undefined_note = "undefined: the guide is a point mass"  # what evaluate says instead, for point_estimate

    data_shape: tuple = ()

    def __init__(self):
        super().__init__()
        self.pyro_name = f"{type(self).__name__.lower()}_{uuid.uuid4().hex[:12]}"

    # ------------------------------------------------------------ built from a config
    @classmethod
    def from_config(cls, config, data_shape, num_classes=None) -> "Family":
        raise NotImplementedError(f"{cls.__name__} cannot be built by name: define from_config")

    # ------------------------------------------------------------ the contract
    def args(self, batch) -> tuple:
        """The positional arguments of ``model`` and ``guide`` for ``batch``."""
        return (batch.x,)

    def model(self, x=None, kl_weight=1.0, num_data=None):
        raise NotImplementedError

    def guide(self, x, kl_weight=1.0, num_data=None):
        raise NotImplementedError

    def extra_loss(self, batch, num_data=None):
        """Loss terms outside the ELBO, on the same per-data-set scale (None: none). A family whose
        ``extra_loss`` also declares a ``kl_weight`` parameter receives the step's KL weight (a
        0-d tensor: beta times warm-up) as well."""
        return None

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
                f"but got {tuple(batch.x.shape)}")
        if self.needs_labels and batch.y is None:
            raise ValueError(f"{type(self).__name__} needs labelled data (y); this data set has none")

    def check_shape(self, x) -> None:
        """Raise a ValueError unless ``x`` is a batch of data points of ``data_shape``."""
        if x is not None and tuple(x.shape[1:]) != tuple(self.data_shape):
            raise ValueError(
                f"this model expects data of shape (batch, {', '.join(map(str, self.data_shape))}) "
                f"but got {tuple(x.shape)}")

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
class ContractError(TypeError):
    """A module that does not meet the model contract."""


def check_family(module) -> None:
    """Raise :class:`ContractError` naming what ``module`` lacks to be trained and evaluated."""
    missing = [name for name in ("model", "guide", "args") if not callable(getattr(module, name, None))]
    if not isinstance(module, nn.Module):
        missing.append("nn.Module base class (its parameters are the checkpoint)")
    if getattr(module, "data_shape", None) is None:
        missing.append("data_shape")
    if missing:
        raise ContractError(
            f"{type(module).__name__} does not meet the model contract: missing {', '.join(missing)}. "
            f"Subclass pyro_vae.models.Family and define model(*args, kl_weight=1.0, num_data=None), "
            f"guide(...) and, if the programs take more than x, args(batch); see docs/families.md")
    for name in ("model", "guide"):
        try:
            params = inspect.signature(getattr(module, name)).parameters
        except (TypeError, ValueError):
            continue
        if not {"kl_weight", "num_data"} <= set(params) and not any(
                p.kind == p.VAR_KEYWORD for p in params.values()):
            raise ContractError(
                f"{type(module).__name__}.{name} must accept kl_weight and num_data (the KL weight and "
                f"the data-set size that training passes), e.g. def {name}(self, x=None, kl_weight=1.0, "
                f"num_data=None)")


def option(default, help: str = "", choices=None, min=None):
    """A field of a family's ``Config`` with its ``--help`` text, and optionally the allowed
    ``choices`` or the smallest value ``min`` (mutable defaults are copied)."""
    meta = {"help": help, **({"choices": tuple(choices)} if choices else {}),
            **({"min": min} if min is not None else {})}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def config_fields(config_cls) -> list:
    """The dataclass fields of a family's ``Config`` (for the CLI and for checking options)."""
    return list(dataclasses.fields(config_cls)) if dataclasses.is_dataclass(config_cls) else []


__all__ = ["Family", "CodeFigures", "ContractError", "check_family", "data_plate", "batch_size_of", "GENERIC_FIGURES",
           "NoOptions", "config_fields", "option"]

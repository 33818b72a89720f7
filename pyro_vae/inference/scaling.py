"""Training's weights on a family's sites, applied from outside by one effect handler.

A family may write its programs as Pyro's VAE tutorial does (the *plain form*)::

    def model(self, x=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0, 1).expand([x.shape[0], d]).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(*self.encoder(x)).to_event(1))

Training then runs both programs inside :class:`ScaleSites` ``(kl_weight=w, num_data=N)``, which
multiplies each sample site's ``scale`` (what Pyro's objectives multiply its log-density by):

=============================================  =================  ==========
site                                           in the data plate  outside it
=============================================  =================  ==========
latent (``is_observed`` False), both programs  ``N/B * w``        ``w``
observed (``obs=``, ``pyro.factor``)           ``N/B``            1
=============================================  =================  ==========

* the **data plate** is the plate named ``family.plate_name`` (``"data"``), B its size (the
  batch); ``num_data=None`` leaves out ``N/B`` (the per-batch ELBO);
* **latent** means not observed: the sites the guide draws and the model scores at the guide's
  value, discrete ones marked ``infer={"enumerate": ...}`` included; a site split by ``obs_mask``
  has a latent part (``name_unobserved``) and an observed one (``name_observed``);
* ``w`` is the step's **KL weight**, beta times the warm-up ramp (:func:`pyro_vae.training.schedules.kl_weight_at`);
  a family whose ``kl_sites`` names sites (a tuple of names, default ``None``: every latent
  site) gets ``w`` on exactly those sites, observed or not, and on no other;
* the plate's bookkeeping site (``_Subsample``) and ``param`` sites are left alone; a scale the
  family or Pyro applies itself (``poutine.scale``, a subsampled plate) multiplies with these.

So a batch's loss estimates, per data set,

    -ELBO_w = -sum_n ( E_q[log p(x_n | z)] - w KL(q(z | x_n) || p(z)) )
            ~= -(N/B) sum_b ( log p(x_b | z_b) + w log p(z_b) - w log q(z_b | x_b) ),   z_b ~ q(z | x_b),

the same numbers as a family in the *explicit form* (``model(x, kl_weight, num_data)`` opening
``data_plate(B, num_data)`` and ``poutine.scale(scale=kl_weight)`` around its latents), which
training still accepts and calls as before. (Up to one rounding: Pyro's plate multiplies a
site's scale by B/B after the handlers *inside* it, so the explicit form's ``N/B * w`` is
rounded once more as ``(N/B * w * B) / B``, exact when B is a power of two; this handler sits
outside the plate.) Free bits (:class:`~pyro_vae.inference.importance.FreeBitsELBO`)
read the KL weight back from the latent sites' scale (``scale / (N/B)``) and so work on both forms.

:class:`Scaled` presents a family's programs in the explicit signature, the plain ones run under
:class:`ScaleSites`, so every objective and :class:`~pyro_vae.inference.objectives.Loss` call either form
alike; ``train_model``/``train_guide`` take the KL weight as the last *positional* argument, as
training passes it (a 0-d tensor), so the compiled objectives keep it a graph input rather than
a constant frozen into the graph, and compile once for every weight.
"""

from __future__ import annotations

import inspect
import weakref

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from pyro.poutine.util import is_validation_enabled
from torch import nn

from pyro_vae.contract import traits

PLAIN, EXPLICIT = "plain", "explicit"
WEIGHTS = ("kl_weight", "num_data")


def program_form(program) -> str | None:
    """``"plain"`` when ``program`` takes neither ``kl_weight`` nor ``num_data`` (training scales its
    sites with :class:`ScaleSites`), ``"explicit"`` when it takes both (or ``**kwargs``: it is
    passed them and scales its sites itself), None when it takes one without the other (a
    mistake). A program whose signature cannot be read counts as explicit (what training did
    before the plain form)."""
    try:
        params = inspect.signature(program).parameters
    except (TypeError, ValueError):
        return EXPLICIT
    named = [w for w in WEIGHTS if w in params]
    if len(named) == len(WEIGHTS) or any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return EXPLICIT
    return PLAIN if not named else None


def _check_weight(kl_weight):
    """The check ``poutine.scale`` makes of its scale: positive (a tensor only while Pyro's
    validation is on, as reading it costs a device sync)."""
    if torch.is_tensor(kl_weight):
        if is_validation_enabled() and not bool((kl_weight > 0).all()):
            raise ValueError(f"the KL weight must be > 0, got {kl_weight}")
    elif not kl_weight > 0:
        raise ValueError(f"the KL weight must be > 0, got {kl_weight!r}")
    return kl_weight


class ScaleSites(Messenger):
    """Multiply the ``scale`` of every latent sample site by ``kl_weight`` and of every sample
    site inside the plate ``plate_name`` by ``num_data / B`` (B: that plate's size); see the
    module docstring for the table. ``kl_sites``: the names that get ``kl_weight`` instead of
    every latent site. Used as a context manager around a program, or as ``ScaleSites(...)(fn)``.

    The factors multiply the scale the site already has (from the family's own handlers and its
    plate) in this order: ``(num_data / B) * (kl_weight * scale)``."""

    def __init__(self, kl_weight=1.0, num_data=None, plate_name: str = "data", kl_sites=None):
        super().__init__()
        self.kl_weight = _check_weight(kl_weight)
        self.num_data = None if num_data is None else float(num_data)
        self.plate_name = plate_name
        self.kl_sites = None if kl_sites is None else frozenset(kl_sites)

    def _weighted(self, msg) -> bool:
        if self.kl_sites is not None:
            return msg["name"] in self.kl_sites
        return not msg["is_observed"]

    def _process_message(self, msg) -> None:
        if msg["type"] != "sample" or isinstance(msg["fn"], _Subsample):
            return
        scale = msg["scale"]
        if self._weighted(msg) and not (isinstance(self.kl_weight, float) and self.kl_weight == 1.0):
            # scale is Pyro's 1.0 unless the family scaled the site itself: kl_weight * 1.0 == kl_weight
            scale = self.kl_weight if isinstance(scale, float) and scale == 1.0 else self.kl_weight * scale
        if self.num_data is not None:
            for frame in msg["cond_indep_stack"]:
                if frame.name == self.plate_name:
                    scale = (self.num_data / frame.size) * scale
                    break
        msg["scale"] = scale


def scaled(program, kl_weight=1.0, num_data=None, plate_name: str = "data", kl_sites=None):
    """``program`` (a plain-form model or guide) run under :class:`ScaleSites`."""
    return ScaleSites(kl_weight, num_data, plate_name, kl_sites)(program)


class Scaled(nn.Module):
    """A family's model and guide in the explicit signature, whatever form each is written in: ::

        model(*args, kl_weight=1.0, num_data=None)        guide(*args, kl_weight=1.0, num_data=None)

    A plain-form program runs under :class:`ScaleSites` (the family's ``plate_name`` and
    ``kl_sites``); an explicit-form one is passed the two weights. ``train_model(*args, kl_weight,
    num_data=None)`` and ``train_guide`` take the KL weight positionally, after the family's
    arguments: what :class:`~pyro_vae.inference.objectives.Loss` hands the objectives.

    The family is a submodule (the compiled objective's lean graph reads its parameters), and
    ``training`` is the family's own mode. The forms are read once, here."""

    def __init__(self, family: nn.Module):
        super().__init__()
        self.family = family
        self.forms = {"model": program_form(family.model), "guide": program_form(family.guide)}
        bad = [name for name, form in self.forms.items() if form is None]
        if bad:
            raise TypeError(
                f"{type(family).__name__}.{bad[0]} takes one of kl_weight and num_data: take both "
                f"(the explicit form) or neither (the plain form; training scales the sites)"
            )
        t = traits(family)
        self.plate_name, self.kl_sites, self.max_plate_nesting = t.plate_name, t.kl_sites, t.max_plate_nesting
        self._model, self._guide = family.model, family.guide  # bound once

    @property
    def training(self) -> bool:
        return self.family.training if "family" in self._modules else True

    @training.setter
    def training(self, mode: bool) -> None:  # the family's mode is the one that counts (train()/eval() reach it)
        pass

    @classmethod
    def of(cls, family: nn.Module) -> "Scaled":
        """The one ``Scaled`` of ``family`` while any is in use (so the graphs a compiled
        objective keeps for these programs serve every :class:`~pyro_vae.inference.objectives.Loss` built
        on the family, as they do for an explicit-form family's own methods)."""
        scaled = _SCALED.get(id(family))
        if scaled is None or scaled.family is not family:
            scaled = _SCALED[id(family)] = cls(family)
        return scaled

    def _run(self, name, program, args, kl_weight, num_data):
        if self.forms[name] == EXPLICIT:
            return program(*args, kl_weight=kl_weight, num_data=num_data)
        with ScaleSites(kl_weight, num_data, self.plate_name, self.kl_sites):
            return program(*args)

    def model(self, *args, kl_weight=1.0, num_data=None):
        return self._run("model", self._model, args, kl_weight, num_data)

    def guide(self, *args, kl_weight=1.0, num_data=None):
        return self._run("guide", self._guide, args, kl_weight, num_data)

    def train_model(self, *args_and_kl_weight, num_data=None):
        *args, kl_weight = args_and_kl_weight
        return self._run("model", self._model, args, kl_weight, num_data)

    def train_guide(self, *args_and_kl_weight, num_data=None):
        *args, kl_weight = args_and_kl_weight
        return self._run("guide", self._guide, args, kl_weight, num_data)


# id(family) -> its Scaled, kept while the Scaled lives (it holds the family, so the id is the family's)
_SCALED: "weakref.WeakValueDictionary[int, Scaled]" = weakref.WeakValueDictionary()


def uses_handlers(family) -> bool:
    """Whether training applies the weights to ``family`` from outside (a program in the plain
    form), rather than passing them to its programs (both in the explicit form)."""
    return any(program_form(program) != EXPLICIT for program in (family.model, family.guide))


__all__ = ["ScaleSites", "Scaled", "scaled", "program_form", "uses_handlers", "PLAIN", "EXPLICIT"]

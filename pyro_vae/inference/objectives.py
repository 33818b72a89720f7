"""Training objectives: any object with Pyro's ``differentiable_loss(model, guide, *args, **kwargs)``.

By name (config and CLI ``--objective``), each built for the family it trains::

    trace          Trace_ELBO                 (Monte Carlo ELBO; the default of a VAE)
    meanfield      TraceMeanField_ELBO        (analytic KL where it is known)
    graph          TraceGraph_ELBO            (score-function terms with Rao-Blackwellization)
    enum           TraceEnum_ELBO             (discrete latents marked "enumerate" summed out exactly)
    jit, jit_meanfield, jit_graph, jit_enum   (the JIT-compiled versions; ``jit`` is
                                               :class:`~pyro_vae.inference.jit.JitTraceELBO`)
    renyi          RenyiELBO(alpha=0.5)       (the Renyi bound of each data point, scaled to the data
                                               set outside the log-mean-exp: see :class:`ScaledOutside`)
    iwae           IWAE                       (the per-data-point importance-weighted bound, K =
                                               num_particles; pyro_vae.inference.importance)
    iwae_dreg      IWAE(estimator="dreg")     (the same bound, doubly-reparameterized gradient)
    stl            StickingTheLanding         (the ELBO with the sticking-the-landing gradient)

``TrainConfig.free_bits`` > 0 trains the ELBO with free bits (:class:`~pyro_vae.inference.importance.FreeBitsELBO`).

``max_plate_nesting`` is taken from the family (:func:`pyro_vae.contract.traits`), particles are
vectorized. Pyro objectives that offer only ``loss_and_grads`` (``TraceGraph_ELBO``, ``RenyiELBO``) are wrapped by
:class:`FromLossAndGrads`, so every objective is used the same way. A user's own objective is
either an object passed to ``fit(..., objective=obj)`` or a factory registered by name (then
``TrainConfig(objective="my_bound")`` and ``--objective my_bound`` find it)::

    @register_objective("my_bound")
    def my_bound(family, num_particles):
        return MyBound(num_particles)          # has differentiable_loss(model, guide, *args, **kw)

:class:`Loss` turns a family and an objective into the ``nn.Module`` that training steps (and
``DistributedDataParallel`` wraps): ELBO term plus the family's ``extra_loss`` where it has one
(:class:`~pyro_vae.contract.ExtraLoss`).
"""

from __future__ import annotations

import inspect

import torch
from pyro import infer
from torch import nn

from pyro_vae.contract import ExtraLoss, has, traits
from pyro_vae.inference.importance import IWAE, FreeBitsELBO, StickingTheLanding
from pyro_vae.inference.jit import JitTraceELBO, compiled_count, compiles
from pyro_vae.inference.scaling import Scaled, uses_handlers
from pyro_vae.registry import Registry

OBJECTIVES = Registry("objective")
register_objective = OBJECTIVES.register  # @register_objective("name") on fn(family, num_particles)


def _pyro_elbo(cls, **fixed):
    def factory(family, num_particles: int = 1):
        kwargs = dict(
            num_particles=num_particles,
            vectorize_particles=num_particles > 1,
            max_plate_nesting=traits(family).max_plate_nesting,
            **fixed,
        )
        if cls.__name__.startswith("Jit"):
            kwargs["ignore_jit_warnings"] = True
        return cls(**kwargs)

    factory.__doc__ = f"pyro.infer.{cls.__name__}"
    return factory


for _name, _cls, _fixed in [
    ("trace", infer.Trace_ELBO, {}),
    ("meanfield", infer.TraceMeanField_ELBO, {}),
    ("graph", infer.TraceGraph_ELBO, {}),
    ("enum", infer.TraceEnum_ELBO, {}),
    ("jit", JitTraceELBO, {}),
    ("jit_meanfield", infer.JitTraceMeanField_ELBO, {}),
    ("jit_graph", infer.JitTraceGraph_ELBO, {}),
    ("jit_enum", infer.JitTraceEnum_ELBO, {}),
]:
    register_objective(_name)(_pyro_elbo(_cls, **_fixed))


class ScaledOutside:
    """An objective run on the plain batch, its loss then scaled by ``num_data / B``.

    Pyro's ``RenyiELBO`` (1.9) applies the plate's scale ``N/B`` to the log-weights *inside* its
    log-mean-exp: ``sum_b log mean_k exp((N/B) log w_bk)``, the bound of order ``1 - (1-alpha) N/B``
    (below 0: not a bound on log p(x) at all). Scaled outside, the loss is
    ``(N/B) sum_b L_alpha(x_b)``, the Renyi bound of order ``alpha`` of the data set, estimated
    from the batch (docs/beyond.md, section 2)."""

    def __init__(self, objective):
        self.objective = objective

    def __getattr__(self, name):  # num_particles, max_plate_nesting, ... of the wrapped objective
        return getattr(self.__dict__["objective"], name)

    def differentiable_loss(self, model, guide, *args, num_data=None, **kwargs):
        loss = self.objective.differentiable_loss(model, guide, *args, **kwargs)
        return loss if num_data is None else loss * (float(num_data) / args[0].shape[0])


@register_objective("renyi")
def renyi(family, num_particles: int = 1):
    """pyro.infer.RenyiELBO(alpha=0.5), data-set scaling outside the log-mean-exp"""
    return ScaledOutside(FromLossAndGrads(_pyro_elbo(infer.RenyiELBO, alpha=0.5)(family, num_particles), family))


def _importance(cls, **fixed):
    def factory(family, num_particles: int = 1):
        return cls(num_particles=num_particles, max_plate_nesting=traits(family).max_plate_nesting, **fixed)

    factory.__doc__ = f"pyro_vae.inference.importance.{cls.__name__}"
    return factory


register_objective("iwae")(_importance(IWAE))
register_objective("iwae_dreg")(_importance(IWAE, estimator="dreg"))
register_objective("stl")(_importance(StickingTheLanding))

FREE_BITS_BASES = ("auto", "trace", "meanfield", "jit", "jit_meanfield")  # the ELBOs free bits replaces


class FromLossAndGrads:
    """``differentiable_loss`` for an objective that offers only ``loss_and_grads`` (Pyro's
    ``TraceGraph_ELBO``, ``RenyiELBO``): it runs ``loss_and_grads``, takes the gradients it left
    on the family's parameters, and returns the loss value with those gradients attached
    (``loss + sum_p <p, g_p> - sum_p <p, g_p>.detach()``), so ``backward()`` and the optimizer
    treat it like any other loss. (Its inner backward pass does not combine with
    ``DistributedDataParallel``; use an objective with ``differentiable_loss`` there.)"""

    def __init__(self, objective, family):
        self.objective, self.family = objective, family

    def __getattr__(self, name):  # num_particles, max_plate_nesting, ... of the wrapped objective
        return getattr(self.__dict__["objective"], name)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        params = [p for p in self.family.parameters() if p.requires_grad]
        saved = [p.grad for p in params]
        for p in params:
            p.grad = None
        loss = torch.as_tensor(self.objective.loss_and_grads(model, guide, *args, **kwargs))
        surrogate = sum((p * p.grad).sum() for p in params if p.grad is not None)
        for p, g in zip(params, saved):
            p.grad = g
        surrogate = torch.as_tensor(surrogate, dtype=loss.dtype, device=loss.device)
        return loss.to(surrogate.device) + surrogate - surrogate.detach()


def make_objective(spec, family, num_particles: int = 1, free_bits: float = 0.0):
    """An objective object from a registered name, ``"auto"`` (the family's
    ``default_objective``), or an object with ``differentiable_loss`` (returned as is) or only
    ``loss_and_grads`` (wrapped in :class:`FromLossAndGrads`). ``free_bits`` > 0 (nats per latent
    dimension) replaces a plain ELBO (``auto``, ``trace``, ``meanfield`` and their JIT versions) by
    :class:`~pyro_vae.inference.importance.FreeBitsELBO`."""
    if free_bits:
        if not (isinstance(spec, str) and spec in FREE_BITS_BASES):
            given = f"objective={spec!r}" if isinstance(spec, str) else f"the objective {spec!r}"
            raise ValueError(
                f"free bits (free_bits={free_bits}) replace the plain ELBO objective ("
                f"{', '.join(FREE_BITS_BASES)}); they do not combine with {given}"
            )
        t = traits(family)
        if spec == "auto" and t.default_objective not in FREE_BITS_BASES:
            raise ValueError(
                f"free bits replace the plain ELBO, but {type(family).__name__} trains with "
                f"{t.default_objective!r} (discrete latents summed out or score-function "
                f"gradients); free bits do not apply to it"
            )
        return FreeBitsELBO(free_bits, num_particles, max_plate_nesting=t.max_plate_nesting)
    if not hasattr(spec, "differentiable_loss") and not hasattr(spec, "loss_and_grads"):
        if not isinstance(spec, str):
            raise ValueError(
                f"an objective is a registered name ({', '.join(sorted(OBJECTIVES))}) or an "
                f"object with differentiable_loss(model, guide, *args, **kwargs); got {spec!r}"
            )
        name = spec
        if name == "auto":
            name = traits(family).default_objective
        if name not in OBJECTIVES:
            raise ValueError(f"unknown objective {spec!r}; known objectives: auto, {', '.join(sorted(OBJECTIVES))}")
        spec = OBJECTIVES[name](family, num_particles)
    if type(spec) is infer.JitTrace_ELBO:  # Pyro's own: doubled gradients (see JitTraceELBO)
        fixed = JitTraceELBO.__new__(JitTraceELBO)
        fixed.__dict__.update(spec.__dict__)
        spec = fixed
    if not hasattr(spec, "differentiable_loss"):
        spec = FromLossAndGrads(spec, family)
    return spec


def _inner(objective):
    return objective.__dict__.get("objective", objective) if isinstance(objective, FromLossAndGrads) else objective


def _compiles(objective) -> bool:
    """Whether ``objective`` (or the one it wraps) compiles (:func:`pyro_vae.inference.jit.compiles`)."""
    return compiles(_inner(objective))


def _compiled_count(objective) -> int:
    """How many graphs ``objective`` (or the one it wraps) has compiled so far."""
    return compiled_count(_inner(objective))


def _rng_snapshot():
    return torch.get_rng_state(), (torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def _rng_restore(state):
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


PRECISIONS = ("fp32", "bf16")


class Loss(nn.Module):
    """-ELBO (plus the family's extra loss) of a batch, as a differentiable ``nn.Module``.

    ``forward(batch, kl_weight, num_data)`` returns the loss on the data-set scale (the batch
    scaled by ``num_data / B``); divide by ``num_data`` for nats per data point. A family in the
    explicit form gets both weights as arguments of its programs; one in the plain form
    (``model(x)``, ``guide(x)``) gets them on its sites by :class:`~pyro_vae.inference.scaling.ScaleSites`
    (``plain`` is True, ``programs`` the :class:`~pyro_vae.inference.scaling.Scaled` programs). Wrap it in
    ``DistributedDataParallel`` for multi-GPU training: its parameters are the family's.
    ``precision="bf16"`` runs the programs under bfloat16 autocast (the library's networks hand
    float32 outputs to the distributions). A JIT objective's compile is made neutral to the
    random stream (the step is recomputed from the state before it), so resuming stays exact.
    """

    def __init__(self, family: nn.Module, objective=None, precision: str = "fp32"):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.family, self.precision = family, precision
        self.objective = make_objective("auto" if objective is None else objective, family)
        # Bind once: the JIT objectives key their compiled graph on id(model), and every
        # ``family.model`` access makes a new bound-method object (a retrace per step).
        self._model, self._guide = family.model, family.guide
        self.plain = uses_handlers(family)  # the form is read once, here, not every step
        if self.plain:
            # a program in the plain form (model(x), guide(x)) runs under ScaleSites: the KL weight (a
            # positional 0-d tensor, a graph input of the compiled objectives) and N/B put on its sites
            # from outside. Not a submodule: the family's parameters stay the Loss's once.
            object.__setattr__(self, "programs", Scaled.of(family))
            self._model, self._guide = self.programs.train_model, self.programs.train_guide
        else:
            self.programs = None
        self._compiles = _compiles(self.objective)  # checked once, not every step
        # an extra_loss that takes kl_weight gets it (a term that must follow warm-up and beta)
        self._extra = has(family, ExtraLoss)
        self._extra_kw = self._extra and "kl_weight" in inspect.signature(family.extra_loss).parameters

    def forward(self, batch, kl_weight, num_data=None):
        if not torch.is_tensor(kl_weight):
            kl_weight = torch.tensor(float(kl_weight), device=batch.x.device)
        args = self.family.args(batch)
        if self.precision == "bf16":
            # networks in bfloat16 (their outputs come back in float32: networks.full_precision), the
            # distributions, log-densities and the loss sum in float32
            with torch.autocast(device_type=batch.x.device.type, dtype=torch.bfloat16, cache_enabled=False):
                return self._loss(batch, args, kl_weight, num_data)
        return self._loss(batch, args, kl_weight, num_data)

    def _loss(self, batch, args, kl_weight, num_data):
        rng = _rng_snapshot() if self._compiles else None
        before = _compiled_count(self.objective) if rng is not None else 0
        loss = self.objective.differentiable_loss(self._model, self._guide, *args, kl_weight, num_data=num_data)
        if rng is not None and _compiled_count(self.objective) > before:
            # A JIT objective just compiled (tracing runs the programs, drawing random numbers): run
            # the step again from the same random state, so a compile never shifts the random stream
            # and a resumed run (which compiles at another step) draws what an uninterrupted one does.
            _rng_restore(rng)
            loss = self.objective.differentiable_loss(self._model, self._guide, *args, kl_weight, num_data=num_data)
        if not self._extra:
            return loss
        if self._extra_kw:
            extra = self.family.extra_loss(batch, num_data=num_data, kl_weight=kl_weight)
        else:
            extra = self.family.extra_loss(batch, num_data=num_data)
        return loss if extra is None else loss + extra


__all__ = ["OBJECTIVES", "register_objective", "make_objective", "FromLossAndGrads", "Loss"]

"""Objectives that work on the log importance weights of each data point, for any family of the
contract (every site inside the data plate, reparameterized latents).

For a batch of B data points and K particles z_k ~ q(z | x_b), drawn in one vectorized pass
(a particle plate outside every plate of the family), the log weights are

    log w_kb = log p(x_b, z_kb) - log q(z_kb | x_b),                  shape (K, B).

* :class:`IWAE` (Burda et al. 2016): per data point,

      L_K(x_b) = log (1/K) sum_k w_kb,      loss = -(N/B) sum_b L_K(x_b),

  the importance-weighted bound of *each* x_b. (Pyro's ``RenyiELBO(alpha=0)``, pyro-ppl 1.3 to
  1.9.2, log-mean-exps each element of the plates that every model site shares: on a family of
  this contract and without ``num_data`` it gives this value and gradient for the same draws. It
  is the bound of the batch's joint weight, log mean_k prod_b w_kb, only once a site is outside the
  data plate (which IWAE refuses), and it puts the scale N/B inside the log-mean-exp,
  sum_b log mean_k w_kb^(N/B). See docs/beyond.md, section 2.)
  ``estimator="dreg"`` gives the doubly-reparameterized gradient of Tucker et al. (2018): the
  model's parameters get the usual sum_k w~_k grad log w_k (w~ the normalised weights), the
  guide's get sum_k w~_k^2 (d log w_k / d z_k)(d z_k / d phi) with log q evaluated at stopped
  parameters, an unbiased estimate of the same gradient with a variance that does not grow as
  K does.
* :class:`StickingTheLanding` (Roeder et al. 2017): the ELBO (mean over the K particles), whose
  guide gradient drops the score term d log q / d phi (zero in expectation): log q is evaluated
  with stopped guide parameters, so the guide learns through the path z(phi) alone.
* :class:`FreeBitsELBO` (Kingma et al. 2016): the ELBO with each latent dimension's KL, averaged
  over the batch, held at no less than ``free_bits`` nats: below it the dimension's KL has no
  gradient, so the optimiser cannot shut a unit down for a small saving.

``kl_weight`` (beta, warm-up) scales the latent sites' log-densities inside each weight (a
beta-weighted bound), and the data-set scaling N/B multiplies the bound outside the log-mean-exp,
as the contract's :func:`~pyro_vae.models.base.data_plate` puts it on the sites.
"""

from __future__ import annotations

import math
import warnings

import pyro
import torch
from pyro import poutine
from torch import nn
from torch.distributions import Independent, kl_divergence

from pyro_vae.contract import traits
from pyro_vae.inference.marginal import is_scored, site_log_prob

PARTICLES = "_iw_particles"
ESTIMATORS = ("plain", "dreg")


def _vectorized(fn, num_particles: int, dim: int):
    def wrapped(*args, **kwargs):
        with pyro.plate(PARTICLES, num_particles, dim=dim):
            return fn(*args, **kwargs)

    return wrapped


def _data_frame(trace, data_plate: str):
    for site in trace.nodes.values():
        if is_scored(site):
            for frame in site["cond_indep_stack"]:
                if frame.name == data_plate:
                    return frame
    raise ValueError(
        f"no site of the model is inside a plate named {data_plate!r}; an importance-weighted "
        f"objective needs every site inside the plate over the data points"
    )


def _check_sites(model_trace, guide_trace, data_plate: str, what: str) -> None:
    for tr in (model_trace, guide_trace):
        for name, site in tr.nodes.items():
            if not is_scored(site):
                continue
            if not any(f.name == data_plate for f in site["cond_indep_stack"]):
                raise ValueError(
                    f"{what}: site {name!r} is outside the {data_plate!r} plate; every site must be "
                    f"inside the plate over the data points"
                )
            if tr is guide_trace and site["infer"].get("enumerate") is not None:
                raise ValueError(
                    f"{what}: the guide enumerates site {name!r}; sum discrete latents out with "
                    f"the enum objective (TraceEnum_ELBO), or relax them"
                )
            if tr is guide_trace and not site["is_observed"] and not site["fn"].has_rsample:
                raise ValueError(
                    f"{what} needs reparameterized latents, but the guide's site {name!r} "
                    f"({type(site['fn']).__name__}) has no rsample"
                )


def _owner(guide, what: str) -> nn.Module:
    module = getattr(guide, "__self__", None)
    if not isinstance(module, nn.Module):
        raise ValueError(
            f"{what} evaluates log q with the guide's parameters stopped, so the guide must be a "
            f"method of an nn.Module holding them (a family's guide); got {guide!r}"
        )
    return module


class _Call(nn.Module):
    """Calls ``function(module, ...)`` (a method's function on its module) as its forward, so
    ``torch.func.functional_call`` can run a family's guide with other parameter tensors."""

    def __init__(self, module: nn.Module, function):
        super().__init__()
        self.module, self.function = module, function

    def forward(self, *args, **kwargs):
        return self.function(self.module, *args, **kwargs)


def _stopped(guide, what: str):
    """``guide`` run with every parameter of its module detached (values kept, no gradient)."""
    module = _owner(guide, what)
    call = _Call(module, guide.__func__)

    def stopped(*args, **kwargs):
        params = {f"module.{n}": p.detach() for n, p in module.named_parameters()}
        with warnings.catch_warnings():  # pyro.module: the detached stand-ins are not registered (nor meant to be)
            warnings.filterwarnings("ignore", message=".*was not registered in the param store", category=UserWarning)
            return torch.func.functional_call(call, params, args, kwargs, strict=False)

    return stopped


def _replayed_trace(trace, values: dict):
    """A copy of ``trace`` whose latent sites hold ``values`` (for ``poutine.replay``)."""
    new = trace.copy()
    for name, value in values.items():
        new.nodes[name] = dict(new.nodes[name], value=value)
    return new


class _Weights:
    """The traces and the log weights of one vectorized pass (see the module docstring)."""

    def __init__(
        self,
        model,
        guide,
        args,
        kwargs,
        num_particles: int,
        max_plate_nesting: int,
        data_plate: str,
        what: str,
        stop_guide: bool = False,
        hook_values: bool = False,
    ):
        self.particle_dim = -(max_plate_nesting + 1)
        vec = lambda fn: _vectorized(fn, num_particles, self.particle_dim)  # noqa: E731
        guide_trace = poutine.trace(vec(guide)).get_trace(*args, **kwargs)
        # filled once the weights are known; read by the hooks during backward. The hooks hold this
        # dict alone: a hook that held the traces (which hold the hooked tensors) would make a cycle
        # through autograd's C++ graph that Python's garbage collector cannot see, keeping every
        # step's graph alive.
        self.scaled_w = {}
        values = {}
        if hook_values:  # the model and log q see views of z whose incoming gradient is scaled by w~
            for name, site in guide_trace.nodes.items():
                if is_scored(site) and not site["is_observed"]:
                    view = site["value"].view_as(site["value"])
                    view.register_hook(_scale_by(self.scaled_w, site["fn"].event_dim))
                    values[name] = view
        replay_from = _replayed_trace(guide_trace, values) if values else guide_trace
        model_trace = poutine.trace(poutine.replay(vec(model), trace=replay_from)).get_trace(*args, **kwargs)
        _check_sites(model_trace, guide_trace, data_plate, what)
        q_trace = guide_trace
        if stop_guide:
            q_trace = poutine.trace(poutine.replay(vec(_stopped(guide, what)), trace=replay_from)).get_trace(
                *args, **kwargs
            )
        frame = _data_frame(model_trace, data_plate)
        num_data = kwargs.get("num_data")
        self.data_scale = 1.0 if num_data is None else float(num_data) / frame.size
        keep = (self.particle_dim, frame.dim)
        self.model_trace, self.guide_trace, self.keep = model_trace, q_trace, keep
        total = 0.0
        for tr, sign in ((model_trace, 1.0), (q_trace, -1.0)):
            for site in tr.nodes.values():
                if is_scored(site) and not (sign < 0 and site["is_observed"]):
                    total = total + sign * self._scaled(site)
        while total.dim() < -self.particle_dim:
            total = total.unsqueeze(0)
        self.layout = total.shape  # (K, 1.., B, 1..)
        self.log_w = total.reshape(num_particles, -1)  # (K, B)

    def _scaled(self, site):
        """A site's log-density per particle and data point, with its scale divided by the
        data-set scaling (which multiplies the bound as a whole)."""
        lp = site_log_prob(site, self.keep)
        scale = site["scale"]
        if not (isinstance(scale, (int, float)) and scale == self.data_scale):
            lp = lp * (scale / self.data_scale)
        return lp


def _scale_by(holder: dict, event_dim: int):
    """A gradient hook multiplying by ``holder["w"]`` (the normalised weights, laid out like the
    log-densities) over the site's event dims."""

    def hook(grad):
        w = holder["w"]
        return grad * w.reshape(w.shape + (1,) * event_dim)

    return hook


def _mpn(objective, guide) -> int:
    if objective.max_plate_nesting is not None:
        return objective.max_plate_nesting
    return traits(getattr(guide, "__self__", None)).max_plate_nesting  # of the family the guide is a method of


def _check_particles(num_particles) -> int:
    if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 1:
        raise ValueError(f"num_particles must be an integer >= 1, got {num_particles!r}")
    return num_particles


class IWAE:
    """The per-data-point importance-weighted bound (see the module docstring) as a training
    objective: ``differentiable_loss(model, guide, *args, **kwargs)`` returns -(N/B) sum_b L_K(x_b)
    with the plain (``estimator="plain"``) or the doubly-reparameterized (``"dreg"``) gradient.
    With K = 1 it is the ELBO."""

    def __init__(
        self,
        num_particles: int = 5,
        estimator: str = "plain",
        max_plate_nesting: int | None = None,
        data_plate: str = "data",
    ):
        if estimator not in ESTIMATORS:
            raise ValueError(f"IWAE estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
        self.num_particles = _check_particles(num_particles)
        self.estimator, self.max_plate_nesting, self.data_plate = estimator, max_plate_nesting, data_plate

    def __repr__(self):
        return f"IWAE(num_particles={self.num_particles}, estimator={self.estimator!r})"

    def log_weights(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The (K, B) log weights, with gradients (the per-site scales as in training)."""
        return _Weights(
            model, guide, args, kwargs, self.num_particles, _mpn(self, guide), self.data_plate, "IWAE"
        ).log_w

    def bound(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """L_K(x_b) for each data point, shape (B,)."""
        return self.log_weights(model, guide, *args, **kwargs).logsumexp(0) - math.log(self.num_particles)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        dreg = self.estimator == "dreg"
        w = _Weights(
            model,
            guide,
            args,
            kwargs,
            self.num_particles,
            _mpn(self, guide),
            self.data_plate,
            "IWAE with DReG" if dreg else "IWAE",
            stop_guide=dreg,
            hook_values=dreg,
        )
        bound = w.log_w.logsumexp(0) - math.log(self.num_particles)
        loss = -w.data_scale * bound.sum()
        if not dreg:
            return loss
        normalised = torch.softmax(w.log_w.detach(), 0)  # w~_kb
        w.scaled_w["w"] = normalised.reshape(w.layout)  # the hooks scale the gradient into z by w~
        surrogate = -w.data_scale * (normalised * w.log_w).sum()
        return loss.detach() + surrogate - surrogate.detach()


class StickingTheLanding:
    """The ELBO, mean over ``num_particles`` draws per data point, with the sticking-the-landing
    gradient (Roeder et al. 2017): log q at stopped guide parameters, so the guide's gradient is
    the path derivative alone (see the module docstring)."""

    def __init__(self, num_particles: int = 1, max_plate_nesting: int | None = None, data_plate: str = "data"):
        self.num_particles = _check_particles(num_particles)
        self.max_plate_nesting, self.data_plate = max_plate_nesting, data_plate

    def __repr__(self):
        return f"StickingTheLanding(num_particles={self.num_particles})"

    def differentiable_loss(self, model, guide, *args, **kwargs):
        w = _Weights(
            model,
            guide,
            args,
            kwargs,
            self.num_particles,
            _mpn(self, guide),
            self.data_plate,
            "the sticking-the-landing ELBO",
            stop_guide=True,
        )
        return -w.data_scale * w.log_w.mean(0).sum()


def _per_dimension(site_fn, value):
    """log-density per latent dimension (the last dim) when the distribution factorizes over it
    (``Independent`` over one dim of a univariate family), else None."""
    if isinstance(site_fn, Independent) and site_fn.reinterpreted_batch_ndims == 1:
        return site_fn.base_dist.log_prob(value)
    return None


class FreeBitsELBO:
    """The ELBO with free bits (Kingma et al. 2016): for each latent dimension j (of sites whose
    q and p factorize over dimensions; else for the site as a whole),

        KL term = sum_j max(lambda, mean_batch KL_j),

    KL_j in closed form where torch knows it, else the sampled log q - log p. The value is the
    free-bits objective, not the ELBO (it is larger by the KL below the floor)."""

    def __init__(
        self, free_bits: float, num_particles: int = 1, max_plate_nesting: int | None = None, data_plate: str = "data"
    ):
        if isinstance(free_bits, bool) or not isinstance(free_bits, (int, float)) or not free_bits >= 0:
            raise ValueError(f"free_bits must be a number of nats >= 0, got {free_bits!r}")
        self.free_bits = float(free_bits)
        self.num_particles = _check_particles(num_particles)
        self.max_plate_nesting, self.data_plate = max_plate_nesting, data_plate

    def __repr__(self):
        return f"FreeBitsELBO(free_bits={self.free_bits}, num_particles={self.num_particles})"

    def differentiable_loss(self, model, guide, *args, **kwargs):
        mpn = _mpn(self, guide)
        w = _Weights(model, guide, args, kwargs, self.num_particles, mpn, self.data_plate, "free bits")
        m, g = w.model_trace, w.guide_trace
        batch = _data_frame(m, self.data_plate).size
        recon, kl_total = 0.0, 0.0
        for name, site in m.nodes.items():
            if not is_scored(site):
                continue
            if site["is_observed"]:
                recon = recon + w._scaled(site).sum()
                continue
            q = g.nodes[name]
            weight = site["scale"] / w.data_scale  # the KL weight (beta, warm-up)
            kl = self._kl_per_dim(q, site)
            if kl is None:  # the site as one group
                kl = (site_log_prob(q, w.keep) - site_log_prob(site, w.keep)).reshape(-1)
            else:
                kl = kl.reshape(-1, kl.shape[-1])
            mean_kl = kl.sum(0) / (self.num_particles * batch)  # per dimension (or the site)
            kl_total = kl_total + weight * mean_kl.clamp(min=self.free_bits).sum() * batch
        recon = recon / self.num_particles
        return -w.data_scale * (recon - kl_total)

    @staticmethod
    def _kl_per_dim(q_site, p_site):
        q, p = q_site["fn"], p_site["fn"]
        if not (
            isinstance(q, Independent)
            and isinstance(p, Independent)
            and q.reinterpreted_batch_ndims == 1
            and p.reinterpreted_batch_ndims == 1
        ):
            return None
        try:
            return kl_divergence(q.base_dist, p.base_dist)
        except NotImplementedError:
            z = q_site["value"]
            return q.base_dist.log_prob(z) - p.base_dist.log_prob(z)


__all__ = ["IWAE", "StickingTheLanding", "FreeBitsELBO", "ESTIMATORS"]

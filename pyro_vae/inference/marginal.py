"""One evaluator for every (model, guide) pair, computed from Pyro traces.

The programs are called as ``model(*args)`` / ``guide(*args)``, with ``args`` a family's
arguments for a batch (``family.args(batch)``; for a plain VAE just ``(x,)``): every tensor in
``args``, and every keyword argument's tensor, whose first dimension is the number of data
points (x, labels, masks, conditions) is sliced together with x into evaluation batches; other
arguments pass unchanged.

For data x (a batch of B points), draw K particles z_k ~ q(z|x) by running the guide inside
a vectorized ``pyro.plate`` of size K, replay the model on them and keep each site's
``log_prob`` per data point. That gives the log importance weights

    log w_k(x) = log p(x, z_k) - log q(z_k | x),      shape (K, B),

from which

* ELBO(x)        = mean_k log w_k            (a lower bound on log p(x));
* IWAE_K(x)      = log (1/K) sum_k w_k       (Burda et al. 2016; tighter as K grows);
* log p(x) ~= IWAE_K with large K (the papers use K = 5000); computed in chunks of
  particles with a running log-sum-exp, so memory stays bounded for any K.

Discrete guide sites marked ``infer={"enumerate": "parallel"}`` (a class label) are summed
out exactly: every value is enumerated and its weight p(x, y, z) / q(z | x, y) is summed over
y instead of being sampled. Site ``scale``s (beta, data-set scaling) are ignored: these are
the unscaled log densities. Every site must sit inside the data plate (named ``"data"``).
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import is_validation_enabled
from pyro.poutine.subsample_messenger import _Subsample
from torch.distributions import Independent, Normal, constraints, kl_divergence


PARTICLES = "_particles"


def is_scored(site) -> bool:
    """A sample site with a density (not the bookkeeping site that every plate records)."""
    return site["type"] == "sample" and not isinstance(site["fn"], _Subsample)


def _num_data(args) -> int:
    if not args or not torch.is_tensor(args[0]):
        raise ValueError("the first argument of the model must be the data tensor x (N, ...)")
    return args[0].shape[0]


def _per_example(a, n: int) -> bool:
    return torch.is_tensor(a) and a.dim() > 0 and a.shape[0] == n


def slice_args(args, index, n: int | None = None) -> tuple:
    """Slice every tensor argument with first dimension ``n`` (default: that of ``args[0]``)."""
    n = _num_data(args) if n is None else n
    return tuple(a[index] if _per_example(a, n) else a for a in args)


def slice_kwargs(kwargs: dict, index, n: int) -> dict:
    """Slice every keyword argument that is a tensor with first dimension ``n`` (a keyword ``y``
    goes with its x, as a positional one does)."""
    return {k: v[index] if _per_example(v, n) else v for k, v in kwargs.items()}


def _chunks(args, batch_size: int, kwargs=None):
    """Yield ``(size, args of the chunk, kwargs of the chunk)`` for consecutive chunks of the data
    points."""
    n = _num_data(args)
    for start in range(0, n, batch_size):
        index = slice(start, start + batch_size)
        part = slice_args(args, index, n)
        yield part[0].shape[0], part, slice_kwargs(kwargs or {}, index, n)


def _one(args, kwargs):
    """The arguments of the first data point alone (positional and keyword)."""
    n = _num_data(args)
    return slice_args(args, slice(0, 1), n), slice_kwargs(kwargs, slice(0, 1), n)


def _max_plate_nesting(model, guide, args, kwargs) -> int:
    """Deepest plate nesting over the model and guide, found by tracing one data point."""
    one, one_kw = _one(args, kwargs)
    with poutine.block(), torch.no_grad():
        g = poutine.trace(guide).get_trace(*one, **one_kw)
        m = poutine.trace(poutine.replay(model, trace=g)).get_trace(*one, **one_kw)
    depth = 0
    for tr in (g, m):
        for site in tr.nodes.values():
            if is_scored(site):
                depth = max(depth, len(site["cond_indep_stack"]))
    return depth


def site_log_prob(site, keep_dims) -> torch.Tensor:
    """log_prob of one site, summed over every plate except the particle and data plates."""
    lp = site["fn"].log_prob(site["value"])
    if site["mask"] is not None and site["mask"] is not True:
        lp = torch.where(torch.as_tensor(site["mask"], device=lp.device), lp, torch.zeros_like(lp))
    for frame in site["cond_indep_stack"]:
        if frame.vectorized and frame.dim not in keep_dims and lp.dim() >= -frame.dim:
            lp = lp.sum(frame.dim, keepdim=True)
    return lp


def _data_dim(trace, data_plate) -> int:
    for site in trace.nodes.values():
        if is_scored(site):
            for frame in site["cond_indep_stack"]:
                if frame.name == data_plate:
                    return frame.dim
    raise ValueError(
        f"no site of the model is inside a plate named {data_plate!r}; evaluation needs "
        f"one plate over the data points with that name"
    )


def _check_in_data_plate(trace, data_plate):
    for name, site in trace.nodes.items():
        if is_scored(site) and not any(f.name == data_plate for f in site["cond_indep_stack"]):
            raise ValueError(
                f"site {name!r} is outside the {data_plate!r} plate: per-data-point "
                f"evaluation needs every latent and observed site inside it"
            )


def log_weights(
    model,
    guide,
    *args,
    num_particles: int = 1,
    data_plate: str = "data",
    max_plate_nesting: int | None = None,
    **kwargs,
) -> torch.Tensor:
    """Log importance weights ``log p(x, z_k) - log q(z_k|x)``, shape ``(num_particles, B)``.

    Enumerated discrete guide sites are summed out exactly (see module docstring).
    """
    if max_plate_nesting is None:
        max_plate_nesting = _max_plate_nesting(model, guide, args, kwargs)
    particle_dim = -(max_plate_nesting + 1)

    def vectorize(fn):
        def wrapped(*a, **k):
            with pyro.plate(PARTICLES, num_particles, dim=particle_dim):
                return fn(*a, **k)

        return wrapped

    enum_guide = poutine.enum(vectorize(guide), first_available_dim=particle_dim - 1)
    with poutine.block():
        g = poutine.trace(enum_guide).get_trace(*args, **kwargs)
        m = poutine.trace(poutine.replay(vectorize(model), trace=g)).get_trace(*args, **kwargs)
    _check_in_data_plate(m, data_plate)
    data_dim = _data_dim(m, data_plate)
    keep = (particle_dim, data_dim)

    total = 0.0
    for site in m.nodes.values():
        if is_scored(site):
            total = total + site_log_prob(site, keep)
    for site in g.nodes.values():
        if is_scored(site) and site["infer"].get("_enumerate_dim") is None:
            total = total - site_log_prob(site, keep)
    # total: (enum dims..., K, [1...], B, [1...]); sum out enumerated values exactly.
    while total.dim() > -particle_dim:
        total = total.logsumexp(0)
    while total.dim() < -particle_dim:
        total = total.unsqueeze(0)
    # (K, 1.., B, 1..) -> (K, B): the data dim is the only one left besides the particles
    return total.reshape(total.shape[0], -1).expand(num_particles, -1)


CHUNK_NUMBERS = 2**25  # the most decoder outputs per chunk: larger chunks run no faster on a CPU


WORKING_COPIES = 8  # tensors of the decoder output's size alive at once (logits, activations, log-densities)


def chunk_budget(device="cpu", cap: int = CHUNK_NUMBERS) -> int:
    """How many decoder outputs one particle chunk may hold: ``cap``, or less where the free
    memory of ``device`` (the share that :func:`pyro_vae.devices.memory_budget` allows, over
    ``WORKING_COPIES`` float32 copies) is smaller."""
    from pyro_vae.devices import memory_budget

    return max(1, min(cap, memory_budget(device) // (4 * WORKING_COPIES)))


def _auto_chunk(num_particles, batch, data_numel, budget=None, enum_size=1, device="cpu"):
    """Particles per chunk so that one chunk's decoder output (times the number of enumerated
    values of the discrete latents) has at most ``budget`` numbers (default: :func:`chunk_budget`
    of ``device``, chosen from its free memory)."""
    budget = chunk_budget(device) if budget is None else budget
    return max(1, min(num_particles, budget // max(1, batch * data_numel * enum_size)))


def _enum_size(guide, args, kwargs, max_plate_nesting) -> int:
    """How many values the guide's enumerated sites take together (1 if none), from one point."""
    one, one_kw = _one(args, kwargs)
    with poutine.block(), torch.no_grad():
        tr = poutine.trace(poutine.enum(guide, first_available_dim=-max_plate_nesting - 2)).get_trace(*one, **one_kw)
    size = 1
    for site in tr.nodes.values():
        if is_scored(site) and site["infer"].get("_enumerate_dim") is not None:
            size *= site["value"].numel()
    return size


def log_marginal_batch(model, guide, *args, num_particles=1000, chunk_size=None, data_plate="data", **kwargs):
    """log p(x) ~= log (1/K) sum_k w_k for one batch, shape (B,), in particle chunks."""
    mpn = kwargs.pop("max_plate_nesting", None)
    if mpn is None:
        mpn = _max_plate_nesting(model, guide, args, kwargs)
    x = args[0]
    chunk = chunk_size or _auto_chunk(
        num_particles, x.shape[0], x[0].numel(), enum_size=_enum_size(guide, args, kwargs, mpn), device=x.device
    )
    acc = None
    done = 0
    while done < num_particles:
        k = min(chunk, num_particles - done)
        lw = log_weights(model, guide, *args, num_particles=k, max_plate_nesting=mpn, data_plate=data_plate, **kwargs)
        lse = lw.logsumexp(0)
        acc = lse if acc is None else torch.logaddexp(acc, lse)
        done += k
    return acc - math.log(num_particles)


def _progress(total, desc, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)


@torch.no_grad()
def log_marginal(
    model,
    guide,
    *args,
    num_particles=5000,
    batch_size=100,
    chunk_size=None,
    progress=False,
    desc=None,
    data_plate="data",
    **kwargs,
) -> torch.Tensor:
    """Importance-sampled log p(x) for every data point, shape (N,), with ``num_particles`` samples.

    Batches of data points x chunks of particles keep memory bounded; ``progress`` shows a bar.

    When Pyro's validation is on (its default), the arguments of every distribution are checked
    once, on one particle per data point (bad data fail here with Pyro's message); the k-particle
    passes then run unchecked, which saves about a tenth of the time.
    """
    out = []
    if kwargs.get("max_plate_nesting") is None:
        kwargs["max_plate_nesting"] = _max_plate_nesting(model, guide, args, kwargs)
    if is_validation_enabled():
        for _, part, part_kw in _chunks(args, max(batch_size, 1000), kwargs):
            log_weights(model, guide, *part, num_particles=1, data_plate=data_plate, **part_kw)
    with (
        _progress(_num_data(args), desc or f"log p(x), k={num_particles}", progress) as bar,
        pyro.validation_enabled(False),
    ):
        for size, part, part_kw in _chunks(args, batch_size, kwargs):
            out.append(
                log_marginal_batch(
                    model,
                    guide,
                    *part,
                    num_particles=num_particles,
                    chunk_size=chunk_size,
                    data_plate=data_plate,
                    **part_kw,
                )
            )
            bar.update(size)
    return torch.cat(out)


@torch.no_grad()
def elbo(model, guide, *args, num_particles=1, batch_size=1000, data_plate="data", **kwargs) -> torch.Tensor:
    """Per-data-point ELBO estimate mean_k log w_k, shape (N,). (Enumerated discrete latents are
    summed out exactly inside each weight, so this is the ELBO of the remaining latents.)"""
    mpn = kwargs.pop("max_plate_nesting", None)
    kwargs["max_plate_nesting"] = mpn if mpn is not None else _max_plate_nesting(model, guide, args, kwargs)
    return torch.cat(
        [
            log_weights(model, guide, *part, num_particles=num_particles, data_plate=data_plate, **part_kw).mean(0)
            for _, part, part_kw in _chunks(args, batch_size, kwargs)
        ]
    )


@torch.no_grad()
def iwae_bound(model, guide, *args, k=50, batch_size=100, **kwargs) -> torch.Tensor:
    """The K-sample importance-weighted bound log (1/K) sum_k w_k per data point, shape (N,).

    (The same estimator as :func:`log_marginal`; the name says which K is meant as a bound.)
    """
    return log_marginal(
        model, guide, *args, num_particles=k, batch_size=batch_size, desc=f"IWAE bound, k={k}", **kwargs
    )


def as_normal(d):
    """The Normal inside ``d`` (unwrapping Independent), or None if ``d`` is not one."""
    while isinstance(d, Independent):
        d = d.base_dist
    return d if isinstance(d, Normal) else None


def _posterior_mean(fn, mc_samples: int):
    """E_q[z|x] of a guide site: its ``mean``, or for a distribution without one (a flow) the
    average of ``mc_samples`` draws (None if it cannot be drawn either)."""
    try:
        return fn.mean
    except NotImplementedError:
        pass
    support = fn.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is not constraints.real:  # only real-valued latents (not a relaxed one-hot)
        return None
    try:
        return torch.stack([fn.sample() for _ in range(mc_samples)]).mean(0)
    except NotImplementedError:
        return None


@torch.no_grad()
def latent_statistics(
    model, guide, *args, batch_size=1000, threshold=0.01, data_plate="data", mc_samples: int = 1000, **kwargs
) -> dict:
    """Per latent site: active units (Burda et al. 2016) and KL per dimension.

    Active units: dimension u is active when Cov_x(E_q[z_u | x]) > ``threshold``, with E_q[z|x]
    read off the guide's distribution (its ``mean``; for one without a mean in closed form, a
    flow, the average of ``mc_samples`` draws, whose Monte Carlo noise adds at most
    Var_q(z_u) / mc_samples to the covariance). KL per dimension is analytic when both q and p
    factorize into Normals per dimension (else reported as None).
    """
    means, kls = {}, {}
    for _, part, part_kw in _chunks(args, batch_size, kwargs):
        with poutine.block():
            g = poutine.trace(guide).get_trace(*part, **part_kw)
            m = poutine.trace(poutine.replay(model, trace=g)).get_trace(*part, **part_kw)
        for name, site in g.nodes.items():
            if not is_scored(site) or site["is_observed"] or site["fn"].event_dim != 1:
                continue
            mean = _posterior_mean(site["fn"], mc_samples)
            if mean is None:
                continue
            means.setdefault(name, []).append(mean.reshape(-1, mean.shape[-1]))
            q = as_normal(site["fn"])
            p = as_normal(m.nodes[name]["fn"]) if name in m.nodes else None
            if q is not None and p is not None:
                kl = kl_divergence(q, p)
                kls.setdefault(name, []).append(kl.reshape(-1, kl.shape[-1]))
    out = {}
    for name, ms in means.items():
        mu = torch.cat(ms)
        var = mu.var(0) if mu.shape[0] > 1 else torch.zeros(mu.shape[-1], device=mu.device)
        kl = torch.cat(kls[name]).mean(0) if name in kls else None
        out[name] = {
            "active_units": int((var > threshold).sum().item()),
            "dims": int(mu.shape[-1]),
            "activity": var.cpu().tolist(),
            "kl_per_dim": None if kl is None else kl.cpu().tolist(),
        }
    return out


def _analytic_kl(q_site, p_site, keep):
    """KL(q || p) of one latent site given the values of its parents in the trace, per data
    point, when torch knows it in closed form (Normal/Normal, Categorical/Categorical, ...);
    None otherwise."""
    try:
        kl = kl_divergence(q_site["fn"], p_site["fn"])
    except NotImplementedError:
        return None
    for frame in p_site["cond_indep_stack"]:
        if frame.vectorized and frame.dim not in keep and kl.dim() >= -frame.dim:
            kl = kl.sum(frame.dim, keepdim=True)
    return kl


def _unmasked(site) -> bool:
    return site["mask"] is None or site["mask"] is True


@torch.no_grad()
def elbo_terms(model, guide, *args, batch_size=1000, data_plate="data", analytic=True, info=None, **kwargs):
    """Per data point ``(log_lik, kl)`` from one draw of the latents from the guide: log p(x|z)
    summed over observed sites, and KL(q(z|x) || p(z)) summed over *all* latent sites, each site's
    KL in closed form where torch knows it (``analytic``; given the drawn values of the site's
    parents) and else the one-sample estimate log q(z|x) - log p(z) (discrete latents are sampled
    here, not enumerated). ELBO = log_lik - kl. ``info`` (a dict) receives ``{"analytic": [sites],
    "sampled": [sites]}``."""
    lls, kls = [], []
    how = {"analytic": set(), "sampled": set()}
    for b, part, part_kw in _chunks(args, batch_size, kwargs):
        with poutine.block():
            g = poutine.trace(guide).get_trace(*part, **part_kw)
            m = poutine.trace(poutine.replay(model, trace=g)).get_trace(*part, **part_kw)
        data_dim = _data_dim(m, data_plate)
        keep = (data_dim,)
        ll, kl = 0.0, 0.0
        for name, site in m.nodes.items():
            if not is_scored(site):
                continue
            if site["is_observed"]:
                ll = ll + site_log_prob(site, keep).reshape(-1)
                continue
            q_site = g.nodes.get(name)
            closed = None
            if analytic and q_site is not None and is_scored(q_site) and _unmasked(site) and _unmasked(q_site):
                closed = _analytic_kl(q_site, site, keep)
            if closed is not None:
                kl = kl + closed.reshape(-1)
                how["analytic"].add(name)
            else:
                kl = kl - site_log_prob(site, keep).reshape(-1)
                if q_site is not None and is_scored(q_site):
                    kl = kl + site_log_prob(q_site, keep).reshape(-1)
                how["sampled"].add(name)
        for name, site in g.nodes.items():  # guide sites the model does not have (auxiliary latents)
            if is_scored(site) and name not in m.nodes:
                kl = kl + site_log_prob(site, keep).reshape(-1)
                how["sampled"].add(name)
        lls.append(torch.as_tensor(ll).expand(b))
        kls.append(torch.as_tensor(kl).expand(b))
    if info is not None:
        info.update({k: sorted(v) for k, v in how.items()})
    return torch.cat(lls), torch.cat(kls)

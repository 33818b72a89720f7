"""How noisy is a gradient estimator? The variance of the ELBO's gradient, measured.

A VAE's ELBO gradient with respect to the guide's parameters can be estimated two ways:

* **reparameterized** (``estimator="reparam"``, the default): z = mu(x) + sigma(x) * eps with
  eps ~ N(0, I), so the gradient flows through the sample into mu and sigma;
* **score function** (REINFORCE; ``"score"``): z is drawn without a path back to the guide, and
  Pyro's ``TraceGraph_ELBO`` uses grad log q(z|x) * (cost - baseline) instead, unbiased but far
  noisier; ``"score-avg"`` subtracts a decaying average of the cost, ``"score-baseline"`` also a
  learned baseline network b(x).

:func:`gradient_variance` fixes the parameters and one batch and draws the gradient many times,
each with fresh latents, then reports per parameter group (by default the family's top-level
modules: encoder, decoder, ...) the variance of each gradient coordinate averaged over the group,
the squared norm of the mean gradient, and their ratio (a signal-to-noise figure). Any family and
any objective can be measured, e.g. ``gradient_variance(family, batch, draws=200)``.
"""

from __future__ import annotations

import torch
from torch import nn

from pyro_vae.inference.objectives import Loss, make_objective


def parameter_groups(family: nn.Module) -> dict:
    """``{name: [parameters]}`` for each top-level submodule of ``family`` that has trainable
    parameters, except baselines (they are trained on their own loss, not on the ELBO)."""
    groups = {}
    for name, child in family.named_children():
        if name.startswith("baseline"):
            continue
        params = [p for p in child.parameters() if p.requires_grad]
        if params:
            groups[name] = params
    return groups


def gradient_variance(
    family: nn.Module,
    batch,
    objective="auto",
    draws: int = 100,
    groups: dict | None = None,
    kl_weight: float = 1.0,
    burn_in: int = 10,
) -> dict:
    """Variance of the per-data-point ELBO gradient over ``draws`` independent draws, at fixed
    parameters and on one ``batch`` (a :class:`~pyro_vae.data.Batch`).

    Each draw computes the gradient of ``loss / B`` (the batch's mean negative ELBO) with fresh
    latents; the parameters are not changed. ``burn_in`` draws are made first and discarded, so
    a decaying-average baseline has settled (a learned baseline is used as it stands).

    Returns ``{group: {"variance": mean over coordinates of Var[g], "total_variance": their sum,
    "mean_sq_norm": |E g|^2, "snr": |E g|^2 / total_variance, "num_params": ..., "draws": ...}}``.
    """
    if draws < 2:
        raise ValueError(f"draws must be at least 2 to estimate a variance, got {draws}")
    groups = parameter_groups(family) if groups is None else groups
    if not groups:
        raise ValueError(f"{type(family).__name__} has no trainable parameter groups to measure")
    loss_fn = Loss(family, objective)
    size = len(batch)
    sums = {g: [torch.zeros_like(p, dtype=torch.float64) for p in ps] for g, ps in groups.items()}
    squares = {g: [torch.zeros_like(p, dtype=torch.float64) for p in ps] for g, ps in groups.items()}
    was_training = family.training
    family.eval()  # no denoising corruption: the estimator's noise alone
    try:
        for i in range(burn_in + draws):
            for p in family.parameters():
                p.grad = None
            (loss_fn(batch, kl_weight, num_data=None) / size).backward()
            if i < burn_in:
                continue
            for g, ps in groups.items():
                for s, q, p in zip(sums[g], squares[g], ps):
                    grad = torch.zeros_like(s) if p.grad is None else p.grad.double()
                    s += grad
                    q += grad * grad
    finally:
        for p in family.parameters():
            p.grad = None
        family.train(was_training)
    out = {}
    for g in groups:
        n_params = sum(s.numel() for s in sums[g])
        mean_sq = sum(((s / draws) ** 2).sum().item() for s in sums[g])
        total_var = sum(
            ((q - s * s / draws) / (draws - 1)).clamp_min(0).sum().item() for s, q in zip(sums[g], squares[g])
        )
        out[g] = {
            "variance": total_var / n_params,
            "total_variance": total_var,
            "mean_sq_norm": mean_sq,
            "snr": mean_sq / total_var if total_var > 0 else float("inf"),
            "num_params": n_params,
            "draws": draws,
        }
    return out


def mean_gradient(
    family: nn.Module, batch, objective="auto", draws: int = 100, num_particles: int = 1, kl_weight: float = 1.0
) -> dict:
    """``{parameter name: mean gradient}`` of the batch's mean negative ELBO over ``draws`` calls,
    each averaging ``num_particles`` vectorized draws of the latents (for checking that two
    estimators agree in expectation)."""
    loss_fn = Loss(family, make_objective(objective, family, num_particles=num_particles))
    acc = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in family.named_parameters() if p.requires_grad}
    for _ in range(draws):
        for p in family.parameters():
            p.grad = None
        (loss_fn(batch, kl_weight, num_data=None) / len(batch)).backward()
        for n, p in family.named_parameters():
            if n in acc and p.grad is not None:
                acc[n] += p.grad.double()
    for p in family.parameters():
        p.grad = None
    return {n: a / draws for n, a in acc.items()}


__all__ = ["gradient_variance", "mean_gradient", "parameter_groups"]

"""Evaluate a trained family on data: log p(x) (k importance samples), the ELBO and its terms, the
inference gap, and the family's own measures, in nats per data point with standard errors.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pyro_vae.contract import ChecksData, ContractError, Measures, check_data, has, traits
from pyro_vae.data.batch import Batch
from pyro_vae.inference.marginal import elbo_terms, iwae_bound, latent_statistics, log_marginal


def _mean_se(v: torch.Tensor):
    v = v.double()
    se = (v.std() / math.sqrt(v.numel())).item() if v.numel() > 1 else float("nan")
    return v.mean().item(), se


def _as_batch(data):
    return data if isinstance(data, Batch) else Batch(torch.as_tensor(data))


class _evaluating:
    """Puts a module in eval mode (no denoising corruption, no dropout) and restores its mode
    (a family that is not an ``nn.Module`` has no mode)."""

    def __init__(self, module):
        self.module = module if isinstance(module, nn.Module) else None
        self.was = self.module is not None and self.module.training

    def __enter__(self):
        if self.module is not None:
            self.module.eval()

    def __exit__(self, *exc):
        if self.module is not None:
            self.module.train(self.was)


TERMS = ("recon_log_lik", "kl", "elbo", "log_px", "gap")  # the per-image terms of log p(x)


@torch.no_grad()
def evaluate(
    family,
    data,
    k: int = 5000,
    iwae_k: int = 0,
    batch_size: int = 100,
    progress: bool = False,
    per_image: dict | None = None,
) -> dict:
    """The metric table for ``family`` on ``data`` (a :class:`~pyro_vae.data.Batch`, or a tensor x).

    Returns ``{name: {"value", "unit", "se"?, "note"?}}``, every mean with its standard error over
    data points. The terms of log p(x), per image:

        ELBO     = E_q[log p(x|z)] - KL(q(z|x) || p(z))     (recon_log_lik, kl, elbo)
        log p(x) = ELBO + KL(q(z|x) || p(z|x))               (log_px, importance-sampled with k)
        gap      = log p(x) - ELBO                           (the inference gap, >= 0)

    KL(q || p(z)) is in closed form where torch knows it (the note says which sites) and else
    a one-sample estimate; E_q[log p(x|z)] is one sample of z per image. The gap uses the k-sample
    estimate of log p(x), which is low by a little for finite k, so the gap is too. Also: bits per
    dimension, the IWAE bound with ``iwae_k`` samples (when > 0), active units and KL per latent
    dimension, and the family's own measures (``family.metrics``, e.g. a classifier's accuracy).
    ``per_image`` (a dict) receives the per-image tensors of :data:`TERMS` that were computed.

    A family with a point-mass guide (``point_estimate = True``, the autoencoder) has no density
    q(z|x): log p(x), the ELBO and the gap are reported as undefined, in words, with the
    reconstruction log-likelihood at its code and its objective.

    Labels are hidden from the programs (``data.unlabelled()``): a family with a latent class
    sums it out, so log p(x) is the marginal likelihood of the images alone; the family's own
    measures see the labels.

    Data the model cannot score are refused with a ValueError (a DataError) naming the problem:
    no data points, NaN or Inf, a dtype or device other than the model's, a shape other than the
    model's, values outside the likelihood's support (grey values for a Bernoulli likelihood).
    """
    from pyro_vae.data.batch import DataError, check_finite

    for name, value, low in (("k", k, 0), ("iwae_k", iwae_k, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"evaluate: {name} must be an integer >= {low}, got {value!r}")
    try:
        data = _as_batch(data)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(
            f"evaluate needs a Batch or a tensor of data points (N, ...), got {type(data).__name__} "
            f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})"
        ) from None
    x = data.x
    if len(data) == 0:
        raise DataError(f"evaluate: the data hold no data points (shape {tuple(x.shape)})")
    param = next(iter(family.parameters()), None) if isinstance(family, nn.Module) else None
    if not x.is_floating_point() or (param is not None and x.dtype != param.dtype):
        want = param.dtype if param is not None else torch.float32
        raise DataError(
            f"evaluate: the data are {x.dtype} but the model's parameters are {want}; pass x.to({want}) "
            f"(images as 8-bit integers: pyro_vae.data.batch.to_float_images scales them to [0, 1])"
        )
    if param is not None and x.device != param.device:
        raise DataError(
            f"evaluate: the data are on {x.device} but the model is on {param.device}; move one of them "
            f"(data.to(device))"
        )
    check_finite(x, "evaluation data", allow_nan=traits(family).missing_values)
    if has(family, ChecksData):
        family.check_shape(x)
        if data.y is not None:
            family.check_labels(data.y)  # a label the model has no class for (its programs still see y)
    check_data(family, x)  # values outside the likelihood's support
    with _evaluating(family):
        return _evaluate(family, data, k, iwae_k, batch_size, progress, per_image)


def _evaluate(family, data, k, iwae_k, batch_size, progress, per_image):
    data = _as_batch(data)
    args = family.args(data.unlabelled())
    if not isinstance(args, (tuple, list)):
        raise ContractError(
            f"{type(family).__name__}.args(batch) must return a tuple of the programs' positional "
            f"arguments (x first), got {type(args).__name__}"
        )
    model, guide = family.model, family.guide
    n, dims = len(data), data.x[0].numel()
    to_bpd = 1.0 / (dims * math.log(2))
    t = traits(family)
    mpn, plate, point = t.max_plate_nesting, t.plate_name, t.point_estimate
    out = {"num_images": {"value": n, "unit": "images"}}
    info = {}
    ll, kl = elbo_terms(model, guide, *args, batch_size=max(batch_size, 500), data_plate=plate, info=info)
    terms = {"recon_log_lik": ll}
    latents, observed = "+".join(t.latent_sites), "+".join(t.observed_sites)
    if point:
        undefined = t.undefined_note
        v, se = _mean_se(ll)
        out["recon_log_lik"] = {
            "value": v,
            "se": se,
            "unit": "nats/image",
            "note": f"log p({observed}|{latents}) at the code {latents} = encoder(x)",
        }
        obj = ll - kl  # log p(x|z) + log p(z) where the prior term is on (the guide's log-density is 0)
        v, se = _mean_se(obj)
        out["objective"] = {
            "value": v,
            "se": se,
            "unit": "nats/image",
            "note": "the training objective at the code (not a bound on log p(x))",
        }
        for name in ("elbo", "log_px", "gap"):
            out[name] = {"value": None, "unit": "nats/image", "note": undefined}
    else:
        kl_how = (
            "closed form"
            if not info.get("sampled")
            else "1-sample estimate"
            if not info.get("analytic")
            else f"closed form for {', '.join(info['analytic'])}, 1-sample for {', '.join(info['sampled'])}"
        )
        e = ll - kl
        terms.update(kl=kl, elbo=e)
        v, se = _mean_se(e)
        out["elbo"] = {"value": v, "se": se, "unit": "nats/image", "note": f"E_q log p(x|z) - KL; KL {kl_how}"}
        out["elbo_bpd"] = {"value": -v * to_bpd, "unit": "bits/dim", "note": "-ELBO / (D ln 2)"}
        v, se = _mean_se(ll)
        out["recon_log_lik"] = {
            "value": v,
            "se": se,
            "unit": "nats/image",
            "note": f"E_q log p({observed}|{latents}), 1 sample",
        }
        v, se = _mean_se(kl)
        out["kl"] = {
            "value": v,
            "se": se,
            "unit": "nats/image",
            "note": f"KL(q({latents}|x) || p({latents})), {kl_how}",
        }
    if iwae_k and not point:
        v, se = _mean_se(
            iwae_bound(
                model,
                guide,
                *args,
                k=iwae_k,
                batch_size=batch_size,
                progress=progress,
                max_plate_nesting=mpn,
                data_plate=plate,
            )
        )
        out[f"iwae_{iwae_k}"] = {"value": v, "se": se, "unit": "nats/image", "note": f"IWAE bound, k={iwae_k}"}
    if k and not point:
        lp = log_marginal(
            model,
            guide,
            *args,
            num_particles=k,
            batch_size=batch_size,
            progress=progress,
            max_plate_nesting=mpn,
            data_plate=plate,
        )
        terms.update(log_px=lp, gap=lp - terms["elbo"])
        v, se = _mean_se(lp)
        out["log_px"] = {"value": v, "se": se, "unit": "nats/image", "note": f"importance sampled, k={k}"}
        out["log_px_bpd"] = {"value": -v * to_bpd, "unit": "bits/dim", "note": f"k={k}"}
        v, se = _mean_se(terms["gap"])
        out["gap"] = {
            "value": v,
            "se": se,
            "unit": "nats/image",
            "note": f"log p(x) - ELBO = KL(q({latents}|x) || p({latents}|x)), the inference gap (k={k})",
        }
    for name, st in latent_statistics(model, guide, *args, batch_size=max(batch_size, 500)).items():
        out[f"active_units_{name}"] = {
            "value": st["active_units"],
            "unit": f"of {st['dims']}",
            "note": "Cov_x E_q[z_u] > 0.01",
        }
        out[f"activity_{name}"] = {
            "value": [round(v, 6) for v in st["activity"]],
            "unit": "",
            "note": "Cov_x E_q[z_u] per dimension",
        }
        if st["kl_per_dim"] is not None:
            out[f"kl_per_dim_{name}"] = {"value": [round(v, 4) for v in st["kl_per_dim"]], "unit": "nats/image"}
            out[f"kl_{name}"] = {
                "value": float(sum(st["kl_per_dim"])),
                "unit": "nats/image",
                "note": f"KL(q({name}|...) || p({name}|...)) of this site, closed form",
            }
    for name, value in (family.metrics(data) if has(family, Measures) else {}).items():
        out[name] = (
            value if isinstance(value, dict) else {"value": value, "unit": "", "note": t.metric_notes.get(name, "")}
        )
    if per_image is not None:
        per_image.update({name: t.detach().cpu() for name, t in terms.items()})
    return out


def format_table(metrics: dict) -> str:
    """A plain-text table of :func:`evaluate`'s output (lists are left out)."""
    rows = [("metric", "value", "unit", "note")]
    for name, m in metrics.items():
        v = m["value"]
        if isinstance(v, list):
            continue
        val = "undefined" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
        if m.get("se") is not None and m["se"] == m["se"]:
            val += f" ± {m['se']:.3f}"
        rows.append((name, val, m.get("unit", ""), m.get("note", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

"""Validation: after each epoch, the validation ELBO and the family's own measures.

One of them, the family's ``select_by`` (the ELBO unless it says otherwise), picks the best
checkpoint and drives early stopping. Labels are hidden: the ELBO is the unsupervised one.
"""

from __future__ import annotations

import pyro
import torch

from pyro_vae.contract import ContractError, Measures, has, traits
from pyro_vae.config import TrainConfig
from pyro_vae.data.batch import Batch
from pyro_vae.inference import marginal as evaluation


@torch.no_grad()
def validation_elbo(family, data, batch_size=1000) -> float:
    """Mean ELBO per data point (nats), one sample of the latents per point, labels hidden."""
    data = data if isinstance(data, Batch) else Batch(data)
    return (
        evaluation.elbo(
            family.model,
            family.guide,
            *family.args(data.unlabelled()),
            batch_size=batch_size,
            max_plate_nesting=traits(family).max_plate_nesting,
            data_plate=traits(family).plate_name,
        )
        .mean()
        .item()
    )


@torch.no_grad()
def validate(family, val: Batch, cfg: TrainConfig) -> dict:
    """``{"elbo": ..., **family.metrics(val)}`` on the validation data. Distribution-argument
    validation is off (the data were checked before training): a numerical fault shows as a
    non-finite ELBO, which the caller checks by value."""
    with pyro.validation_enabled(False):
        out = {"elbo": validation_elbo(family, val, cfg.val_batch_size)}
        out.update(family.metrics(val) if has(family, Measures) else {})
    select = traits(family).select_by
    if select not in out:
        raise ContractError(
            f"{type(family).__name__}.select_by is {select!r}, but its metrics() gave only "
            f"{', '.join(sorted(out))} on the validation data"
        )
    return out


__all__ = ["validation_elbo", "validate"]

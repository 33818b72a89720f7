"""Several processes, one run (``torch.distributed``, e.g. started by torchrun).

Every rank draws the same shuffled batches (a data generator seeded alike) and trains on its own
slice of each (:func:`pyro_vae.training.batches.epoch_data`); ``DistributedDataParallel`` averages
the gradients, so a step matches single-process training on the whole batch in expectation.
Rank 0 alone writes files and speaks.
"""

from __future__ import annotations

import torch


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) under torch.distributed, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def all_mean(value: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of ``value`` over the ranks (``value`` itself in one process)."""
    if world > 1:
        value = value.clone()
        torch.distributed.all_reduce(value)
        value /= world
    return value


def wrap(loss_fn: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The loss module as DistributedDataParallel, which averages the gradients of the ranks."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(loss_fn, device_ids=[device.index] if device.type == "cuda" else None)


def describe(world: int, batch_size: int) -> str:
    """The line that says a run is distributed, and how each global batch is split."""
    per = f"{batch_size // world}" + (f"-{-(-batch_size // world)}" if batch_size % world else "")
    return (
        f"distributed: {world} processes ({torch.distributed.get_backend()}), global batch "
        f"{batch_size} = {world} x {per}"
    )


__all__ = ["rank_and_world", "all_mean", "wrap", "describe"]

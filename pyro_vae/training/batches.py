"""Batches: one epoch of training data, batch by batch, in a seeded order.

The order comes from a data generator that the run seeds (and a checkpoint saves), so a resumed
epoch draws the same batches. Under DDP each rank takes its slice of every batch. Dynamic
binarization and shift augmentation happen here, per batch on the device, from a generator seeded
by the epoch and the batch's index; a streamed batch is checked when it is read.
"""

from __future__ import annotations

import torch

from pyro_vae.config import TrainConfig
from pyro_vae.data.batch import Batch, DataError, batches, check_finite, mixed_batches, shift_images
from pyro_vae.training.prepare import TrainData, as_dtype


def epoch_batches(data: TrainData, cfg: TrainConfig, generator):
    """One epoch of training batches (index tensors into ``data.train``): every point once in
    random order, plus ``labelled_batch_size`` labelled points per batch when semi-supervised."""
    if data.labelled_idx is not None and data.labelled_batch_size > 0:
        return mixed_batches(data.n, cfg.batch_size, data.labelled_idx, data.labelled_batch_size, generator)
    return batches(data.n, cfg.batch_size, shuffle=True, device=data.device, generator=generator)


def epoch_data(data: TrainData, cfg: TrainConfig, generator, rank: int = 0, world: int = 1, first: int = 0):
    """Yield ``(i, size, batch)`` for the training batches of one epoch from batch ``first`` on:
    ``size`` data points in batch i, of which ``batch`` (on the device) is this rank's slice.

    With ``--augment-shift S`` each image is first moved by a random offset of up to S pixels
    (:func:`pyro_vae.data.batch.shift_images`), drawn from the same per-batch generator.

    The order comes from :func:`epoch_batches`; with ``--binarize dynamic`` each batch is binarized
    on the device with a generator seeded from one number the epoch draws from ``generator`` and
    the batch's index, so the draws do not depend on how the data are held (in memory, or
    streamed and read by worker processes). A streamed batch is checked when read (finite values,
    the binarization range, the likelihood's support), without a device sync."""
    seed = (
        int(torch.randint(0, 2**62, (1,), generator=generator, device=data.device).item())
        if cfg.binarize == "dynamic" or cfg.augment_shift
        else 0
    )
    for i, (size, part) in enumerate(_parts(data, cfg, generator, rank, world, first), start=first):
        if data.streamed:
            part = _checked_stream_batch(part, data, cfg, i)
        if data.moved_per_batch:
            part = part.to(data.device, non_blocking=data.pinned)
        if cfg.binarize == "dynamic" or cfg.augment_shift:
            g = torch.Generator(device=data.device).manual_seed(seed + i * world + rank)
            x = shift_images(part.x, cfg.augment_shift, g) if cfg.augment_shift else part.x
            part = part.replace(x=torch.bernoulli(x, generator=g) if cfg.binarize == "dynamic" else x)
        yield i, size, part


def _parts(data: TrainData, cfg: TrainConfig, generator, rank: int, world: int, first: int):
    """``(size, this rank's part)`` of each batch of the epoch from batch ``first`` on: data in
    memory sliced by index, streamed rows read in the same order, iterated data as they come."""
    if data.iterated:
        return data.train.epoch(cfg.batch_size, generator, rank, world, first, pin_memory=data.pinned)
    index_batches = list(epoch_batches(data, cfg, generator))[first:]
    mine = [idx[rank::world] for idx in index_batches]
    if data.streamed:
        parts = data.train.loader([m.cpu() for m in mine], pin_memory=data.pinned)
    else:
        parts = (data.train.subset(m.to(data.train.x.device)) for m in mine)
    return zip((idx.numel() for idx in index_batches), parts)


def _checked_stream_batch(part: Batch, data: TrainData, cfg: TrainConfig, i: int) -> Batch:
    where = f"training data (streamed batch {i})"
    part = as_dtype(part, data.dtype)
    check_finite(part.x, where)
    if cfg.binarize == "dynamic":
        if part.x.numel() and (part.x.min() < 0 or part.x.max() > 1):
            raise DataError(
                f"{where}: binarization treats pixel values as probabilities and needs them in "
                f"[0, 1]; got min {part.x.min().item():.4g}, max {part.x.max().item():.4g}"
            )
    elif data.likelihood_check is not None:
        try:
            data.likelihood_check(part.x)
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
    return part


__all__ = ["epoch_batches", "epoch_data"]

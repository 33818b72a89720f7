"""Schedules: the KL weight and the learning rate of each step, functions of the step alone.

A resumed run knows its step, so it follows the same schedules as an uninterrupted one.
"""

from __future__ import annotations

import math

from pyro_vae.config import TrainConfig


def kl_weight_at(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """beta * min(1, (step + 1) / warm-up steps): linear KL warm-up that never reaches 0
    (``poutine.scale`` needs a positive weight)."""
    if cfg.warmup_epochs <= 0:
        return cfg.beta
    warm = max(1.0, cfg.warmup_epochs * steps_per_epoch)
    return cfg.beta * min(1.0, (step + 1) / warm)


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """The learning rate of step ``step`` (0-based) of ``total_steps``: ``cfg.lr`` throughout, or
    with ``lr_schedule="cosine"`` cfg.lr * (1 + cos(pi * step / total_steps)) / 2, from cfg.lr
    down to near 0 at the last step."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))


__all__ = ["kl_weight_at", "lr_at"]

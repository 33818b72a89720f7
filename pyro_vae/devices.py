"""Devices, seeds and memory: where a run computes, how its random streams start, and how much
memory the device has to spare. The bottom of the package: every layer may use it."""

from __future__ import annotations

import os
import random

import pyro
import torch


def device_problem(name) -> str | None:
    """Why ``name`` is not a device this machine can run on, in one line; None when it is one:
    ``auto``, ``cpu``, ``cuda`` / ``cuda:N`` (N below the number of GPUs), ``mps`` where present."""
    if not isinstance(name, str):
        return f"device must be a name such as auto, cpu or cuda, got {type(name).__name__}"
    if name == "auto":
        return None
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        return f"unknown device {name!r}: use auto, cpu, cuda or cuda:N (N: a GPU's index)"
    if dev.type == "cpu":
        return None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return f"device {name!r}: CUDA is not available on this machine; use --device cpu (or auto)"
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            return f"device {name!r}: this machine has {n} GPU{'s' if n > 1 else ''} (cuda:0 to cuda:{n - 1})"
        return None
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        return (
            None
            if mps is not None and mps.is_available()
            else f"device {name!r}: MPS is not available on this machine; use --device cpu (or auto)"
        )
    return f"device {name!r}: pyro-vae runs on auto, cpu, cuda or mps"


def select_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present (under torchrun, the GPU of this process's LOCAL_RANK),
    else CPU; otherwise the named device, checked."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return dev


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too
    pyro.set_rng_seed(seed)


MEMORY_SHARE = 0.5  # stream when the data would take more than this share of the memory available


def memory_budget(device="cpu") -> int:
    """Bytes of data the device can hold comfortably: ``MEMORY_SHARE`` of the free GPU memory,
    or of the RAM available on the host (``os.sysconf``; 8 GiB where it cannot be read)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * MEMORY_SHARE)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 8 * 2**30
    return int(available * MEMORY_SHARE)


__all__ = ["device_problem", "select_device", "set_seed", "memory_budget", "MEMORY_SHARE"]

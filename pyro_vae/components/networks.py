"""Encoder and decoder networks.

Encoders map ``x`` of shape ``(B, *data_shape)`` to ``(loc, scale)`` of q(z|x), each
``(B, latent_dim)``. Decoders map ``z`` of shape ``(..., latent_dim)`` (any number of
leading dims, e.g. particles x batch) to the likelihood's ``params`` of shape
``(..., *data_shape)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def mlp(sizes, final_activation=False):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if it is a half-precision type (under ``--precision bf16`` autocast), so the
    distributions and log-densities built from a network's output are computed in full precision."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


class GaussianHead(nn.Module):
    """Linear layer to (loc, scale) with scale = softplus(.) + 1e-4 (strictly positive)."""

    def __init__(self, in_features: int, latent_dim: int):
        super().__init__()
        self.loc = nn.Linear(in_features, latent_dim)
        self.scale = nn.Linear(in_features, latent_dim)

    def forward(self, h):
        return full_precision(self.loc(h)), F.softplus(full_precision(self.scale(h))) + 1e-4


class PointHead(nn.Module):
    """The location half of a :class:`GaussianHead`, for a point-mass guide: ``(loc, 0)``."""

    def __init__(self, loc: nn.Linear):
        super().__init__()
        self.loc = loc

    def forward(self, h):
        loc = full_precision(self.loc(h))
        return loc, torch.zeros_like(loc)


class MLPEncoder(nn.Module):
    """x -> flatten -> [Linear, ReLU] * len(hidden) -> (loc, scale). A missing entry (NaN, which
    only a likelihood declaring ``missing_values`` lets through) is seen as 0."""

    def __init__(self, data_shape, latent_dim: int, hidden=(400,)):
        super().__init__()
        self.data_shape = tuple(data_shape)
        d = math.prod(self.data_shape)
        hidden = tuple(hidden)
        self.body = mlp((d,) + hidden, final_activation=True)
        self.head = GaussianHead(hidden[-1] if hidden else d, latent_dim)

    def forward(self, x):
        h = x.reshape(*x.shape[: x.dim() - len(self.data_shape)], -1)
        return self.head(self.body(torch.nan_to_num(h, nan=0.0)))


class MLPDecoder(nn.Module):
    """z -> [Linear, ReLU] * len(hidden) -> Linear -> reshape to data_shape."""

    def __init__(self, data_shape, latent_dim: int, hidden=(400,)):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.net = mlp((latent_dim,) + tuple(reversed(tuple(hidden))) + (math.prod(self.data_shape),))

    def forward(self, z):
        return full_precision(self.net(z)).reshape(*z.shape[:-1], *self.data_shape)


def _check_image_shape(data_shape):
    if len(data_shape) != 3:
        raise ValueError(
            f"conv networks need image data of shape (C, H, W); got data shape {tuple(data_shape)}. "
            f"Use --network mlp for flat vectors."
        )
    c, h, w = data_shape
    if h < 4 or w < 4:
        raise ValueError(f"conv networks need images of at least 4x4 pixels, got {h}x{w}")


class ConvEncoder(nn.Module):
    """(C, H, W) -> conv 4x4/2 (32) -> conv 4x4/2 (64) -> Linear(hidden) -> (loc, scale)."""

    def __init__(self, data_shape, latent_dim: int, hidden=(256,), channels=(32, 64)):
        super().__init__()
        _check_image_shape(data_shape)
        self.data_shape = tuple(data_shape)
        c, h, w = self.data_shape
        layers, prev = [], c
        for ch in channels:
            layers += [nn.Conv2d(prev, ch, 4, stride=2, padding=1), nn.ReLU()]
            prev = ch
        self.conv = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, c, h, w)).numel()
        hidden = tuple(hidden)
        self.fc = mlp((flat,) + hidden, final_activation=True)
        self.head = GaussianHead(hidden[-1] if hidden else flat, latent_dim)

    def forward(self, x):
        lead = x.shape[:-3]
        h = self.conv(x.reshape(-1, *self.data_shape)).flatten(1)
        loc, scale = self.head(self.fc(h))
        return loc.reshape(*lead, -1), scale.reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """z -> Linear(hidden) -> Linear -> (64, ceil(H/4), ceil(W/4)) -> 2 transposed convs -> crop."""

    def __init__(self, data_shape, latent_dim: int, hidden=(256,), channels=(32, 64)):
        super().__init__()
        _check_image_shape(data_shape)
        self.data_shape = tuple(data_shape)
        c, h, w = self.data_shape
        n_up = len(channels)
        self.start = (channels[-1], math.ceil(h / 2**n_up), math.ceil(w / 2**n_up))
        self.fc = mlp((latent_dim,) + tuple(reversed(tuple(hidden))) + (math.prod(self.start),), final_activation=True)
        layers = []
        rev = list(reversed(channels)) + [c]
        for i, (a, b) in enumerate(zip(rev[:-1], rev[1:])):
            layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            if i < len(rev) - 2:
                layers.append(nn.ReLU())
        self.deconv = nn.Sequential(*layers)

    def forward(self, z):
        lead = z.shape[:-1]
        h = self.fc(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)
        out = self.deconv(h)[..., : self.data_shape[1], : self.data_shape[2]]
        return full_precision(out).reshape(*lead, *self.data_shape)


NETWORKS = {"mlp": (MLPEncoder, MLPDecoder), "conv": (ConvEncoder, ConvDecoder)}


def build_networks(kind: str, data_shape, latent_dim: int, hidden):
    """Return ``(encoder, decoder)`` of the named kind ('mlp' or 'conv')."""
    if kind not in NETWORKS:
        raise ValueError(f"unknown network {kind!r}; choose one of {', '.join(NETWORKS)}")
    enc, dec = NETWORKS[kind]
    return enc(data_shape, latent_dim, hidden), dec(data_shape, latent_dim, hidden)

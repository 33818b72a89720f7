"""Parts that several families share: the options of the networks, prior and likelihood
(:class:`NetworkConfig`), one-hot labels, inputs with a label attached, and a
classifier q(y|x) built from the library's encoder networks (M2's q(y|x), the Gaussian-mixture
VAE's q(cluster|x), the conditional VAE's inputs, M1's classifier on codes).

Shapes: batch (and enumeration) dims on the left, the feature dim last; a label vector is
``(..., C)``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from pyro_vae.components.networks import build_networks
from pyro_vae.models.base import option


@dataclass
class NetworkConfig:
    """The parts every VAE-like family is built from (each one a ``pyro-vae train`` flag)."""

    latent_dim: int = option(50, "size of z")
    hidden: tuple = option((400,), "hidden layer sizes (encoder; the decoder mirrors them)")
    network: str = option("mlp", "encoder/decoder networks: mlp or conv")
    prior: str = option("standard_normal", "p(z): a registered prior")
    likelihood: str = option("bernoulli", "p(x|z): a registered likelihood")
    prior_kwargs: dict = option({}, "options of the prior (--prior-OPTION)")
    likelihood_kwargs: dict = option({}, "options of the likelihood (--likelihood-OPTION)")


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(y.long(), num_classes).to(torch.get_default_dtype())


def cat_broadcast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Concatenate along the last dim after broadcasting the leading (batch, enumeration) dims."""
    lead = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    return torch.cat([a.expand(*lead, a.shape[-1]), b.expand(*lead, b.shape[-1])], -1)


def with_label(x: torch.Tensor, y1h: torch.Tensor, data_shape, conv: bool) -> torch.Tensor:
    """x with a (one-hot or soft) label vector attached, as the input of q(z|x,y): constant extra
    channels for a conv encoder of images, extra entries of the flattened x for an MLP."""
    if conv and len(data_shape) == 3:
        lead = torch.broadcast_shapes(x.shape[:-3], y1h.shape[:-1])
        h, w = data_shape[1:]
        return torch.cat(
            [x.expand(*lead, *x.shape[-3:]), y1h.expand(*lead, y1h.shape[-1])[..., None, None].expand(*lead, -1, h, w)],
            -3,
        )
    flat = x.reshape(*x.shape[: x.dim() - len(data_shape)], -1)
    return cat_broadcast(flat, y1h)


def label_encoder_shape(network: str, data_shape, num_classes: int) -> tuple:
    """The input shape of q(z|x,y) for :func:`with_label`."""
    if network == "conv":
        return (data_shape[0] + num_classes,) + tuple(data_shape[1:])
    return (math.prod(data_shape) + num_classes,)


@torch.no_grad()
def most_probable(classifier, x, batch_size: int = 1000) -> torch.Tensor:
    """argmax of ``classifier``'s logits for every row of ``x``, in batches."""
    return torch.cat([classifier(x[i : i + batch_size]).argmax(-1) for i in range(0, x.shape[0], batch_size)])


class Classifier(nn.Module):
    """logits of q(y|x): the family's encoder network with ``num_classes`` outputs (its location
    head), so the supervised-only baseline can be built with the very same architecture."""

    def __init__(self, network: str, data_shape, num_classes: int, hidden, dropout: float = 0.0):
        super().__init__()
        self.net, _ = build_networks(network, data_shape, num_classes, hidden)
        if not 0 <= dropout < 1:
            raise ValueError(f"classifier dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)

    def forward(self, x):
        if self.dropout and self.training:
            x = F.dropout(x, self.dropout, training=True)
        return self.net(x)[0]


__all__ = [
    "NetworkConfig",
    "one_hot",
    "cat_broadcast",
    "with_label",
    "label_encoder_shape",
    "most_probable",
    "Classifier",
]

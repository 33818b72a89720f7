"""A VAE with L stochastic layers, with the bottom-up guide of Burda et al. (2016) or the ladder
guide of Sonderby et al. (2016). ::

    model (top-down):  z_L ~ p(z_L),  z_l ~ N(mu_l(z_{l+1}), sigma_l(z_{l+1}))  for l = L-1..1,
                       x ~ p(x | decoder(z_1))
    bottom-up guide:   z_1 ~ q(z_1 | x),  z_l ~ q(z_l | z_{l-1})               for l = 2..L
    ladder guide:      d_1 = f_1(x), d_l = f_l(d_{l-1}), each giving (mu^_l, sigma^_l);
                       z_L ~ N(mu^_L, sigma^_L); for l = L-1..1 the top-down prior's
                       N(mu_l(z_{l+1}), sigma_l(z_{l+1})) (the model's own networks, shared) is
                       merged with N(mu^_l, sigma^_l) by precision weighting (:func:`precision_weighted`).

Both programs are in the plain form (``model(x)``/``guide(x)`` over ``pyro.plate("data", B)``).
Sites ``z1`` .. ``zL`` (``z1`` next to the data) are all latent and inside the data plate, so
training's :class:`pyro_vae.inference.scaling.ScaleSites` puts the KL weight on every layer (warm-up and
beta apply to each) and ``N/B`` on every site, and the evaluator reports active units and KL per
layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.components.distributions import ReparamNormal
from pyro_vae.components.likelihoods import build_likelihood
from pyro_vae.components.networks import GaussianHead, MLPEncoder, mlp, build_networks
from pyro_vae.components.priors import build_prior, check_prior
from pyro_vae.models.base import GENERIC_FIGURES, CodeFigures, Family, batch_size_of, option
from pyro_vae.models.parts import NetworkConfig
from pyro_vae.models.registry import register_model

GUIDES = ("bottomup", "ladder")


@dataclass
class HierarchicalConfig(NetworkConfig):
    """Options of the hierarchical VAE (each one a ``pyro-vae train`` flag)."""

    latent_dims: tuple = option((50, 20), "sizes of z_1 .. z_L, from the data up (L = how many)")
    upper_hidden: tuple = option((100, 100), "hidden layer sizes of the networks between stochastic layers")
    guide: str = option(
        "ladder",
        "bottomup (Burda et al. 2016: q(z_1|x) q(z_2|z_1) ...) or ladder (Sonderby et "
        "al. 2016: a bottom-up pass merged with the top-down prior)",
        choices=GUIDES,
    )


def precision_weighted(loc1, scale1, loc2, scale2):
    """The product of two Gaussians N(loc1, scale1^2) N(loc2, scale2^2), normalised:
    precision p = 1/scale1^2 + 1/scale2^2, mean (loc1/scale1^2 + loc2/scale2^2) / p,
    scale p^-1/2 (the ladder VAE's merge, Sonderby et al. 2016, eq. 18-19)."""
    p1, p2 = scale1.pow(-2), scale2.pow(-2)
    precision = p1 + p2
    return (loc1 * p1 + loc2 * p2) / precision, precision.rsqrt()


class LadderStep(nn.Module):
    """One deterministic step of the ladder guide's bottom-up pass: features -> MLP -> new
    features, and a Gaussian head on them (mu^_l, sigma^_l)."""

    def __init__(self, in_features: int, hidden, latent_dim: int):
        super().__init__()
        hidden = tuple(hidden)
        self.body = mlp((in_features,) + hidden, final_activation=True)
        self.head = GaussianHead(hidden[-1] if hidden else in_features, latent_dim)

    def forward(self, h):
        h = self.body(h)
        return h, self.head(h)


@register_model("hvae")
class HierarchicalVAE(CodeFigures, Family):
    """A VAE with ``len(latent_dims)`` >= 2 stochastic layers; see the module docstring."""

    Config = HierarchicalConfig
    figures = tuple(f for f in GENERIC_FIGURES if f != "manifold")  # the prior is over z_L, the decoder reads z_1

    def __init__(self, encoders, top_down, decoder, prior, likelihood, data_shape, latent_dims, guide="ladder"):
        super().__init__()
        if guide not in GUIDES:
            raise ValueError(f"guide must be one of {', '.join(GUIDES)}, got {guide!r}")
        self.latent_dims = tuple(int(s) for s in latent_dims)
        if len(self.latent_dims) < 2:
            raise ValueError(
                f"a hierarchical VAE needs at least 2 stochastic layers (latent_dims), got "
                f"{self.latent_dims}; a single layer is the plain VAE"
            )
        self.encoders = nn.ModuleList(encoders)  # bottom-up: q(z_l | z_{l-1}), or the ladder's steps
        self.top_down = nn.ModuleList(top_down)  # p(z_l | z_{l+1}) for l = 1..L-1
        self.decoder, self.prior, self.likelihood = decoder, prior, likelihood
        self.data_shape = tuple(int(s) for s in data_shape)
        self.guide_kind = guide
        self.latent_dim = self.latent_dims[0]  # what the generic figures decode from: z_1
        self.latent_sites = tuple(f"z{i + 1}" for i in range(len(self.latent_dims)))
        check_prior(prior, self.latent_dims[-1])

    @classmethod
    def from_config(cls, config: HierarchicalConfig, data_shape, num_classes=None) -> "HierarchicalVAE":
        dims = tuple(config.latent_dims)
        if len(dims) < 2:
            raise ValueError(
                f"a hierarchical VAE needs at least 2 stochastic layers: --latent-dims with 2 or more sizes, got {dims}"
            )
        encoder, decoder = build_networks(config.network, data_shape, dims[0], config.hidden)  # encoder: bottomup only
        up = tuple(config.upper_hidden)
        if config.guide == "ladder":
            if config.network != "mlp":
                raise ValueError("the ladder guide is built from MLPs: use --network mlp")
            encoders, features = [], math.prod(data_shape)
            for i, dim in enumerate(dims):
                hidden = tuple(config.hidden) if i == 0 else up
                encoders.append(LadderStep(features, hidden, dim))
                features = hidden[-1] if hidden else features
        else:
            encoders = [encoder] + [MLPEncoder((dims[i - 1],), dims[i], up) for i in range(1, len(dims))]
        top_down = [MLPEncoder((dims[i + 1],), dims[i], tuple(reversed(up))) for i in range(len(dims) - 1)]
        prior = build_prior(config.prior, dims[-1], **config.prior_kwargs)
        likelihood = build_likelihood(config.likelihood, data_shape, **config.likelihood_kwargs)
        return cls(encoders, top_down, decoder, prior, likelihood, data_shape, dims, config.guide)

    # ------------------------------------------------------------------ Pyro programs
    def model(self, x=None):
        """p(z_L) prod_l p(z_l | z_{l+1}) p(x | z_1); ``x=None`` draws from the prior predictive."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        L = len(self.latent_dims)
        with pyro.plate("data", batch_size_of(x)):
            z = pyro.sample(f"z{L}", self.prior())
            for layer in reversed(range(L - 1)):
                loc, scale = self.top_down[layer](z)
                z = pyro.sample(f"z{layer + 1}", dist.Normal(loc, scale).to_event(1))
            return pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x):
        """The bottom-up or the ladder guide (``guide`` option); see the module docstring."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with pyro.plate("data", x.shape[0]):
            if self.guide_kind == "bottomup":
                h = x
                for layer, encoder in enumerate(self.encoders):
                    loc, scale = encoder(h)
                    h = pyro.sample(f"z{layer + 1}", ReparamNormal(loc, scale).to_event(1))
                return
            ups = self._bottom_up(x)
            z = pyro.sample(f"z{len(ups)}", ReparamNormal(*ups[-1]).to_event(1))
            for layer in reversed(range(len(ups) - 1)):
                z = pyro.sample(f"z{layer + 1}", ReparamNormal(*self._merged(ups[layer], z, layer)).to_event(1))

    def _bottom_up(self, x):
        """The ladder guide's deterministic pass: ``[(mu^_l, sigma^_l) for l = 1..L]``."""
        h = x.reshape(*x.shape[: x.dim() - len(self.data_shape)], -1)
        ups = []
        for step in self.encoders:
            h, up = step(h)
            ups.append(up)
        return ups

    def _merged(self, up, z_above, layer):
        """q(z_l | x, z_{l+1}) of the ladder guide: N(mu^_l, sigma^_l) merged with the top-down
        p(z_l | z_{l+1})."""
        p_loc, p_scale = self.top_down[layer](z_above)
        return precision_weighted(up[0], up[1], p_loc, p_scale)

    # ------------------------------------------------------------------ helpers for figures
    @torch.no_grad()
    def encode(self, x):
        """``(loc, scale)`` of q(z_1 | x) (bottom-up), or of the ladder guide's z_1 given its
        top-down pass at the means."""
        self.check_shape(x)
        if self.guide_kind == "bottomup":
            return self.encoders[0](x)
        ups = self._bottom_up(x)
        loc, scale = ups[-1]
        for layer in reversed(range(len(ups) - 1)):
            loc, scale = self._merged(ups[layer], loc, layer)
        return loc, scale

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True):
        """``n`` images by ancestral sampling from z_L down."""
        z = self.prior().sample((n,))
        for layer in reversed(range(len(self.latent_dims) - 1)):
            loc, scale = self.top_down[layer](z)
            z = loc + scale * torch.randn_like(scale)
        params = self.decoder(z)
        return self.likelihood.mean(params) if mean else self.likelihood(params).sample()

"""A VAE whose guide is an inverse autoregressive flow (Kingma et al. 2016). ::

    guide:  z_0 ~ N(mu(x), diag sigma(x)^2),   z = f_T o ... o f_1 (z_0),
            f_t(z) = sigmoid(s_t(z)) * z + (1 - sigmoid(s_t(z))) * m_t(z)   (the "stable" IAF step)

with (m_t, s_t) an autoregressive network of z (MADE), so each step has a triangular Jacobian
and log q(z|x) = log N(z_0) - sum_t log ``|det df_t/dz|``. Built on
``pyro.distributions.transforms.AffineAutoregressive``; consecutive steps read the dimensions in
opposite orders. The model is the VAE's. A draw and its density come from one pass (the flow
caches the pair), so the evaluator needs nothing new; the density of a z the guide did not
draw itself (sticking-the-landing, DReG) inverts the flow, one pass per dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import AffineAutoregressive
from pyro.nn import AutoRegressiveNN
from torch import nn

from pyro_vae.components.priors import autoregressive_order
from pyro_vae.models.base import option
from pyro_vae.models.registry import register_model
from pyro_vae.models.vae import VAE, VAEConfig


@dataclass
class IAFConfig(VAEConfig):
    """Options of the IAF-guide VAE: the VAE's, and the flow's."""

    flow_steps: int = option(2, "inverse autoregressive flow steps after the Gaussian of q(z|x)")
    flow_hidden: int = option(0, "hidden units of each step's autoregressive network (0: 2 x latent_dim)", min=0)


@register_model("iaf")
class IAFVAE(VAE):
    """The VAE with q(z|x) an inverse autoregressive flow on top of the encoder's Gaussian."""

    Config = IAFConfig

    def __init__(
        self,
        encoder,
        decoder,
        prior,
        likelihood,
        data_shape,
        latent_dim,
        flow_steps: int = 2,
        flow_hidden: int = 0,
        **kwargs,
    ):
        super().__init__(encoder, decoder, prior, likelihood, data_shape, latent_dim, **kwargs)
        if self.estimator != "reparam":
            raise ValueError("the IAF guide is reparameterized; --estimator score* applies to the plain VAE")
        if isinstance(flow_steps, bool) or not isinstance(flow_steps, int) or flow_steps < 1:
            raise ValueError(f"flow_steps must be a whole number >= 1, got {flow_steps!r}")
        width = int(flow_hidden) or 2 * self.latent_dim
        self.flows = nn.ModuleList(
            AffineAutoregressive(
                AutoRegressiveNN(self.latent_dim, [width], permutation=autoregressive_order(self.latent_dim, t)),
                stable=True,
            )
            for t in range(flow_steps)
        )

    @property
    def default_objective(self) -> str:
        return "trace"

    @classmethod
    def from_config(cls, config: IAFConfig, data_shape, num_classes=None) -> "IAFVAE":
        base = VAE.from_config(config, data_shape)
        return cls(
            base.encoder,
            base.decoder,
            base.prior,
            base.likelihood,
            data_shape,
            config.latent_dim,
            flow_steps=config.flow_steps,
            flow_hidden=config.flow_hidden,
            noise=config.noise,
            noise_rate=config.noise_rate,
            estimator=config.estimator,
        )

    def posterior(self, x) -> dist.TransformedDistribution:
        """q(z|x): the encoder's Gaussian pushed through the flow."""
        loc, scale = self.encoder(self.encoder_input(x))
        return dist.TransformedDistribution(dist.Normal(loc, scale).to_event(1), list(self.flows))

    def guide(self, x):
        """z_0 ~ N(encoder(x)), z = flow(z_0)."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.posterior(x))

    @torch.no_grad()
    def encode(self, x):
        """``(flow(mu), sigma)``: the encoder's mean pushed through the flow (a typical z of
        q(z|x), what the figures show), and the scale of the Gaussian before the flow."""
        self.check_shape(x)
        loc, scale = self.encoder(x)
        for f in self.flows:
            loc = f(loc)
        return loc, scale

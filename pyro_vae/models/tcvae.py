"""beta-TCVAE: Chen, Li, Grosse & Duvenaud (2018), "Isolating Sources of Disentanglement in
Variational Autoencoders".

    model:  z ~ N(0, I),  x ~ p(x | decoder(z))                 for each image in pyro.plate("data")
    guide:  z ~ q(z|x) = N(encoder(x).loc, diag encoder(x).scale^2)

Averaged over the data, the KL term of the ELBO splits in three (Chen et al., eq. 2), with
q(z) = E_p(x)[q(z|x)] the aggregate posterior and d = 1..D the dimensions of z:

    E_p(x) KL(q(z|x) || p(z)) = I_q(x; z)                    index-code mutual information
                              + KL(q(z) || prod_d q(z_d))    total correlation, TC
                              + sum_d KL(q(z_d) || p(z_d))   dimension-wise KL

beta-TCVAE weighs the TC by beta and the other two by 1. The programs are the VAE's (inherited from it),
written as Pyro's tutorial writes them; training applies the KL weight w (its beta and warm-up)
to the site ``z`` and N/B to the data plate (:mod:`pyro_vae.inference.scaling`). The TC penalty is the
family's :meth:`TCVAE.extra_loss`, so the loss per data set of N images is

    -ELBO_w + w * tc_weight * N * TC,      tc_weight = beta - 1 (default 5: beta = 6),

that is E[log p(x|z)] - w * (I + (1 + tc_weight) TC + dimension-wise KL), Chen et al.'s
objective with beta = 1 + tc_weight when w = 1.

The TC estimate (:func:`total_correlation`) is Chen et al.'s minibatch-weighted sampling. For a
batch of M images, one draw z_i ~ q(z|x_i) each (z: (M, D)), and l_ijd = log q(z_id | x_j)
((M, M, D), q(z|x) factorized over d):

    log q(z_i)          ~ logsumexp_j sum_d l_ijd - log M
    sum_d log q(z_id)   ~ sum_d (logsumexp_j l_ijd - log M)
    TC                  ~ mean_i [log q(z_i) - sum_d log q(z_id)]

Chen et al. subtract log(N M) where this subtracts log M; their estimate is this one plus
(D - 1) log N, a constant with no gradient. It is left out so the loss has no offset of
tc_weight * (D - 1) log N nats per image. So defined, the estimate is that of the batch's own
aggregate posterior (1/M) sum_j q(z|x_j): exactly 0 when q(z|x) does not depend on x, near 0
for independent codes, positive for correlated ones, and biased upwards when q(z|x) is narrow
against the spread of the codes (the term j = i weighs more in the joint than in each marginal).
The penalty draws its own z (the ELBO's draw lives inside the objective), reparameterized, so
its gradient reaches the encoder.

Measures: ``total_correlation`` of the codes of the first :data:`METRIC_POINTS` images (a fixed
draw). Figure: ``traversals``, each row one latent dimension swept over the prior's range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch

from pyro_vae.components.likelihoods import build_likelihood
from pyro_vae.components.networks import build_networks
from pyro_vae.components.priors import build_prior
from pyro_vae.models.base import GENERIC_FIGURES, option
from pyro_vae.models.registry import register_model
from pyro_vae.models.vae import VAE

METRIC_POINTS = 2000  # images the measure uses: its bias depends on the batch size, so it is fixed
CHUNK = 256  # rows i of the (M, M, D) log-densities made at a time


@dataclass
class TCVAEConfig:
    """Options of beta-TCVAE (each one a ``pyro-vae train`` flag)."""

    latent_dim: int = option(10, "size of z")
    hidden: tuple = option((400,), "hidden layer sizes (encoder; the decoder mirrors them)")
    network: str = option("mlp", "encoder/decoder networks: mlp or conv")
    likelihood: str = option("bernoulli", "p(x|z): a registered likelihood")
    likelihood_kwargs: dict = option({}, "options of the likelihood (--likelihood-OPTION)")
    tc_weight: float = option(
        5.0,
        "weight beta - 1 of the total-correlation penalty (Chen et al. 2018: beta = 1 + tc_weight; 0: the plain VAE)",
        min=0,
    )


def total_correlation(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """Per-point estimates TC_i (shape ``(M,)``; their mean estimates the TC) of the batch's
    aggregate posterior, from codes ``z`` ``(M, D)`` drawn from N(``loc``, ``scale``^2) (each
    ``(M, D)``); see the module docstring. Rows are made ``chunk`` at a time: memory
    ``chunk * M * D`` numbers, not ``M * M * D``."""
    m = z.shape[0]
    q = dist.Normal(loc[None], scale[None])  # q(. | x_j) along dim 1
    out = []
    for i in range(0, m, chunk):
        log_q = q.log_prob(z[i : i + chunk, None, :])  # (rows, M, D): log q(z_id | x_j)
        joint = torch.logsumexp(log_q.sum(-1), dim=1) - math.log(m)
        marginals = (torch.logsumexp(log_q, dim=1) - math.log(m)).sum(-1)
        out.append(joint - marginals)
    return torch.cat(out)


@register_model("tcvae")
class TCVAE(VAE):
    """beta-TCVAE: the VAE's programs (inherited), with a total-correlation penalty as :meth:`extra_loss`.

    Args:
        encoder: ``x (B, *data_shape) -> (loc, scale)`` of q(z|x), each ``(B, latent_dim)``.
        decoder: ``z (..., latent_dim) -> params (..., *data_shape)``.
        prior: a module whose ``forward()`` is N(0, I) over ``(latent_dim,)``.
        likelihood: a module mapping ``params`` to a distribution over one data point.
        tc_weight: beta - 1 of Chen et al.
    """

    Config = TCVAEConfig
    figures = GENERIC_FIGURES + ("traversals",)
    figure_titles = {
        "traversals": (
            "Latent traversals: each row one dimension of z swept from -2.5 to 2.5, the "
            "others at the code of a test image",
            "Rows of images, each changing along one latent dimension",
        )
    }
    metric_notes = {
        "total_correlation": f"KL(q(z) || prod_d q(z_d)) of the codes of up to {METRIC_POINTS} images, "
        f"nats (minibatch estimate, one draw each)"
    }

    def __init__(self, encoder, decoder, prior, likelihood, data_shape, latent_dim, tc_weight=5.0):
        super().__init__(encoder, decoder, prior, likelihood, data_shape, latent_dim)
        if not tc_weight >= 0:
            raise ValueError(f"tc_weight is beta - 1 >= 0, got {tc_weight}")
        self.tc_weight = float(tc_weight)

    @classmethod
    def from_config(cls, config: TCVAEConfig, data_shape, num_classes=None) -> "TCVAE":
        encoder, decoder = build_networks(config.network, data_shape, config.latent_dim, config.hidden)
        return cls(
            encoder,
            decoder,
            build_prior("standard_normal", config.latent_dim),
            build_likelihood(config.likelihood, data_shape, **config.likelihood_kwargs),
            data_shape,
            config.latent_dim,
            config.tc_weight,
        )

    # ------------------------------------------------------------------ the TC penalty
    def extra_loss(self, batch, num_data=None, kl_weight=1.0):
        """w * tc_weight * N * TC on the batch (a fresh reparameterized draw of z); None for
        ``tc_weight`` 0 or a batch of one image, whose TC estimate is 0."""
        if self.tc_weight == 0 or len(batch) < 2:
            return None
        loc, scale = self.encoder(batch.x)
        z = loc + scale * torch.randn_like(scale)
        return kl_weight * self.tc_weight * (num_data or len(batch)) * total_correlation(z, loc, scale).mean()

    @torch.no_grad()
    def metrics(self, batch) -> dict:
        """``total_correlation`` of the first :data:`METRIC_POINTS` images' codes, from a draw
        with a fixed seed (the same images give the same number; the global random stream is
        not touched)."""
        x = batch.x[:METRIC_POINTS]
        if x.shape[0] < 2:
            return {}
        loc, scale = self.encoder(x)
        eps = torch.randn(
            scale.shape, generator=torch.Generator(scale.device).manual_seed(0), device=scale.device, dtype=scale.dtype
        )
        return {"total_correlation": total_correlation(loc + scale * eps, loc, scale).mean().item()}

    # ------------------------------------------------------------------ figures
    def figure(self, name, data, path):
        if name == "traversals":
            return self.plot_traversals(data.x, path)
        return super().figure(name, data, path)

    @torch.no_grad()
    def plot_traversals(self, x, path, rows: int = 10, steps: int = 9, reach: float = 2.5):
        """Latent traversals: from the code mean of the first image in ``x``, one row per
        dimension of z (the ``rows`` whose means vary most over ``x``, most first), that
        dimension set to ``steps`` values in [-reach, reach] (prior standard deviations), E[x|z]."""
        from pyro_vae.drawing import plot_image_rows

        loc, _ = self.encode(x[:METRIC_POINTS])
        dims = (
            loc.var(0).argsort(descending=True)[:rows]
            if loc.shape[0] > 1
            else torch.arange(min(rows, self.latent_dim), device=loc.device)
        )
        z = loc[0].repeat(len(dims), steps, 1)  # (rows, steps, D)
        values = torch.linspace(-reach, reach, steps, device=loc.device)
        z[torch.arange(len(dims)), :, dims] = values
        images = self.decode(z)
        return plot_image_rows(
            images.cpu(),
            path,
            f"Traversals of the {len(dims)} most varied dimensions of z (rows), from {-reach} to {reach}",
        )

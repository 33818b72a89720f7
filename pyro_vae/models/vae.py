"""The VAE: a generative model p(z) p(x|z) and an amortized guide q(z|x), as Pyro programs.

    model:  z ~ p(z),  x ~ p(x | decoder(z))        for each image in pyro.plate("data")
    guide:  z ~ N(encoder(x).loc, encoder(x).scale)  for each image in pyro.plate("data")

Both are written as Pyro's VAE tutorial writes them, ``model(x)`` and ``guide(x)`` over a plain
``pyro.plate("data", B)``. Training runs them under :class:`pyro_vae.inference.scaling.ScaleSites`, so
``Trace_ELBO`` on the pair estimates, per data set,

    ELBO = sum_n  E_q[log p(x_n|z)] - beta * KL(q(z|x_n) || p(z))

with beta (and the KL warm-up) on the ``z`` site in *both* programs, and the batch scaled up to
the data set by ``num_data / B`` on every site. ``pyro_vae.inference.scaling.Scaled(vae)`` gives the
programs with ``kl_weight``/``num_data`` keywords, for an objective called by hand.
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
from pyro_vae.components.networks import build_networks
from pyro_vae.components.priors import build_prior, check_prior
from pyro_vae.models.base import CodeFigures, Family, batch_size_of, option
from pyro_vae.models.parts import NetworkConfig
from pyro_vae.models.registry import register_model


NOISES = ("none", "mask", "gaussian")
ESTIMATORS = ("reparam", "score", "score-avg", "score-baseline")


@dataclass
class DenoisingConfig(NetworkConfig):
    """A network config with the denoising option (the autoencoder and the VAE)."""

    noise: str = option(
        "none",
        "denoising: the encoder sees a corrupted x during training (mask: each value "
        "zeroed with probability --noise-rate; gaussian: N(0, rate^2) added), the "
        "likelihood scores the clean x",
        choices=NOISES,
    )
    noise_rate: float = option(
        0.25,
        "corruption rate of --noise (mask probability, or Gaussian noise std)",
        only_with={"noise": ("mask", "gaussian")},
    )


@dataclass
class VAEConfig(DenoisingConfig):
    """Options of the VAE family (each one a ``pyro-vae train`` flag)."""

    estimator: str = option(
        "reparam",
        "gradient of the ELBO through the guide's sample: reparam "
        "(z = mu + sigma * eps), score (score function / REINFORCE), score-avg "
        "(with a decaying-average baseline), score-baseline (plus a learned "
        "baseline network of x); the score estimators train with TraceGraph_ELBO",
        choices=ESTIMATORS,
    )


def check_noise(noise: str, rate: float) -> None:
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {', '.join(NOISES)}, got {noise!r}")
    if noise == "mask" and not 0.0 <= rate < 1.0:
        raise ValueError(f"noise_rate of mask noise is a probability in [0, 1), got {rate}")
    if noise == "gaussian" and not rate >= 0.0:
        raise ValueError(f"noise_rate of gaussian noise is a standard deviation >= 0, got {rate}")


def corrupt(x: torch.Tensor, noise: str, rate: float) -> torch.Tensor:
    """The denoising corruption of x: ``mask`` zeroes each value with probability ``rate``,
    ``gaussian`` adds N(0, rate^2) noise, ``none`` returns x."""
    if noise == "none" or rate == 0:
        return x
    if noise == "mask":
        return x * (torch.rand_like(x) >= rate).to(x.dtype)
    if noise == "gaussian":
        return x + rate * torch.randn_like(x)
    raise ValueError(f"unknown noise {noise!r}; one of {', '.join(NOISES)}")


class BaselineNet(nn.Module):
    """A learned baseline b(x) for the score-function estimator: x -> 100 ReLU units -> a number
    per data point (trained by ``TraceGraph_ELBO`` to predict the downstream cost)."""

    def __init__(self, data_shape, hidden: int = 100):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.net = nn.Sequential(nn.Linear(math.prod(self.data_shape), hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x.reshape(*x.shape[: x.dim() - len(self.data_shape)], -1)).squeeze(-1)


class ScoreFunctionNormal(dist.Normal):
    """A Normal that Pyro treats as not reparameterizable: a draw carries no gradient back to
    loc and scale, so Pyro's objectives estimate that gradient with the score function,
    grad log q(z) * (cost - baseline). (A class attribute, so it survives Pyro's broadcasting.)"""

    has_rsample = False


AVG_BASELINE_PARAM = "__baseline_avg_downstream_cost_{}"  # where Pyro keeps a site's decaying average


def _fit_avg_baseline(site: str, batch_size: int) -> None:
    """Pyro keeps the decaying-average baseline per batch position, shaped like the first batch;
    a batch of another size (the last one of an epoch) would not match it, so it is first
    averaged over positions (the positions of shuffled batches estimate the same number) and
    spread over the new batch size."""
    store = pyro.get_param_store()
    name = AVG_BASELINE_PARAM.format(site)
    if name in store and store[name].dim() > 0 and store[name].shape[-1] != batch_size:
        old = store[name].detach()
        store[name] = old.mean(-1, keepdim=True).expand(*old.shape[:-1], batch_size).clone()


def _library_parts(*modules) -> bool:
    """Whether every module (and every submodule) is one of pyro-vae's or torch's own classes."""
    return all(
        type(m).__module__.split(".")[0] in ("pyro_vae", "torch") for module in modules for m in module.modules()
    )


@register_model("vae")
class VAE(CodeFigures, Family):
    """A VAE from four replaceable parts.

    Args:
        encoder: ``x (B, *data_shape) -> (loc, scale)`` of q(z|x), each ``(B, latent_dim)``.
        decoder: ``z (..., latent_dim) -> params (..., *data_shape)``.
        prior: module whose ``forward()`` returns a distribution with event_shape ``(latent_dim,)``.
        likelihood: module mapping ``params`` to a distribution with event_shape ``data_shape``.
        data_shape: shape of one data point, e.g. ``(1, 28, 28)``.
        latent_dim: size of z.

    Parameters live in this module (``state_dict()`` is the checkpoint). ``model``/``guide``
    also register them with ``pyro.module`` under a name unique to this instance, so
    ``pyro.infer.SVI`` with a ``pyro.optim`` optimizer trains them too.
    """

    Config = VAEConfig

    def __init__(
        self,
        encoder,
        decoder,
        prior,
        likelihood,
        data_shape,
        latent_dim,
        noise="none",
        noise_rate=0.0,
        estimator="reparam",
    ):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.prior, self.likelihood = prior, likelihood
        self.data_shape = tuple(int(s) for s in data_shape)
        self.latent_dim = int(latent_dim)
        if getattr(prior, "needs_encoder", False):  # the VampPrior: a mixture of this guide at pseudo-inputs
            prior.attach(self.encoder)
        check_prior(prior, self.latent_dim)
        check_noise(noise, noise_rate)
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
        self.noise, self.noise_rate, self.estimator = noise, float(noise_rate), estimator
        self.baseline_net = BaselineNet(self.data_shape) if estimator == "score-baseline" else None

    @property
    def default_objective(self) -> str:
        """``graph`` for the score-function estimators (Rao-Blackwellized, with baselines);
        otherwise ``jit`` (Trace_ELBO compiled: the same estimator with less Python per step) when
        every part is the library's own, whose programs have no data-dependent Python control flow
        for tracing to freeze; a user's own part keeps the uncompiled ``trace`` (pass
        ``objective="jit"`` to compile it anyway)."""
        if self.estimator != "reparam":
            return "graph"
        return "jit" if _library_parts(self.encoder, self.decoder, self.prior, self.likelihood) else "trace"

    @classmethod
    def from_config(cls, config: VAEConfig, data_shape, num_classes=None) -> "VAE":
        encoder, decoder = build_networks(config.network, data_shape, config.latent_dim, config.hidden)
        prior = build_prior(config.prior, config.latent_dim, data_shape=data_shape, **config.prior_kwargs)
        likelihood = build_likelihood(config.likelihood, data_shape, **config.likelihood_kwargs)
        return cls(
            encoder,
            decoder,
            prior,
            likelihood,
            data_shape,
            config.latent_dim,
            noise=config.noise,
            noise_rate=config.noise_rate,
            estimator=config.estimator,
        )

    # ------------------------------------------------------------------ Pyro programs
    def model(self, x=None):
        """p(z) p(x|z). ``x=None`` draws one x from the prior predictive
        (``pyro.infer.Predictive`` draws many)."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with pyro.plate("data", batch_size_of(x)):
            z = pyro.sample("z", self.prior())
            return pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def encoder_input(self, x):
        """What the encoder sees: x, corrupted during training when denoising (``noise``)."""
        return corrupt(x, self.noise, self.noise_rate) if self.training else x

    def guide(self, x):
        """q(z|x) = N(z; mu(x), diag sigma(x)^2): reparameterized (``estimator="reparam"``), or
        marked non-reparameterizable so Pyro's objectives use the score-function estimator
        (``"score"``; ``"score-avg"``/``"score-baseline"`` add Pyro's baselines)."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(self.encoder_input(x))
            infer = {}
            if self.estimator == "reparam":
                q = ReparamNormal(loc, scale)
            else:
                q = ScoreFunctionNormal(loc, scale)
                baseline = {}
                if self.estimator in ("score-avg", "score-baseline"):
                    _fit_avg_baseline("z", x.shape[0])
                    baseline["use_decaying_avg_baseline"] = True
                if self.baseline_net is not None:
                    baseline.update(nn_baseline=self.baseline_net, nn_baseline_input=x)
                infer = {"baseline": baseline} if baseline else {}
            pyro.sample("z", q.to_event(1), infer=infer)

    # ------------------------------------------------------------------ helpers
    @torch.no_grad()
    def encode(self, x):
        """Return ``(loc, scale)`` of q(z|x)."""
        self.check_shape(x)
        return self.encoder(x)

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True):
        """Draw ``n`` images: z ~ p(z), then E[x|z] (``mean=True``) or x ~ p(x|z)."""
        z = self.prior().sample((n,))
        params = self.decoder(z)
        return self.likelihood.mean(params) if mean else self.likelihood(params).sample()

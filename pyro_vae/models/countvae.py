"""A VAE for counts with a size factor, in the manner of scVI (Lopez, Regier, Cole, Jordan & Yosef
2018, "Deep generative modeling for single-cell transcriptomics").

For data point n (a cell) with counts x_n of G features (genes)::

    model:  z_n ~ N(0, I)                                  in pyro.plate("data")
            rho_n = softmax(decoder(z_n))                  proportions, (G,)
            l_n   = log library size, one of
                      observed: log sum_g x_ng             (scVI's use_observed_lib_size)
                      inferred: l_n ~ N(library_loc, library_scale^2), a latent site "l"
                      none:     no size factor: log mu_n = decoder(z_n) itself
            x_ng ~ p(x | log mu_ng = log rho_ng + l_n)     a count likelihood: poisson, nb, zinb
    guide:  z_n ~ N(encoder(log1p x_n))
            l_n ~ N(log(1 + sum_g x_ng) + a(log1p x_n), s(log1p x_n)^2)   (inferred only)

So exp(l_n) ~ LogNormal, as in scVI, whose prior takes its mean and variance from the training
data's log library sizes: here ``library_loc``, ``library_scale`` are the mean and standard
deviation of log sum_g x_ng over the data given to :meth:`CountVAE.set_library_prior` (the whole
training set, from Python), or else over the first training batch (the command line), set once
and kept in the checkpoint. The observed mode also uses them, to draw a library for samples.
The guide of l is centred on the observed log total, with a learned correction, so training
does not first spend thousands of steps moving it from 0 to log 2000.

**KL weight.** The family declares ``kl_sites = ("z",)``: beta and the KL warm-up scale the
KL term of z only; the l term always has weight 1 (as scvi-tools, which warms up the KL of z
alone). Both get the data-set scale N/B.

**What log p(x) means.** With ``library="inferred"`` (or ``"none"``) the model is a distribution of x
and the evaluator's importance-sampled log p(x) integrates z and l out. With ``"observed"`` it
is log p(x | l = log sum x), conditional on the library that x itself gives: compare it only with
other models conditioned on the same library (benchmarks/counts.py does both).

Data: a matrix of counts (N, G), whole numbers >= 0 (the likelihood checks); with the observed
library every row needs at least one count.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch

from pyro_vae.components.distributions import ReparamNormal
from pyro_vae.components.likelihoods import LIKELIHOODS, build_likelihood
from pyro_vae.components.networks import build_networks
from pyro_vae.models.base import Family, batch_size_of, option
from pyro_vae.models.registry import register_model

logger = logging.getLogger(__name__)

LIBRARIES = ("observed", "inferred", "none")
MIN_LIBRARY_SCALE = 1e-3  # the prior's log-library sd when every cell has the same total
FIGURE_CELLS = 2000  # cells the mean-variance figure uses


def count_likelihoods() -> list:
    """The registered likelihoods of counts (those whose class says ``count_data``)."""
    return sorted(name for name, cls in LIKELIHOODS.items() if getattr(cls, "count_data", False))


@dataclass
class CountVAEConfig:
    """Options of the count VAE (each one a ``pyro-vae train`` flag)."""

    latent_dim: int = option(10, "size of z")
    hidden: tuple = option((128,), "hidden layer sizes (encoder; the decoder mirrors them)")
    likelihood: str = option("nb", "p(x|z): a count likelihood (poisson, nb, zinb)")
    likelihood_kwargs: dict = option({}, "options of the likelihood (--likelihood-OPTION)")
    library: str = option(
        "observed",
        "the size factor: observed (each row's total count scales the decoder's "
        "proportions), inferred (a latent log-library l with a LogNormal prior, as "
        "scVI), none (the decoder gives the mean itself)",
        choices=LIBRARIES,
    )


def log_totals(x: torch.Tensor) -> torch.Tensor:
    """log sum_g x_ng, ``(N,)``: the observed log library sizes."""
    return x.sum(-1).log()


@register_model("countvae")
class CountVAE(Family):
    """The scVI-style count VAE (see the module docstring).

    Args:
        data_shape: ``(G,)``, the number of features.
        latent_dim: size of z.
        hidden: hidden layer sizes of the MLPs (encoders; the decoder mirrors them).
        likelihood: a count likelihood module (``params`` = log mean; :mod:`pyro_vae.components.counts`).
        library: ``observed``, ``inferred`` or ``none``.
    """

    Config = CountVAEConfig
    default_objective = "jit"  # Trace_ELBO compiled: the programs have no data-dependent Python branch
    kl_sites = ("z",)  # the KL weight (beta, warm-up) on z only; l's KL keeps weight 1, as in scvi-tools
    figures = ("latent_space", "mean_variance")
    figure_titles = {
        "mean_variance": (
            "Mean against variance of each gene's counts, test cells and one posterior "
            "predictive draw for each (the line: Poisson, variance = mean)",
            "Log-log scatter of per-gene means and variances, data and model draws",
        )
    }

    def __init__(self, data_shape, latent_dim: int, hidden, likelihood, library: str = "observed"):
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        if len(self.data_shape) != 1:
            raise ValueError(
                f"the count VAE models a vector of counts per data point, data of shape (N, G); got data "
                f"points of shape {self.data_shape}: flatten them"
            )
        if library not in LIBRARIES:
            raise ValueError(f"library must be one of {', '.join(LIBRARIES)}, got {library!r}")
        if not getattr(likelihood, "count_data", False):
            raise ValueError(
                f"the count VAE needs a likelihood of counts ({', '.join(count_likelihoods())}), got "
                f"{type(likelihood).__name__}"
            )
        self.latent_dim, self.library = int(latent_dim), library
        self.encoder, self.decoder = build_networks("mlp", self.data_shape, self.latent_dim, hidden)
        self.library_encoder = build_networks("mlp", self.data_shape, 1, hidden)[0] if library == "inferred" else None
        self.likelihood = likelihood
        self.register_buffer("library_loc", torch.tensor(math.nan))  # set from data: set_library_prior
        self.register_buffer("library_scale", torch.tensor(math.nan))
        self.latent_sites = ("z", "l") if library == "inferred" else ("z",)

    @classmethod
    def from_config(cls, config: CountVAEConfig, data_shape, num_classes=None) -> "CountVAE":
        if config.likelihood not in count_likelihoods():
            raise ValueError(
                f"the count VAE needs a likelihood of counts ({', '.join(count_likelihoods())}), got "
                f"{config.likelihood!r}"
            )
        likelihood = build_likelihood(config.likelihood, data_shape, **config.likelihood_kwargs)
        return cls(data_shape, config.latent_dim, config.hidden, likelihood, config.library)

    # ------------------------------------------------------------------ the library prior
    @torch.no_grad()
    def set_library_prior(self, x: torch.Tensor) -> None:
        """Set the prior of the log library, N(``library_loc``, ``library_scale``^2), to the mean
        and standard deviation of the log row totals of counts ``x`` (N, G) (rows without counts
        left out)."""
        logs = log_totals(x)
        logs = logs[torch.isfinite(logs)]
        if logs.numel() == 0:
            raise ValueError("the library prior needs counts: every row of these data sums to 0")
        self.library_loc.fill_(logs.mean())
        self.library_scale.fill_(logs.std(correction=0).clamp(min=MIN_LIBRARY_SCALE) if logs.numel() > 1 else 1.0)

    @property
    def library_prior_set(self) -> bool:
        return bool(torch.isfinite(self.library_loc))

    def library_prior(self):
        """N(library_loc, library_scale^2) over l, the log library size."""
        if not self.library_prior_set:
            raise ValueError(
                "the count VAE's library prior is not set: train the model first (it is set from the "
                "first training batch), or call set_library_prior(training counts)"
            )
        return dist.Normal(self.library_loc, self.library_scale)

    def check_batch(self, batch) -> None:
        super().check_batch(batch)
        self._check_totals(batch.x)

    def _check_totals(self, x) -> None:
        """With the observed library, a row without counts would have a mean of 0 and log 0 = -inf."""
        if self.library == "observed" and x is not None:
            empty = (x.sum(-1) <= 0).nonzero()
            if empty.numel():
                raise ValueError(
                    f"with the observed library size every row needs at least one count; row "
                    f"{int(empty[0, 0])} sums to 0 ({empty.numel()} such rows): drop the empty rows, or "
                    f"use library='inferred'"
                )

    # ------------------------------------------------------------------ Pyro programs
    def log_mean(self, z, l=None):
        """log mu (..., G): log softmax(decoder(z)) + l, or decoder(z) itself for ``library="none"``."""
        out = self.decoder(z)
        return out if self.library == "none" else out.log_softmax(-1) + l.unsqueeze(-1)

    def args(self, batch) -> tuple:
        """``(x,)``. Here, outside the programs (so they have no data-dependent branch and compile
        under JIT): the first training batch sets the library prior when nothing has
        (:meth:`set_library_prior`), and with the observed library a row without counts is refused."""
        x = batch.x
        if self.training and self.library != "none" and not self.library_prior_set:
            self.set_library_prior(x)
            logger.info(
                "note: the count VAE's library prior is N(%.3f, %.3f^2), from the log totals of the first "
                "training batch (%d rows)",
                float(self.library_loc),
                float(self.library_scale),
                x.shape[0],
            )
        self._check_totals(x)
        return (x,)

    def model(self, x=None):
        """p(z) [p(l)] p(x | z, l). ``x=None`` draws one x from the prior predictive (l from the
        library prior in every mode but ``none``)."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with pyro.plate("data", batch_size_of(x)):
            z = pyro.sample("z", dist.Normal(self.library_loc.new_zeros(self.latent_dim), 1.0).to_event(1))
            l = None
            if self.library == "inferred" or (self.library == "observed" and x is None):
                l = pyro.sample("l", self.library_prior())
            elif self.library == "observed":
                l = log_totals(x)
            return pyro.sample("x", self.likelihood(self.log_mean(z, l)), obs=x)

    def guide(self, x):
        """q(z|x) = N(encoder(log1p x)); with the inferred library also q(l|x), centred on the
        observed log(1 + total)."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        h = torch.log1p(x)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(h)
            pyro.sample("z", ReparamNormal(loc, scale).to_event(1))
            if self.library == "inferred":
                pyro.sample("l", dist.Normal(*self.library_posterior(x, h)))

    def library_posterior(self, x, h=None):
        """(loc, scale) of q(l|x), each (N,)."""
        loc, scale = self.library_encoder(torch.log1p(x) if h is None else h)
        return torch.log1p(x.sum(-1)) + loc[..., 0], scale[..., 0]

    # ------------------------------------------------------------------ abilities
    def prior(self):
        """p(z) = N(0, I)."""
        return dist.Normal(self.library_loc.new_zeros(self.latent_dim), 1.0).to_event(1)

    @torch.no_grad()
    def encode(self, x):
        """``(loc, scale)`` of q(z|x)."""
        self.check_shape(x)
        return self.encoder(torch.log1p(x))

    @torch.no_grad()
    def decode(self, z, l=None):
        """E[x | z, l] for codes z (..., latent_dim); l the log library (default: the prior's mean)."""
        if l is None and self.library != "none":
            l = self.library_prior().mean.expand(z.shape[:-1])
        return self.likelihood.mean(self.log_mean(z, l))

    def _library_of(self, x, draw: bool):
        """The log library of counts x: observed totals, q(l|x) (a draw or its mean), or None."""
        if self.library == "observed":
            return log_totals(x)
        if self.library == "inferred":
            loc, scale = self.library_posterior(x)
            return loc + scale * torch.randn_like(scale) if draw else loc
        return None

    @torch.no_grad()
    def reconstruct(self, x, sample_z: bool = False):
        """E[x | z, l] at the code means (or one draw of each when ``sample_z``)."""
        loc, scale = self.encode(x)
        z = loc + scale * torch.randn_like(scale) if sample_z else loc
        return self.decode(z, self._library_of(x, sample_z))

    @torch.no_grad()
    def replicate(self, x):
        """One posterior predictive draw per row of x: z, l ~ q(z, l | x), then x' ~ p(x | z, l)."""
        loc, scale = self.encode(x)
        z = loc + scale * torch.randn_like(scale)
        return self.likelihood(self.log_mean(z, self._library_of(x, True))).sample()

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True):
        """``n`` draws: z ~ p(z), l ~ the library prior, then E[x|z, l] (``mean``) or x ~ p(x|z, l)."""
        z = self.prior().sample((n,))
        l = self.library_prior().sample((n,)) if self.library != "none" else None
        params = self.log_mean(z, l)
        return self.likelihood.mean(params) if mean else self.likelihood(params).sample()

    # ------------------------------------------------------------------ figures
    def figure(self, name, data, path):
        if name == "mean_variance":
            return self.plot_mean_variance(data.x[:FIGURE_CELLS], path)
        return super().figure(name, data, path)

    @torch.no_grad()
    def plot_mean_variance(self, x, path):
        """Per gene, the mean and variance of its counts over the cells ``x`` (N, G) and over one
        posterior predictive draw for each cell, on log axes, with the Poisson line variance = mean."""
        from pyro_vae.drawing import plt, save

        draw = self.replicate(x)
        fig, ax = plt.subplots(figsize=(6, 5))
        for counts, label, style in (
            (x, "data", dict(color="black", s=10)),
            (draw, "model: one draw per cell", dict(color="tab:orange", s=10, alpha=0.7)),
        ):
            ax.scatter(counts.mean(0).cpu(), counts.var(0).cpu(), label=label, linewidths=0, **style)
        means = x.mean(0)
        span = torch.tensor([means[means > 0].min().item(), means.max().item()]) if (means > 0).any() else None
        if span is not None:
            ax.plot(span, span, "--", color="grey", label="Poisson: variance = mean")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="mean count of a gene",
            ylabel="variance of its counts",
            title=f"{x.shape[0]} cells, {x.shape[1]} genes; likelihood {type(self.likelihood).__name__}",
        )
        ax.legend(fontsize=8)
        return save(fig, path)


__all__ = ["CountVAE", "CountVAEConfig", "count_likelihoods", "log_totals", "LIBRARIES"]

"""Where generated images come from: the prior, or a density fitted to the training codes.

``prior``: z ~ p(z) (N(0, I) by default), decoded. This is what a VAE is trained for: its KL
term pulls every q(z|x) towards p(z), so the codes of the training data fill the prior. A plain
autoencoder has no such term; its codes lie wherever the decoder found them useful, and prior
draws land where it has never decoded anything.

``mixture``: after training, fit a Gaussian mixture with K components to the codes E_q[z|x] of
the training images and draw z from it (Ghosh et al. 2020, "From variational to deterministic
autoencoders": an ex-post density estimate makes a deterministic autoencoder generate). Works the
same for an autoencoder and a VAE.

The mixture is fitted by expectation-maximisation in float64 (full covariances, a small ridge
added to each), started from k-means++ centres drawn with a seeded generator: the same codes and
seed give the same mixture.
"""

from __future__ import annotations

import math

import torch

from pyro_vae.contract import Codes, Likelihood, Prior, Samples, defines, has, require, traits
from pyro_vae.data.batch import Batch, DataError

SAMPLERS = ("prior", "mixture")


class GaussianMixture:
    """A mixture of K full-covariance Gaussians in d dimensions, fitted by EM.

    After :meth:`fit`: ``weights (K,)``, ``means (K, d)``, ``covariances (K, d, d)``, and
    ``log_likelihood`` (mean per point at the last iteration)."""

    def __init__(
        self, components: int = 10, ridge: float = 1e-4, iterations: int = 200, tol: float = 1e-6, seed: int = 0
    ):
        if components < 1:
            raise ValueError(f"a mixture needs at least 1 component, got {components}")
        self.components, self.ridge, self.iterations, self.tol, self.seed = components, ridge, iterations, tol, seed

    def _init_means(self, z, gen):
        n = z.shape[0]
        centres = [z[torch.randint(n, (1,), generator=gen).item()]]
        for _ in range(1, self.components):  # k-means++: far points are likelier centres
            d2 = torch.cdist(z, torch.stack(centres)).min(1).values ** 2
            probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
            centres.append(z[torch.multinomial(probs, 1, generator=gen).item()])
        return torch.stack(centres)

    def _log_resp(self, z):
        comp = torch.distributions.MultivariateNormal(self.means, covariance_matrix=self.covariances)
        lp = comp.log_prob(z.unsqueeze(1)) + self.weights.log()  # (N, K)
        return lp - lp.logsumexp(1, keepdim=True), lp.logsumexp(1)

    def fit(self, codes: torch.Tensor) -> "GaussianMixture":
        z = torch.as_tensor(codes).detach().to("cpu", torch.float64)
        if z.dim() != 2 or z.shape[0] < self.components:
            raise ValueError(
                f"fitting {self.components} components needs codes of shape (N >= "
                f"{self.components}, d); got {tuple(z.shape)}"
            )
        if not torch.isfinite(z).all():
            raise ValueError("the codes contain NaN or infinite values; cannot fit a mixture to them")
        n, d = z.shape
        gen = torch.Generator().manual_seed(self.seed)
        eye = torch.eye(d, dtype=z.dtype)
        self.means = self._init_means(z, gen)
        self.covariances = (torch.cov(z.T).reshape(d, d) + self.ridge * eye).expand(self.components, d, d).clone()
        self.weights = torch.full((self.components,), 1.0 / self.components, dtype=z.dtype)
        previous = -math.inf
        for _ in range(self.iterations):
            log_r, ll = self._log_resp(z)
            r = log_r.exp()  # (N, K)
            nk = r.sum(0) + 1e-10
            self.weights = nk / n
            self.means = (r.T @ z) / nk[:, None]
            diff = z.unsqueeze(1) - self.means  # (N, K, d)
            self.covariances = torch.einsum("nk,nki,nkj->kij", r, diff, diff) / nk[:, None, None] + self.ridge * eye
            self.log_likelihood = ll.mean().item()
            if abs(self.log_likelihood - previous) < self.tol * max(1.0, abs(previous)):
                break
            previous = self.log_likelihood
        return self

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self._log_resp(torch.as_tensor(z, dtype=torch.float64))[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws, shape (n, d), float64 on the CPU."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        chol = torch.linalg.cholesky(self.covariances)
        eps = torch.randn(n, self.means.shape[1], dtype=torch.float64, generator=generator)
        return self.means[k] + (chol[k] @ eps.unsqueeze(-1)).squeeze(-1)


def _unconditional(family, sampler: str) -> None:
    """Refuse an unknown sampler, and any sampler for a conditional family but its joint prior."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; one of {', '.join(SAMPLERS)}")
    t = traits(family)
    if t.conditional and not (sampler == "prior" and t.joint_prior):
        raise ValueError(
            f"{t.name} is conditional: draw its samples given a condition "
            f"(sample(n, condition=...)); the {sampler} sampler is for unconditional families"
        )


def check_sampler(family, sampler: str, mean: bool = True) -> None:
    """Refuse, before any work, a sampler ``family`` cannot serve, in one line
    (:class:`~pyro_vae.contract.MissingAbility` naming the family and the ability): ``prior``
    draws with its own ``sample`` (:class:`~pyro_vae.contract.Samples`); ``mixture`` fits its
    codes and decodes them (:class:`~pyro_vae.contract.Codes`), and draws x ~ p(x|z) with its
    :class:`~pyro_vae.contract.Likelihood` unless ``mean``."""
    _unconditional(family, sampler)
    if sampler == "prior":
        require(family, Samples, "draw samples from its prior")
        return
    require(family, Codes, "fit the mixture sampler to its codes and decode its draws")
    if not mean:
        require(
            family, Likelihood, "draw x ~ p(x|z) for codes from the mixture (mean=False)", "draw E[x|z] with mean=True"
        )


# ---------------------------------------------------------------------- codes
def _device_of(module) -> torch.device:
    if isinstance(module, torch.nn.Module):
        for t in list(module.parameters()) + list(module.buffers()):
            return t.device
    return torch.device("cpu")


def _as_mean(out) -> torch.Tensor:
    """The location from what an ``encode`` returns: ``(loc, scale)``, a tensor or a distribution."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, torch.distributions.Distribution):
        out = out.mean
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"encode returned {type(out).__name__}, not (loc, scale), a tensor or a distribution")
    return out


def _guide_means(family, chunk: Batch) -> torch.Tensor:
    """Means of the continuous latent sites ``family.latent_sites`` in a trace of the guide."""
    import pyro
    from pyro import poutine

    sites = traits(family).latent_sites
    with torch.random.fork_rng(devices=[]):  # a guide may draw (e.g. a discrete site first)
        pyro.set_rng_seed(0)
        trace = poutine.trace(family.guide).get_trace(*family.args(chunk))
    means = []
    for name in sites:
        site = trace.nodes.get(name)
        if site is None or site["type"] != "sample" or site["is_observed"]:
            continue
        fn = site["fn"]
        if site["infer"].get("enumerate") or getattr(fn.support, "is_discrete", False):
            continue  # a class label or other discrete latent: not a code
        try:
            mean = fn.mean
        except NotImplementedError:
            raise ValueError(
                f"the guide's distribution of latent site {name!r} ({type(fn).__name__}) has no mean"
            ) from None
        means.append(mean.reshape(len(chunk), -1))
    if not means:
        raise ValueError(f"the guide has no continuous latent site among latent_sites {sites}")
    return torch.cat(means, -1)


@torch.no_grad()
def latent_means(family, data: Batch, batch_size: int = 1000) -> torch.Tensor:
    """E_q[z|x] of every data point: ``(N, latent_dim)``, on the family's device.

    Through ``family.encode(x)`` (the location of what it returns) when the family has it and it
    works from x alone; otherwise the means of the continuous latent sites
    (``family.latent_sites``, concatenated; discrete ones skipped) in a trace of
    ``family.guide`` on the data with their labels removed, so that no label reaches the codes.
    A family whose encoder needs the labels (a class-conditional VAE) is refused with a
    ValueError, as is one with neither ``encode`` nor a guide with continuous latents.
    """
    if not isinstance(data, Batch):
        raise TypeError(f"latent_means needs a pyro_vae.data.Batch, got {type(data).__name__}")
    if len(data) == 0:
        raise DataError("latent_means: no data points")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    name = type(family).__name__
    device = _device_of(family)
    blind = data.replace(y=None, labelled=None)  # labels never reach the codes
    was_training = family.training if isinstance(family, torch.nn.Module) else None
    if was_training is not None:
        family.eval()
    reasons = []
    try:
        if has(family, Codes):
            try:
                return torch.cat(
                    [
                        _as_mean(family.encode(blind.x[i : i + batch_size].to(device))).reshape(
                            min(batch_size, len(data) - i), -1
                        )
                        for i in range(0, len(data), batch_size)
                    ]
                )
            except (ValueError, TypeError, NotImplementedError) as e:  # e.g. encode needs a condition
                reasons.append(f"encode(x): {e}")
        if not (defines(family, "guide") and defines(family, "args")):
            reasons.append("no guide(*args(batch)) to trace")
        else:
            try:
                return torch.cat(
                    [
                        _guide_means(family, blind.subset(slice(i, i + batch_size)).to(device))
                        for i in range(0, len(data), batch_size)
                    ]
                )
            except (ValueError, TypeError, AttributeError, KeyError, RuntimeError, NotImplementedError) as e:
                reasons.append(f"guide without labels: {type(e).__name__}: {e}")
    finally:
        if was_training is not None:
            family.train(was_training)
    raise ValueError(
        f"cannot compute latent means of this {name} from the images alone "
        f"({'; '.join(reasons)}); M1 needs a family whose encoder q(z|x) reads x alone, without "
        f"labels or conditions"
    )


# ---------------------------------------------------------------------- the classifier
@torch.no_grad()
@torch.no_grad()
def fit_code_mixture(family, data, components: int = 10, seed: int = 0, batch_size: int = 1000) -> GaussianMixture:
    """The mixture sampler's density: a :class:`GaussianMixture` fitted to E_q[z|x] of ``data``
    (a Batch or a tensor x of training images, already binarized as for evaluation)."""
    check_sampler(family, "mixture")
    data = data if isinstance(data, Batch) else Batch(torch.as_tensor(data))
    return GaussianMixture(components, seed=seed).fit(latent_means(family, data, batch_size=batch_size))


@torch.no_grad()
def sample_latents(
    family,
    n: int,
    sampler: str = "prior",
    mixture: GaussianMixture | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` latent codes from the prior or from a fitted mixture, on the family's device."""
    if sampler == "prior":  # codes from p(z) itself, not the family's own sample()
        _unconditional(family, sampler)
        require(family, Prior, "draw codes from its prior")
    else:
        check_sampler(family, sampler)
    device = next(family.parameters()).device
    if sampler == "prior":
        return family.prior().sample((n,)).to(device)
    if mixture is None:
        raise ValueError("the mixture sampler needs a mixture fitted to the training codes (fit_code_mixture)")
    return mixture.sample(n, generator=generator).to(device, torch.get_default_dtype())


@torch.no_grad()
def generate(
    family,
    n: int,
    sampler: str = "prior",
    mixture: GaussianMixture | None = None,
    mean: bool = True,
    batch_size: int = 1000,
) -> torch.Tensor:
    """``n`` generated images: ``prior``: the family's own ``sample(n, mean)`` (z ~ p(z), and for M2
    the class y ~ p(y) too); ``mixture``: codes from the fitted mixture; decoded to E[x|z]
    (``mean``) or drawn from p(x|z). A family without what the sampler needs is refused in one
    line (:class:`~pyro_vae.contract.MissingAbility`) before anything is drawn."""
    check_sampler(family, sampler, mean)
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        if sampler == "prior":  # the family's own prior draw (all its latents, e.g. M2's class too)
            out.append(family.sample(m, mean=mean))
            continue
        z = sample_latents(family, m, sampler, mixture)
        out.append(family.decode(z) if mean else family.likelihood(family.decoder(z)).sample())
    return torch.cat(out)


__all__ = [
    "latent_means",
    "GaussianMixture",
    "check_sampler",
    "fit_code_mixture",
    "sample_latents",
    "generate",
    "SAMPLERS",
]

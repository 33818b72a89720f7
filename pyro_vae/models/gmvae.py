"""A Gaussian-mixture VAE for clustering: M2 with no labels at all (Kingma et al. 2014's
structure with the class as a cluster; the p(z|y) form of Dilokthanakul et al. 2016 and Shu's
GMVAE).

    model:  y ~ Cat(1/K),  z ~ N(mu_y, diag sigma_y^2),  x ~ p(x | decoder(z))
    guide:  y ~ q(y|x) = Cat(classifier(x)),  z ~ q(z|x,y) = N(encoder(x, y))

``discrete="enumerate"`` (the default): the guide marks y ``enumerate="parallel"``, so
``TraceEnum_ELBO`` and the evaluator sum the K clusters out exactly. ``discrete="relaxed"``: y is
a Concrete / Gumbel-softmax relaxation (Maddison et al. 2017; Jang et al. 2017) of the one-hot
cluster, reparameterized, for a K too large to enumerate; its temperature falls each epoch,
tau_e = max(temperature_min, temperature * exp(-anneal_rate * e)) (:meth:`GMVAE.on_epoch`),
and log p(x) is then that of the relaxed model.

Measures: ``cluster_accuracy``, the test accuracy of argmax q(y|x) after the best one-to-one
matching of clusters to classes (the Hungarian algorithm; many-to-one by majority when K differs
from the number of classes), the usual unsupervised clustering accuracy; and how much the
clusters are used at all (``clusters_used``, ``cluster_entropy``, ``cluster_information``): a
GMVAE can leave y unused ("cluster degeneracy", Dilokthanakul et al. 2016), and these show it.
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
from pyro_vae.models.base import GENERIC_FIGURES, CodeFigures, Family, batch_size_of, option
from pyro_vae.models.parts import Classifier, NetworkConfig, label_encoder_shape, most_probable, one_hot, with_label
from pyro_vae.models.registry import register_model

DISCRETE = ("enumerate", "relaxed")


RELAXED_ONLY = {"discrete": ("relaxed",)}  # options that act only on the relaxed cluster variable


@dataclass
class GMVAEConfig(NetworkConfig):
    """Options of the Gaussian-mixture VAE (each one a ``pyro-vae train`` flag)."""

    latent_dim: int = option(16, "size of z")
    clusters: int = option(10, "number of mixture components K (the cluster variable's values)", min=2)
    discrete: str = option(
        "enumerate",
        "enumerate: the cluster is summed out exactly (TraceEnum_ELBO); relaxed: "
        "a Concrete / Gumbel-softmax relaxation, for K too large to enumerate",
        choices=DISCRETE,
    )
    temperature: float = option(1.0, "relaxed: the Concrete temperature of the first epoch", only_with=RELAXED_ONLY)
    temperature_min: float = option(0.5, "relaxed: the lowest temperature", only_with=RELAXED_ONLY)
    anneal_rate: float = option(
        0.03, "relaxed: temperature = max(min, start * exp(-rate * epoch))", min=0, only_with=RELAXED_ONLY
    )
    cluster_free_bits: float = option(
        0.0,
        "minimum information constraint (Dilokthanakul et al. 2016): the "
        "cluster's KL(q(y|x) || p(y)), averaged over the batch, costs nothing "
        "below this many nats (log K frees it entirely); 0: the plain ELBO",
        min=0,
    )


def assignment(cost: torch.Tensor) -> torch.Tensor:
    """The one-to-one assignment of rows to columns with the least total cost (the Hungarian
    algorithm with potentials, O(n^3)); ``cost`` (n, m) with n <= m. Returns the column of each row."""
    n, m = cost.shape
    if n > m:
        raise ValueError(f"assignment needs no more rows than columns, got {n} x {m}")
    c = cost.double().tolist()
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    match, way = [0] * (m + 1), [0] * (m + 1)  # match[j]: row (1-based) assigned to column j
    for i in range(1, n + 1):
        match[0], j0 = i, 0
        minv, used = [inf] * (m + 1), [False] * (m + 1)
        while match[j0]:
            used[j0] = True
            i0, delta, j1 = match[j0], inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = c[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
        while j0:
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    out = torch.empty(n, dtype=torch.long)
    for j in range(1, m + 1):
        if match[j]:
            out[match[j] - 1] = j - 1
    return out


def cluster_accuracy(clusters: torch.Tensor, labels: torch.Tensor, num_clusters: int, num_classes: int) -> float:
    """Accuracy of ``clusters`` as predictions of ``labels`` after mapping each cluster to a class:
    the best one-to-one map when K == number of classes, else each cluster to its majority class."""
    counts = torch.zeros(num_clusters, num_classes, dtype=torch.long)
    counts.index_put_(
        (clusters.long().cpu(), labels.long().cpu()), torch.ones_like(labels, dtype=torch.long).cpu(), accumulate=True
    )
    if num_clusters == num_classes:
        mapping = assignment(-counts.double())
    else:
        mapping = counts.argmax(1)
    return (mapping[clusters.long().cpu()] == labels.long().cpu()).double().mean().item()


@register_model("gmvae")
class GMVAE(CodeFigures, Family):
    """A VAE with a K-way cluster y above z; see the module docstring."""

    Config = GMVAEConfig
    latent_sites = ("y", "z")
    figures = tuple(f for f in GENERIC_FIGURES if f != "manifold") + ("clusters",)
    figure_titles = {"clusters": "Samples from each mixture component (one row per cluster)"}
    metric_notes = {
        "cluster_accuracy": "argmax q(y|x), clusters matched one-to-one to classes (Hungarian)",
        "clusters_used": "clusters that are argmax q(y|x) for at least 1% of the points (of K)",
        "cluster_entropy": "mean entropy of q(y|x), nats (log K: q(y|x) uniform, the clusters unused)",
        "cluster_information": "I(x; y) under q: H[mean q(y|x)] - mean H[q(y|x)], nats (at most "
        "log K; 0: y carries nothing about x)",
    }

    def __init__(
        self,
        classifier,
        encoder,
        decoder,
        likelihood,
        data_shape,
        latent_dim,
        clusters,
        discrete="enumerate",
        temperature=1.0,
        temperature_min=0.5,
        anneal_rate=0.03,
        cluster_free_bits=0.0,
    ):
        super().__init__()
        if discrete not in DISCRETE:
            raise ValueError(f"discrete must be one of {', '.join(DISCRETE)}, got {discrete!r}")
        if not (temperature > 0 and temperature_min > 0):
            raise ValueError(f"the relaxation temperatures must be > 0, got {temperature} and {temperature_min}")
        self.classifier, self.encoder, self.decoder, self.likelihood = classifier, encoder, decoder, likelihood
        self.data_shape = tuple(int(s) for s in data_shape)
        self.latent_dim, self.clusters, self.discrete = int(latent_dim), int(clusters), discrete
        self.temperature_start, self.temperature_min, self.anneal_rate = temperature, temperature_min, anneal_rate
        if not cluster_free_bits >= 0:
            raise ValueError(f"cluster_free_bits must be >= 0 nats, got {cluster_free_bits}")
        if cluster_free_bits and discrete != "enumerate":
            raise ValueError(
                "cluster_free_bits needs the exact cluster KL of --discrete enumerate; the relaxed "
                "ELBO scores a Concrete sample instead"
            )
        self.cluster_free_bits = float(cluster_free_bits)
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.register_buffer("cluster_logits", torch.zeros(self.clusters))  # p(y) uniform
        # the components start distinct but close (0.1 N(0, I) draws), inside one prior scale of each
        # other: drawn at N(0, I), in 50 dimensions they start about 10 apart, the decoder learns the
        # region of one of them first and q(y|x) puts every image on that cluster (mnist5k,
        # 784-200-200-50, 30 epochs, benchmarks/gmvae_clusters.py: 1 of 10 clusters used and
        # validation ELBO -133.0, against 8 of 10 and -122.6 at 0.1 N(0, I))
        self.cluster_locs = nn.Parameter(0.1 * torch.randn(self.clusters, self.latent_dim))
        self.cluster_log_scales = nn.Parameter(torch.zeros(self.clusters, self.latent_dim))

    @property
    def default_objective(self) -> str:
        return "enum" if self.discrete == "enumerate" else "trace"

    @property
    def max_plate_nesting(self) -> int:
        return 1

    @classmethod
    def from_config(cls, config: GMVAEConfig, data_shape, num_classes=None) -> "GMVAE":
        if config.prior != "standard_normal":
            raise ValueError("the Gaussian-mixture VAE's prior is its mixture p(y) p(z|y); --prior does not apply")
        data_shape, k, d = tuple(data_shape), config.clusters, config.latent_dim
        encoder, _ = build_networks(
            config.network, label_encoder_shape(config.network, data_shape, k), d, config.hidden
        )
        _, decoder = build_networks(config.network, data_shape, d, config.hidden)
        return cls(
            Classifier(config.network, data_shape, k, config.hidden),
            encoder,
            decoder,
            build_likelihood(config.likelihood, data_shape, **config.likelihood_kwargs),
            data_shape,
            d,
            k,
            config.discrete,
            config.temperature,
            config.temperature_min,
            config.anneal_rate,
            config.cluster_free_bits,
        )

    def on_epoch(self, epoch: int, epochs: int) -> None:
        """The relaxation's temperature for this epoch (a function of the epoch alone, so a resumed
        run has the same schedule)."""
        tau = max(self.temperature_min, self.temperature_start * math.exp(-self.anneal_rate * epoch))
        self.temperature.fill_(tau)

    # ------------------------------------------------------------------ Pyro programs
    def _cluster(self, logits):
        if self.discrete == "enumerate":
            return dist.Categorical(logits=logits), {"enumerate": "parallel"}
        return dist.RelaxedOneHotCategorical(self.temperature, logits=logits), {}

    def _component(self, y):
        """p(z|y): the cluster's Gaussian (a soft one-hot y mixes the parameters)."""
        if self.discrete == "enumerate":
            return dist.Normal(self.cluster_locs[y], self.cluster_log_scales[y].exp()).to_event(1)
        return dist.Normal(y @ self.cluster_locs, (y @ self.cluster_log_scales).exp()).to_event(1)

    def _as_vector(self, y):
        return one_hot(y, self.clusters) if self.discrete == "enumerate" else y

    def model(self, x=None):
        """p(y) p(z|y) p(x|z); ``x=None`` draws from the prior predictive. (Plain form: training
        puts the KL weight on the latents y and z and ``N/B`` on every site.)"""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with pyro.plate("data", batch_size_of(x)):
            y = pyro.sample("y", self._cluster(self.cluster_logits)[0])
            z = pyro.sample("z", self._component(y))
            return pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x):
        """q(y|x) q(z|x,y), y enumerated or relaxed."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with pyro.plate("data", x.shape[0]):
            q_y, infer = self._cluster(self.classifier(x))
            y = pyro.sample("y", q_y, infer=infer)
            loc, scale = self.encoder(self._encoder_input(x, self._as_vector(y)))
            pyro.sample("z", ReparamNormal(loc, scale).to_event(1))

    def cluster_kl(self, x) -> torch.Tensor:
        """KL(q(y|x) || p(y)) per point, exactly (the sum over the K clusters)."""
        log_q = torch.log_softmax(self.classifier(x), -1)
        log_p = torch.log_softmax(self.cluster_logits, -1)
        return (log_q.exp() * (log_q - log_p)).sum(-1)

    def extra_loss(self, batch, num_data=None, kl_weight=1.0):
        """The minimum information constraint (free bits on the cluster, Dilokthanakul et al. 2016):
        while the batch's mean KL(q(y|x) || p(y)) is below ``cluster_free_bits`` (lambda), add
        ``kl_weight * N * (lambda - KL)``, so that the loss holds ``kl_weight * N * max(lambda, KL)``
        in place of the ELBO's ``kl_weight * N * KL``: no pull towards a uniform q(y|x) below lambda,
        the "cluster degeneracy" in which y is left unused. None with lambda = 0 (the ELBO)."""
        if self.cluster_free_bits == 0:
            return None
        kl = self.cluster_kl(batch.x).mean()
        return kl_weight * (num_data or len(batch)) * torch.relu(self.cluster_free_bits - kl)

    def _encoder_input(self, x, y_vec):
        return with_label(x, y_vec, self.data_shape, conv=len(self.encoder.data_shape) == 3)

    # ------------------------------------------------------------------ measures and figures
    def predict(self, x, batch_size: int = 1000) -> torch.Tensor:
        """The most probable cluster under q(y|x) for every row of ``x``."""
        return most_probable(self.classifier, x, batch_size)

    @torch.no_grad()
    def cluster_log_probs(self, x, batch_size: int = 1000) -> torch.Tensor:
        """log q(y|x) for every row of ``x`` (N, K), in batches."""
        return torch.cat(
            [torch.log_softmax(self.classifier(x[i : i + batch_size]), -1) for i in range(0, x.shape[0], batch_size)]
        )

    def cluster_use(self, x, batch_size: int = 1000, log_q=None) -> dict:
        """How much the clusters are used on ``x``: ``clusters_used`` (argmax of q(y|x) for >= 1% of
        the points), ``cluster_entropy`` (mean H[q(y|x)]) and ``cluster_information`` (the mutual
        information of x and y under q). A collapsed GMVAE shows one cluster, or entropy log K.
        ``log_q``: :meth:`cluster_log_probs` of ``x`` when already computed."""
        log_q = self.cluster_log_probs(x, batch_size) if log_q is None else log_q
        q = log_q.exp()
        entropy = -(q * log_q).sum(-1).mean()
        marginal = q.mean(0)
        marginal_entropy = -(marginal * marginal.clamp_min(1e-30).log()).sum()
        share = torch.bincount(log_q.argmax(-1), minlength=self.clusters).double() / len(log_q)
        return {
            "clusters_used": float((share >= 0.01).sum()),
            "cluster_entropy": entropy.item(),
            "cluster_information": (marginal_entropy - entropy).item(),
        }

    @torch.no_grad()
    def metrics(self, batch) -> dict:
        log_q = self.cluster_log_probs(batch.x)  # one pass of the classifier for every measure
        out = self.cluster_use(batch.x, log_q=log_q)
        if batch.y is not None:
            num_classes = int(batch.y.max().item()) + 1
            out["cluster_accuracy"] = cluster_accuracy(log_q.argmax(-1), batch.y, self.clusters, max(num_classes, 2))
        return out

    @torch.no_grad()
    def encode(self, x):
        """(loc, scale) of q(z | x, y = its most probable cluster)."""
        self.check_shape(x)
        y = self.predict(x)
        return self.encoder(self._encoder_input(x, one_hot(y, self.clusters)))

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True, cluster=None):
        """``n`` images: y ~ p(y) (or the given ``cluster``), z ~ p(z|y), shown as E[x|z]."""
        device = self.cluster_locs.device
        y = (
            dist.Categorical(logits=self.cluster_logits).sample((n,))
            if cluster is None
            else torch.full((n,), int(cluster), dtype=torch.long, device=device)
        )
        z = dist.Normal(self.cluster_locs[y], self.cluster_log_scales[y].exp()).sample()
        params = self.decoder(z)
        return self.likelihood.mean(params) if mean else self.likelihood(params).sample()

    def figure(self, name, data, path):
        from pyro_vae.drawing import plot_image_rows

        if name == "clusters":
            rows = torch.stack([self.sample(10, cluster=k) for k in range(self.clusters)])
            return plot_image_rows(
                rows.reshape(self.clusters, 10, *self.data_shape).cpu(),
                path,
                "Samples from each mixture component (one row per cluster, E[x|z])",
            )
        return super().figure(name, data, path)

"""Simulated count data with known parameters: cells by genes, as in single-cell RNA sequencing.

No package we can install offline ships a raw single-cell count matrix (scanpy's pbmc68k_reduced
is normalized, not counts), so the library's count data set is **simulated**, from a process
whose every parameter is known and kept (:class:`CountSimulation`). For cell n of type k_n
(one of K, equally likely):

    u_n      ~ N(c_k, spread^2 I_d)                  a low-dimensional cell state, (d,)
    rho_n    = softmax(b + W u_n)                    the genes' proportions, (G,)
    L_n      ~ LogNormal(library_loc, library_scale^2)   the library size (expected total count)
    x_ng     ~ NB(mean L_n rho_ng, dispersion theta_g),  Var = mu + mu^2 / theta_g
    x_ng     <- 0 with probability zero_inflation (independently; 0 by default)

Drawn once from the seed: centres c_k ~ N(0, I), weights W ~ N(0, weight_scale^2 / d), gene
baselines b ~ N(0, bias_scale^2), and dispersions theta_g log-uniform on ``dispersion_range``. The
cell type is the label y. This is the generative model of scVI (Lopez et al. 2018) with a
mixture in place of its N(0, I) prior; a count VAE with an inferred library can represent it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pyro_vae.data.batch import Batch, DataError, Splits


@dataclass(frozen=True)
class CountSimulation:
    """The known parameters of the simulation (NumPy arrays): ``centers (K, d)``, ``weights
    (G, d)``, ``bias (G,)``, ``dispersion (G,)`` (theta), ``library_loc``, ``library_scale``
    (of log L), ``spread`` and ``zero_inflation``; see the module docstring."""

    centers: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    dispersion: np.ndarray
    library_loc: float
    library_scale: float
    spread: float = 0.5
    zero_inflation: float = 0.0

    @classmethod
    def make(
        cls,
        genes: int = 200,
        latent_dim: int = 4,
        cell_types: int = 5,
        library_loc: float = math.log(2000),
        library_scale: float = 0.3,
        dispersion_range=(0.5, 10.0),
        weight_scale: float = 1.0,
        bias_scale: float = 1.0,
        spread: float = 0.5,
        zero_inflation: float = 0.0,
        seed: int = 0,
    ) -> "CountSimulation":
        """Draw the parameters from ``seed`` (the defaults: 200 genes, about 2,000 counts a cell)."""
        for name, value in (("genes", genes), ("latent_dim", latent_dim), ("cell_types", cell_types)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"simulated counts: {name} must be a whole number >= 1, got {value!r}")
        low, high = dispersion_range
        if not 0 < low <= high < math.inf:
            raise DataError(f"simulated counts: dispersion_range must be 0 < low <= high, got {dispersion_range!r}")
        if not 0 <= zero_inflation < 1:
            raise DataError(f"simulated counts: zero_inflation is a probability in [0, 1), got {zero_inflation!r}")
        rng = np.random.default_rng([seed, 0])
        return cls(
            centers=rng.standard_normal((cell_types, latent_dim)),
            weights=weight_scale / math.sqrt(latent_dim) * rng.standard_normal((genes, latent_dim)),
            bias=bias_scale * rng.standard_normal(genes),
            dispersion=np.exp(rng.uniform(math.log(low), math.log(high), genes)),
            library_loc=float(library_loc),
            library_scale=float(library_scale),
            spread=float(spread),
            zero_inflation=float(zero_inflation),
        )

    def draw(self, n: int, seed=0) -> Batch:
        """``n`` cells: x ``(n, G)`` counts (float), y ``(n,)`` cell types; ``seed`` an integer or
        a list of them (NumPy's seed sequence)."""
        rng = np.random.default_rng(seed)
        k, d = self.centers.shape
        y = rng.integers(0, k, n)
        u = self.centers[y] + self.spread * rng.standard_normal((n, d))
        logits = self.bias + u @ self.weights.T
        rho = np.exp(logits - logits.max(1, keepdims=True))
        rho /= rho.sum(1, keepdims=True)
        library = np.exp(self.library_loc + self.library_scale * rng.standard_normal(n))
        mu = library[:, None] * rho
        theta = self.dispersion[None, :]
        x = rng.negative_binomial(theta, theta / (theta + mu))  # numpy: failures before theta successes, mean mu
        if self.zero_inflation:
            x = np.where(rng.random(x.shape) < self.zero_inflation, 0, x)
        return Batch(torch.as_tensor(x, dtype=torch.get_default_dtype()), torch.as_tensor(y))


def simulate_counts(train: int = 4000, val: int = 1000, test: int = 2000, seed: int = 0, **parameters) -> Splits:
    """Simulated counts (:class:`CountSimulation`, its parameters drawn from ``seed`` and
    ``parameters``: genes, latent_dim, cell_types, ...) as train, validation and test splits, each
    drawn independently from the same process."""
    sim = CountSimulation.make(seed=seed, **parameters)
    train_, val_, test_ = (sim.draw(n, seed=[seed, i + 1]) for i, n in enumerate((train, val, test)))
    return Splits(
        train_,
        val_,
        test_,
        "simulated counts",
        "simulated: drawn from the same process",
        "counts as drawn (no scaling)",
    )


__all__ = ["CountSimulation", "simulate_counts"]

#!/usr/bin/env python
"""Benchmark: the count VAE against honest baselines, held-out log-likelihood per cell.

Data: the library's simulated counts (``pyro_vae.data.counts.simulate_counts``: 200 genes,
5 cell types, about 2,000 counts a cell, NB noise with a known dispersion per gene), 4,000
training cells, 1,000 validation cells (best epoch kept), 2,000 test cells, all from one seed.
Every model is fitted on the training cells and scored on the same test cells, in nats per cell.

Two kinds of number, never compared with each other:

* **log p(x)**, a model of the counts. The count VAE with an inferred library (``library=
  inferred``) or none: importance-sampled with k samples of (z, l) from the guide
  (``pyro_vae.analysis.evaluate``). Baselines: an independent Poisson and an independent NB per gene
  (maximum likelihood), and probabilistic PCA and factor analysis (scikit-learn, as many
  factors as the VAE has latent dimensions) of y = log(1 + x + u), u ~ U[0, 1)^G. These are
  densities of continuous values; each gives a discrete model by integrating it over the unit
  box [x, x + 1) of every count vector, P(x) = int p_v(x + u) du, with p_v(v) = p_y(log(1 + v))
  prod_g 1 / (1 + v_g) (the change of variables). log (1/S) sum_s p_v(x + u_s), u_s ~ U[0, 1)^G,
  is a lower bound on log P(x) in expectation that tightens as S grows (importance sampling from
  the uniform; S = 1 is Jensen's E_u log p_v(x + u), the uniform dequantization of Theis et al.
  2016): the rows report S = 64, fitted on dequantized training counts, and the notes S = 1 and 8.
* **log p(x | n)**, conditional on the observed library size n = sum_g x_g, scVI's plug-in: the
  count VAE with ``library=observed`` (the same importance sampling), and the per-gene Poisson and
  NB with mean rho_g n (maximum likelihood in rho and theta).

Differences to the per-gene NB of the same kind are paired over the test cells (their standard
error is that of the per-cell difference). For the NB rows, the learned dispersions against the
simulation's: the median over genes of |log theta_hat - log theta|.

Writes ``benchmarks/results/counts.md`` (+ ``.json``).

    python benchmarks/counts.py                          # default budget (about 2.5 min on 1 thread)
    python benchmarks/counts.py --epochs 2 --k 10 --test 200 --out /tmp/counts.md
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import write_results  # noqa: E402
from pyro_vae import ModelConfig, TrainConfig, build_model, evaluate, fit  # noqa: E402
from pyro_vae.data.counts import CountSimulation, simulate_counts  # noqa: E402

DEQUANTIZATION_DRAWS = 64


# ---------------------------------------------------------------------- per-gene baselines
def poisson_per_gene(train, test, library: bool):
    """Per-cell log-likelihood of the test counts under independent Poisson genes fitted by maximum
    likelihood: rate = the gene's mean count, or rho_g n with rho_g = sum_c x_cg / sum_c n_c."""
    if library:
        rho = train.sum(0) / train.sum()
        rate = rho * test.sum(1, keepdim=True)
    else:
        rate = train.mean(0).expand_as(test)
    return torch.distributions.Poisson(rate).log_prob(test).sum(1)


def nb_per_gene(train, test, library: bool, steps: int = 200):
    """Independent NB genes (mean mu_g, or rho_g n; dispersion theta_g) fitted by maximum likelihood
    (L-BFGS on the log parameters, from the moments). Returns the test cells' log-likelihoods and
    theta."""
    mean, var = train.mean(0), train.var(0)
    log_m = (train.sum(0) / train.sum()).log() if library else mean.log()
    log_theta = (mean**2 / (var - mean).clamp(min=1e-3 * mean)).log().clamp(-5, 8)
    params = [log_m.clone().requires_grad_(), log_theta.clone().requires_grad_()]

    def log_lik(x, log_m, log_theta):
        log_mu = log_m + (x.sum(1, keepdim=True).log() if library else 0.0)
        return torch.distributions.NegativeBinomial(log_theta.exp(), logits=log_mu - log_theta).log_prob(x).sum(1)

    opt = torch.optim.LBFGS(params, max_iter=steps, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure():
        opt.zero_grad()
        loss = -log_lik(train, *params).mean()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return log_lik(test, *params), params[1].exp()


def dequantized_gaussian(model, train, test, seed: int):
    """Fit a scikit-learn density (PCA: probabilistic PCA; FactorAnalysis) to log(1 + x + u) of the
    training counts, one draw of u each. Return, per test cell, the importance-sampled bound
    log (1/S) sum_s p_v(x + u_s) on log P(x) of the binned model, for S = 1, 8 and
    :data:`DEQUANTIZATION_DRAWS` (the first S draws): ``{S: (N,) tensor}``."""
    rng = np.random.default_rng(seed)
    model.fit(np.log1p(train.numpy() + rng.random(train.shape)))
    x = test.double().numpy()
    log_w = np.empty((len(x), DEQUANTIZATION_DRAWS))
    for s in range(DEQUANTIZATION_DRAWS):
        y = np.log1p(x + rng.random(x.shape))
        log_w[:, s] = model.score_samples(y) - y.sum(1)  # log p_y(y) + log |dy/dv|, dy/dv = 1 / (1 + v)
    log_w = torch.from_numpy(log_w)
    return {n: torch.logsumexp(log_w[:, :n], 1) - math.log(n) for n in (1, 8, DEQUANTIZATION_DRAWS)}


# ---------------------------------------------------------------------- the count VAE
def count_vae(data, likelihood, library, a):
    """Train the count VAE on ``data`` and return ``(per-cell log p(x) on the test cells, theta or
    None, seconds to train)``."""
    torch.manual_seed(a.seed)
    family = build_model(
        ModelConfig(
            model="countvae",
            data_shape=data.train.data_shape,
            latent_dim=a.latent_dim,
            hidden=(a.hidden,),
            likelihood=likelihood,
            library=library,
        )
    )
    if library != "none":
        family.set_library_prior(data.train.x)  # scVI's prior: the whole training set's log totals
    start = time.time()
    fit(
        family,
        data,
        TrainConfig(
            epochs=a.epochs,
            batch_size=a.batch_size,
            lr=a.lr,
            warmup_epochs=a.warmup,
            patience=None,
            device="cpu",
            seed=a.seed,
        ),
        progress=False,
    )
    seconds = time.time() - start
    per_cell = {}
    evaluate(family, data.test, k=a.k, per_image=per_cell)
    theta = family.likelihood.dispersion.detach() if hasattr(family.likelihood, "dispersion") else None
    return per_cell["log_px"].double(), theta, seconds


def _mean_se(v):
    return v.mean().item(), (v.std() / math.sqrt(v.numel())).item()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--warmup", type=float, default=20, help="KL warm-up epochs (z only; the family's kl_sites)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--latent-dim", type=int, default=10)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--k", type=int, default=500, help="importance samples for log p(x)")
    p.add_argument("--train", type=int, default=4000)
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "counts.md"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    command = " ".join(["python", "benchmarks/counts.py", *(sys.argv[1:] if argv is None else argv)])
    data = simulate_counts(train=a.train, val=a.val, test=a.test, seed=a.seed)
    truth = torch.tensor(CountSimulation.make(seed=a.seed).dispersion, dtype=torch.float32)
    train, test = data.train.x, data.test.x

    from sklearn.decomposition import PCA, FactorAnalysis

    rows = []  # (kind, model, per-cell values, theta or None, seconds)

    bounds = {}  # the PCA / FA rows' bounds for fewer draws of u

    def add(kind, name, fn):
        start = time.time()
        values, theta, *seconds = fn()
        if isinstance(values, dict):
            bounds[name], values = values, values[DEQUANTIZATION_DRAWS]
        rows.append((kind, name, values.double(), theta, seconds[0] if seconds else time.time() - start))
        print(f"{kind:10s} {name:40s} {values.mean().item():10.2f}", flush=True)

    x_kind, n_kind = "log p(x)", "log p(x | n)"
    add(x_kind, "Poisson per gene", lambda: (poisson_per_gene(train, test, False), None))
    add(x_kind, "NB per gene", lambda: nb_per_gene(train, test, False))
    add(
        x_kind,
        f"probabilistic PCA, log1p, {a.latent_dim} factors (bound)",
        lambda: (dequantized_gaussian(PCA(a.latent_dim), train, test, a.seed), None),
    )
    add(
        x_kind,
        f"factor analysis, log1p, {a.latent_dim} factors (bound)",
        lambda: (dequantized_gaussian(FactorAnalysis(a.latent_dim, random_state=a.seed), train, test, a.seed), None),
    )
    for likelihood, library in (("poisson", "inferred"), ("nb", "none"), ("nb", "inferred"), ("zinb", "inferred")):
        add(x_kind, f"count VAE, {likelihood}, library {library}", lambda: count_vae(data, likelihood, library, a))
    add(n_kind, "Poisson per gene x n", lambda: (poisson_per_gene(train, test, True), None))
    add(n_kind, "NB per gene x n", lambda: nb_per_gene(train, test, True))
    add(n_kind, "count VAE, nb, library observed", lambda: count_vae(data, "nb", "observed", a))

    reference = {x_kind: "NB per gene", n_kind: "NB per gene x n"}
    base = {kind: next(r[2] for r in rows if r[0] == kind and r[1] == name) for kind, name in reference.items()}
    lines = [
        "# Count VAE against per-gene and linear baselines: held-out log-likelihood per cell",
        "",
        f"- command: `{command}`",
        f"- data: simulated counts (`pyro_vae.data.counts.simulate_counts`, seed {a.seed}): "
        f"{train.shape[1]} genes, 5 cell types, {a.train} training, {a.val} validation (best epoch kept), "
        f"{a.test} test cells; mean {train.sum(1).mean():.0f} counts a cell, {100 * (train == 0).float().mean():.0f}% "
        f"zeros; NB noise with theta per gene log-uniform on [0.5, 10]",
        f"- count VAE: MLPs {train.shape[1]}-{a.hidden}-{a.latent_dim} (encoder on log1p x; decoder mirrored, "
        f"softmax proportions), Adam {a.lr:g}, batch {a.batch_size}, {a.epochs} epochs, KL warm-up of z over "
        f"{a.warmup:g} epochs; library prior from the training cells' log totals; log p(x) importance-sampled "
        f"with k = {a.k} samples of (z, l) per cell",
        "- PCA / FA rows: a lower bound on the log-probability of the counts: a continuous density of "
        "log(1 + x + u) turned into one of x + u by the change of variables and integrated over the unit box of "
        f"each count vector, importance-sampled with S = {DEQUANTIZATION_DRAWS} uniform draws of u per cell (the "
        f"bound tightens as S grows; mean over cells with S = 1, 8, {DEQUANTIZATION_DRAWS}: "
        + "; ".join(f"{name.split(',')[0]} " + ", ".join(f"{b[n].mean():.2f}" for n in b) for name, b in bounds.items())
        + ")",
        "- log p(x | n): conditional on the cell's observed total n (scVI's observed library size); not comparable "
        "with log p(x)",
        "- Δ: against the per-gene NB of the same kind, paired over the test cells; θ error: median over genes "
        "of |log θ̂ - log θ| against the simulation's θ",
        "- time: training for the VAE rows (validation each epoch included, evaluation not), fitting and scoring "
        "for the baselines",
        f"- machine: {platform.machine()}, {a.threads} thread(s), cpu, torch {torch.__version__}",
        "",
        "| kind | model | test nats per cell | Δ (paired) | θ error | time (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    out_rows = []
    for kind, name, values, theta, seconds in rows:
        mean, se = _mean_se(values)
        delta, delta_se = _mean_se(values - base[kind])
        theta_err = (theta.log() - truth.log()).abs().median().item() if theta is not None else None
        lines.append(
            f"| {kind.replace('|', chr(92) + '|')} | {name} | {mean:.2f} ± {se:.2f} | "
            f"{'—' if name == reference[kind] else f'{delta:+.2f} ± {delta_se:.2f}'} | "
            f"{'' if theta_err is None else f'{theta_err:.3f}'} | {seconds:.1f} |"
        )
        out_rows.append(
            {
                "kind": kind,
                "model": name,
                "nats_per_cell": mean,
                "se": se,
                "delta": delta,
                "delta_se": delta_se,
                "theta_error": theta_err,
                "seconds": seconds,
            }
        )
    write_results(a.out, lines, out_rows)


if __name__ == "__main__":
    main()

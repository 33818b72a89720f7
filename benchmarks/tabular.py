"""Imputation and held-out likelihood of the tabular VAE on the Palmer penguins.

    python benchmarks/tabular.py                 # writes benchmarks/results/tabular.md (and .json)

Data: the penguins table as ``load_penguins(seed=0)`` splits it (247 training rows, 28
validation, 69 test rows; species as labels, not modelled). Each seed trains a VAE with the
tabular likelihood on the training rows (missing cells left out of the likelihood), keeping the
epoch of the best validation ELBO. Then, on the test rows:

* imputation: ``--draws`` times, each observed test cell is hidden with probability ``--mask``
  (seeded) and filled by the VAE (``pyro_vae.components.tabular.impute``: z = the mean of
  q(z | x_obs), then the conditional mean, or the most probable level) and by the training
  split's column mean (numbers) or mode (categories). Errors on the hidden cells: RMSE in the
  column's units (mm, g), error rate for categories.
* held-out log-likelihood per row, log p(x_obs), importance-sampled with ``--k`` samples, in the
  file's units (the model's standardized units corrected by the Jacobian of the scaling); for
  reference the same for independent columns fitted on the training split (Normal for real
  columns, log-normal for the positive one, level frequencies for categories).

Default: 3 seeds, 300 epochs, about two minutes on one CPU thread.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout this script is in

from benchmarks.common import write_results  # noqa: E402


def mask_cells(x: torch.Tensor, columns, rate: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` with each observed cell hidden (NaN in all its entries) with probability ``rate``, and
    the ``(rows, columns)`` mask of the hidden cells."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.rand(x.shape[0], len(columns), generator=g) < rate
    out, at = x.clone(), 0
    for j, c in enumerate(columns):
        observed = ~torch.isnan(x[:, at : at + c.width]).any(1)
        hidden[:, j] &= observed
        out[hidden[:, j], at : at + c.width] = float("nan")
        at += c.width
    return out, hidden


def cell_values(x_orig: np.ndarray, columns) -> list:
    """Per column, the cells of rows ``x_orig`` (file units): a number, or a level code (NaN: missing)."""
    out, at = [], 0
    for c in columns:
        block = x_orig[:, at : at + c.width]
        out.append(
            np.where(np.isnan(block).any(1), np.nan, np.nan_to_num(block).argmax(1))
            if c.kind == "categorical"
            else block[:, 0]
        )
        at += c.width
    return out


def baseline_fill(train_orig: np.ndarray, columns) -> list:
    """The training split's column mean (numbers) or most frequent level (categories)."""
    fills = []
    for c, v in zip(columns, cell_values(train_orig, columns)):
        v = v[~np.isnan(v)]
        fills.append(np.bincount(v.astype(int)).argmax() if c.kind in ("categorical", "binary") else v.mean())
    return fills


def independent_log_lik(train_orig: np.ndarray, test_orig: np.ndarray, columns) -> np.ndarray:
    """log p(row) per test row under independent columns fitted on the training rows (MLE)."""
    from scipy import stats

    total, at = np.zeros(test_orig.shape[0]), 0
    for c in columns:
        tr, te = train_orig[:, at : at + c.width], test_orig[:, at : at + c.width]
        seen_tr, seen_te = ~np.isnan(tr).any(1), ~np.isnan(te).any(1)
        if c.kind == "real":
            lp = stats.norm(tr[seen_tr, 0].mean(), tr[seen_tr, 0].std()).logpdf(np.nan_to_num(te[:, 0], nan=1.0))
        elif c.kind == "positive":
            logs = np.log(tr[seen_tr, 0])
            lp = stats.lognorm(s=logs.std(), scale=np.exp(logs.mean())).logpdf(np.nan_to_num(te[:, 0], nan=1.0))
        else:
            codes_tr = tr[seen_tr].argmax(1) if c.kind == "categorical" else tr[seen_tr, 0].astype(int)
            share = np.bincount(codes_tr, minlength=max(2, c.width)) / len(codes_tr)
            codes_te = np.nan_to_num(te).argmax(1) if c.kind == "categorical" else np.nan_to_num(te[:, 0]).astype(int)
            lp = np.log(share[codes_te])
        total += np.where(seen_te, lp, 0.0)
        at += c.width
    return total


def jacobian(x: torch.Tensor, table) -> np.ndarray:
    """log |d x_model / d x_file| per row: -sum log scale over the observed scaled entries."""
    seen = ~torch.isnan(x).cpu().numpy()
    return -(seen * np.log(table.scale)[None, :]).sum(1)


def train_one(splits, seed: int, a) -> object:
    from pyro_vae.config import ModelConfig, TrainConfig
    from pyro_vae.models import build_model
    from pyro_vae.runs.checkpoint import load_checkpoint
    from pyro_vae.training.fit import fit

    torch.manual_seed(seed)
    mcfg = ModelConfig(
        data_shape=splits.train.data_shape,
        latent_dim=a.latent_dim,
        hidden=tuple(a.hidden),
        likelihood="tabular",
        likelihood_kwargs={"schema": splits.schema},
    )
    vae = build_model(mcfg)
    with tempfile.TemporaryDirectory() as run:
        fit(
            vae,
            splits,
            TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=seed, eval_k=0, patience=None),
            run,
            model_config=mcfg,
            progress=False,
            plots=False,
        )
        return load_checkpoint(Path(run) / "checkpoint_best.pt")[0].eval()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--latent-dim", type=int, default=4)
    p.add_argument("--hidden", type=int, nargs="+", default=[64])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--mask", type=float, default=0.2, help="share of observed test cells hidden per draw")
    p.add_argument("--draws", type=int, default=10, help="mask draws")
    p.add_argument("--k", type=int, default=1000, help="importance samples for log p(x)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "tabular.md"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    command = "python benchmarks/tabular.py" + (
        "" if argv is None and len(sys.argv) == 1 else " " + " ".join(sys.argv[1:] if argv is None else argv)
    )

    from pyro_vae.analysis.evaluate import evaluate
    from pyro_vae.components.tabular import impute
    from pyro_vae.data.tables import load_penguins

    splits = load_penguins(seed=0)
    table, columns, test = splits.table, splits.table.columns, splits.test
    train_orig, test_orig = table.to_original(splits.train.x), table.to_original(test.x)
    truth = cell_values(test_orig, columns)
    fills = baseline_fill(train_orig, columns)
    masks = [mask_cells(test.x, columns, a.mask, seed=1000 + d) for d in range(a.draws)]
    errors = {"mean/mode": [[[] for _ in columns]], "VAE": [[[] for _ in columns] for _ in range(a.seeds)]}
    for masked, hidden in masks:  # the baseline: the same fill for every seed
        for j, c in enumerate(columns):
            h = hidden[:, j].numpy()
            errors["mean/mode"][0][j].append(
                np.full(h.sum(), fills[j]) - truth[j][h]
                if c.kind in ("real", "positive")
                else (truth[j][h] != fills[j]).astype(float)
            )
    log_lik, started = [], time.time()
    for s in range(a.seeds):
        vae = train_one(splits, s, a)
        for masked, hidden in masks:
            filled = cell_values(table.to_original(impute(vae, masked)), columns)
            for j, c in enumerate(columns):
                h = hidden[:, j].numpy()
                errors["VAE"][s][j].append(
                    filled[j][h] - truth[j][h]
                    if c.kind in ("real", "positive")
                    else (filled[j][h] != truth[j][h]).astype(float)
                )
        per = {}
        torch.manual_seed(s)
        evaluate(vae, test, k=a.k, per_image=per)
        log_lik.append(per["log_px"].cpu().numpy() + jacobian(test.x, table))
    seconds = time.time() - started

    def score(c, errs):  # one number per seed: RMSE or error rate over the hidden cells of all draws
        e = np.concatenate(errs)
        return float(np.sqrt(np.mean(e**2))) if c.kind in ("real", "positive") else float(e.mean())

    def spread(values):
        return f"{np.mean(values):.3g}" + (f" ± {np.std(values, ddof=1):.2g}" if len(values) > 1 else "")

    rows, lines = [], []
    for j, c in enumerate(columns):
        n = int(sum(h[:, j].sum() for _, h in masks))
        base = score(c, errors["mean/mode"][0][j])
        vae_scores = [score(c, errors["VAE"][s][j]) for s in range(a.seeds)]
        unit = {"real": c.name.rsplit("_", 1)[-1], "positive": c.name.rsplit("_", 1)[-1]}.get(c.kind, "")
        measure = f"RMSE ({unit})" if c.kind in ("real", "positive") else "error rate"
        rows.append(
            {
                "column": c.name,
                "kind": c.kind,
                "measure": measure,
                "hidden_cells": n,
                "mean_mode": base,
                "vae": vae_scores,
            }
        )
        lines.append(f"| {c.name} | {c.kind} | {measure} | {n} | {base:.3g} | {spread(vae_scores)} |")
    indep = independent_log_lik(train_orig, test_orig, columns)
    vae_ll = [float(v.mean()) for v in log_lik]
    se = float(np.mean([v.std(ddof=1) / math.sqrt(len(v)) for v in log_lik]))
    head = [
        "# Tabular VAE on the Palmer penguins: imputation and held-out log-likelihood",
        "",
        f"- command: `{command}`",
        f"- data: `load_penguins(seed=0)`: {len(splits.train)} training, {len(splits.val)} validation, {len(test)} test "
        f"rows; x = island, bill length and depth, flipper length (real), body mass (positive), sex (binary), year "
        f"(categorical); species not modelled",
        f"- model: VAE, MLP {splits.train.data_shape[0]}-{'-'.join(map(str, a.hidden))}-{a.latent_dim}, decoder "
        f"mirrored, tabular likelihood (Normal, log-normal, categorical, Bernoulli columns; per-column learned "
        f"spreads), Adam {a.lr:g}, batch {a.batch_size}, {a.epochs} epochs, the best validation ELBO kept; "
        f"{a.seeds} seeds (VAE columns: mean ± sd over seeds)",
        f"- imputation: {a.draws} draws, each hiding every observed test cell with probability {a.mask:g}; the VAE "
        f"fills z = mean of q(z|x_obs), then E[x|z] (numbers) or the most probable level; the baseline the "
        f"training split's mean or mode. RMSE in the column's units, error rate for categories (lower is better)",
        f"- machine: {platform.machine()}, {a.threads} thread(s), CPU, torch {torch.__version__}; {seconds:.0f} s "
        f"for training and evaluation",
        "",
        "| column | kind | measure | hidden cells | mean/mode | VAE |",
        "|---|---|---|---:|---:|---:|",
    ]
    tail = [
        "",
        "Held-out log-likelihood per test row, log p(x_obs) in nats (cells in mm, g and levels; missing cells "
        "left out), higher is better:",
        "",
        "| model | log p(x) per row |",
        "|---|---:|",
        f"| independent columns (fitted on the training split, exact) | {indep.mean():.2f} ± "
        f"{indep.std(ddof=1) / math.sqrt(len(indep)):.2f} |",
        f"| tabular VAE (importance sampled, k = {a.k}) | {spread(vae_ll)} (se over rows ± {se:.2f}) |",
    ]
    write_results(
        a.out,
        head + lines + tail,
        {
            "columns": rows,
            "log_lik_independent": float(indep.mean()),
            "log_lik_vae": vae_ll,
            "k": a.k,
            "command": command,
        },
    )


if __name__ == "__main__":
    main()

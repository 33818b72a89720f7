"""A VAE on a table with missing cells: the Palmer penguins (island, four measurements, sex, year;
19 cells missing), with the tabular likelihood, then the missing cells filled in.

    python examples/tabular.py --epochs 200 --out runs/penguins          # about a minute, offline
    pyro-vae train --dataset penguins --likelihood tabular --latent-dim 4 --hidden 64 \\
        --epochs 200 --out runs/penguins_cli                             # the same from the CLI

The data carry their schema (``splits.schema``); the likelihood takes it as its ``schema``
option (the CLI passes it on by itself). The run folder holds the column-by-column figures
and a report. Needs the package palmerpenguins (``pip install 'pyro-vae[tables]'``), or a copy
of penguins.csv: ``--csv PATH``.
"""

import argparse
import logging

import numpy as np
import torch

from pyro_vae import ModelConfig, TrainConfig, build_model, fit
from pyro_vae.components.tabular import impute
from pyro_vae.data.tables import load_penguins


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--latent-dim", type=int, default=4)
    p.add_argument("--csv", default=None, help="your own copy of penguins.csv")
    p.add_argument("--out", default="runs/penguins")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)

    splits = load_penguins(path=a.csv)
    print(f"{len(splits.train)} training rows of {splits.train.data_shape[0]} entries; {splits.scale}")
    config = ModelConfig(
        data_shape=splits.train.data_shape,
        latent_dim=a.latent_dim,
        hidden=(64,),
        likelihood="tabular",
        likelihood_kwargs={"schema": splits.schema},
    )
    vae = build_model(config)
    fit(
        vae,
        splits,
        TrainConfig(epochs=a.epochs, batch_size=32, lr=3e-3),
        a.out,
        model_config=config,
        test=splits.test,
        progress=False,
    )

    # the test rows with a missing cell, before and after the model fills it (in mm, g and levels)
    rows = splits.test.x[torch.isnan(splits.test.x).any(1)]
    filled = impute(vae.eval(), rows)
    names = [c.name for c in splits.table.columns]
    for before, after in zip(decode(splits.table, rows), decode(splits.table, filled)):
        print("missing:", {n: v for n, v in zip(names, before) if v is None})
        print("   filled:", {n: after[i] for i, n in enumerate(names) if before[i] is None})


def decode(table, x):
    """Rows in the file's units and level names (None where missing)."""
    out = []
    for row in table.to_original(x):
        cells, at = [], 0
        for c in table.columns:
            block = row[at : at + c.width]
            if np.isnan(block).any():  # missing
                cells.append(None)
            elif c.kind == "categorical":
                cells.append(c.levels[int(block.argmax())])
            elif c.kind == "binary" and c.levels:
                cells.append(c.levels[int(block[0])])
            else:
                cells.append(round(float(block[0]), 1))
            at += c.width
        out.append(cells)
    return out


if __name__ == "__main__":
    main()

"""The VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k), the guide itself at K
learned pseudo-inputs, against the N(0, I) prior and a learned mixture of Gaussians.

    python examples/vampprior.py --epochs 20 --components 500

Command line: ``pyro-vae train --prior vampprior --prior-components 500``. At the end the
pseudo-inputs are saved as an image (``--figure``): they learn to look like digits.
"""

import argparse

import torch

from pyro_vae import ModelConfig, TrainConfig, build_model, fit, load_data
from pyro_vae.data.batch import for_evaluation
from pyro_vae.analysis.evaluate import evaluate
from pyro_vae.figures.plots import plot_image_rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--components", type=int, default=500, help="pseudo-inputs (and mixture components)")
    p.add_argument("--eval-k", type=int, default=1000)
    p.add_argument("--figure", default="vampprior_pseudo_inputs.png")
    p.add_argument("--data-dir", default=None, help="folder with the official MNIST test files (else: validation)")
    a = p.parse_args()
    data = load_data("mnist5k", a.data_dir)
    test = for_evaluation(data.test if data.test is not None else data.val, "dynamic")
    net = dict(data_shape=(1, 28, 28), latent_dim=50, hidden=(200, 200))
    for prior in ("standard_normal", "mixture", "vampprior"):
        torch.manual_seed(0)
        model = build_model(
            ModelConfig(
                model="vae",
                prior=prior,
                prior_kwargs={"components": a.components} if prior != "standard_normal" else {},
                **net,
            )
        )
        fit(model, data, TrainConfig(epochs=a.epochs, batch_size=100, patience=None), progress=False)
        m = evaluate(model, test, k=a.eval_k)
        print(
            f"{prior:16s} log p(x) {m['log_px']['value']:8.2f}  ELBO {m['elbo']['value']:8.2f}  "
            f"KL {m['kl']['value']:5.1f}  active units {m['active_units_z']['value']}/50"
        )
    with torch.no_grad():
        u = model.prior.pseudo_inputs()[:40].reshape(4, 10, 1, 28, 28)
    plot_image_rows(u, a.figure, "VampPrior: 40 of the learned pseudo-inputs")
    print(f"pseudo-inputs drawn in {a.figure}")


if __name__ == "__main__":
    main()

"""Normalizing flows in a VAE: an inverse autoregressive flow as the guide (Kingma et al. 2016) and
a flow as the prior, both from ``pyro.distributions.transforms``.

    python examples/flows.py --epochs 20 --steps 2

The same command line: ``pyro-vae train --model iaf --flow-steps 2`` and
``pyro-vae train --prior flow --prior-steps 2``. The evaluator needs nothing new: the traces hold
the flows' log-densities.
"""

import argparse

import torch

from pyro_vae import ModelConfig, TrainConfig, build_model, fit, load_data
from pyro_vae.data.batch import for_evaluation
from pyro_vae.analysis.evaluate import evaluate


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps", type=int, default=2, help="flow steps")
    p.add_argument("--eval-k", type=int, default=1000)
    p.add_argument("--data-dir", default=None, help="folder with the official MNIST test files (else: validation)")
    a = p.parse_args()
    data = load_data("mnist5k", a.data_dir)
    test = for_evaluation(data.test if data.test is not None else data.val, "dynamic")
    net = dict(data_shape=(1, 28, 28), latent_dim=50, hidden=(200, 200))
    for name, config in (
        ("Gaussian guide, N(0, I) prior", ModelConfig(model="vae", **net)),
        ("IAF guide", ModelConfig(model="iaf", flow_steps=a.steps, **net)),
        ("flow prior", ModelConfig(model="vae", prior="flow", prior_kwargs={"steps": a.steps}, **net)),
    ):
        torch.manual_seed(0)
        model = build_model(config)
        fit(model, data, TrainConfig(epochs=a.epochs, batch_size=100, patience=None), progress=False)
        m = evaluate(model, test, k=a.eval_k)
        print(
            f"{name:30s} log p(x) {m['log_px']['value']:8.2f}  ELBO {m['elbo']['value']:8.2f}  "
            f"gap {m['gap']['value']:5.2f} nats  (k={a.eval_k})"
        )


if __name__ == "__main__":
    main()

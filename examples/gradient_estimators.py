"""Why the reparameterization trick: the ELBO's gradient measured with z = mu + sigma * eps and
with the score-function (REINFORCE) estimator, at the same parameters, in about a minute offline.

    python examples/gradient_estimators.py

For one batch of real MNIST digits it draws the gradient many times with fresh z and prints the
variance of each estimator (per coordinate, averaged over the encoder's and the decoder's
parameters), then trains each for a few epochs with the same steps and prints the ELBO reached.
The score function is unbiased (``tests/test_lessons.py`` checks that both agree in expectation)
but its variance for the encoder is orders of magnitude larger; Pyro's baselines reduce it.
"""

import argparse

import pyro
import torch

from pyro_vae import ModelConfig, TrainConfig, build_model, fit, load_data
from pyro_vae.data.batch import for_evaluation
from pyro_vae.inference.estimators import gradient_variance
from pyro_vae.analysis.evaluate import evaluate


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--draws", type=int, default=100)
    args = p.parse_args()

    data = load_data("mnist5k")
    batch = for_evaluation(data.train, "static").subset(slice(0, 128))
    val = for_evaluation(data.val, "static")
    print(
        f"{'estimator':15s} {'encoder var':>12s} {'decoder var':>12s} {'val ELBO after ' + str(args.epochs) + ' epochs':>26s}"
    )
    for estimator in ("reparam", "score", "score-avg", "score-baseline"):
        torch.manual_seed(0)
        pyro.clear_param_store()
        config = ModelConfig(data_shape=(1, 28, 28), latent_dim=16, hidden=(200,), estimator=estimator)
        vae = build_model(config)
        v = gradient_variance(vae, batch, draws=args.draws)
        fit(vae, data, TrainConfig(epochs=args.epochs, patience=None), progress=False)
        elbo = evaluate(vae, val, k=0)["elbo"]["value"]
        print(f"{estimator:15s} {v['encoder']['variance']:12.3g} {v['decoder']['variance']:12.3g} {elbo:26.2f}")


if __name__ == "__main__":
    main()

"""Autoencoder against VAE in a few minutes, offline: the same encoder and decoder, trained
once as a plain autoencoder (a point-mass guide, reconstruction only) and once as a VAE.

    python examples/ae_vs_vae.py                                  # test = validation split
    python examples/ae_vs_vae.py --data-dir ../shared/data/mnist  # the official MNIST test set

What it shows (and prints):

1. the autoencoder reconstructs at least as well as the VAE: nothing but reconstruction is asked of it;
2. decoding z ~ N(0, I) gives digits for the VAE and mostly blots for the autoencoder: the VAE's
   KL term pulled its codes onto the prior, nothing shaped the autoencoder's codes;
3. drawing z from a Gaussian mixture fitted to the training codes (Ghosh et al. 2020) makes the
   autoencoder generate too;
4. log p(x) is defined for the VAE (importance sampling from q(z|x)) and not for the
   autoencoder, whose guide has no density: ``evaluate`` says so instead of printing a number.

Figures go to ``--out`` (default ``ae_vs_vae_example/``): samples of each model from each sampler.
"""

import argparse
from pathlib import Path

import torch

from pyro_vae import ModelConfig, TrainConfig, build_model, fit, load_data
from pyro_vae.data.batch import for_evaluation
from pyro_vae.analysis.evaluate import evaluate
from pyro_vae.analysis.generation import score_generation
from pyro_vae.figures.plots import plot_samples
from pyro_vae.analysis.samplers import fit_code_mixture


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--data-dir", default=None, help="folder with the official MNIST test files")
    p.add_argument("--out", default="ae_vs_vae_example", help="folder for the figures")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_data("mnist5k", args.data_dir)
    test = for_evaluation(data.test if data.test is not None else data.val, "static")
    train = for_evaluation(data.train, "static")
    for model in ("ae", "vae"):
        torch.manual_seed(0)
        config = ModelConfig(model=model, data_shape=data.train.data_shape, latent_dim=args.latent_dim, hidden=(400,))
        family = build_model(config)
        fit(family, data, TrainConfig(epochs=args.epochs, patience=None), progress=False)
        family.eval()
        torch.manual_seed(0)
        m = evaluate(family, test, k=100)
        print(f"\n{model.upper()}: test reconstruction log-likelihood {m['recon_log_lik']['value']:.2f} nats/image")
        print(
            "  log p(x): "
            + (
                f"{m['log_px']['value']:.2f} nats/image (k=100)"
                if m["log_px"]["value"] is not None
                else m["log_px"]["note"]
            )
        )
        mixture = fit_code_mixture(family, train, components=10)
        for sampler in ("prior", "mixture"):
            s = score_generation(
                family, train, test, classifier_path=out / "feature_classifier.pt", n=2000, sampler=sampler
            )
            print(
                f"  samples, z from the {sampler}: Fréchet distance {s['frechet_distance']['value']:.1f} "
                f"(lower is better), {s['modes_covered']['value']} of 10 classes"
            )
            path = plot_samples(family, out / f"{model}_samples_{sampler}.png", n=36, sampler=sampler, mixture=mixture)
            print(f"  wrote {path}")


if __name__ == "__main__":
    main()

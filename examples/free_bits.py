"""KL controls and the units they keep alive: beta, KL warm-up and free bits (Kingma et al. 2016).

    python examples/free_bits.py --epochs 20

Each setting trains the same VAE; active units (Burda et al. 2016: Cov_x E_q[z_u] > 0.01) and the
KL per image are reported on test data. Command line: ``--beta``, ``--warmup-epochs`` and
``--free-bits LAMBDA`` (nats per latent dimension) of ``pyro-vae train``.
"""

import argparse

import torch

from pyro_vae import ModelConfig, TrainConfig, build_model, fit, load_data
from pyro_vae.data.batch import for_evaluation
from pyro_vae.analysis.evaluate import evaluate


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--eval-k", type=int, default=200)
    p.add_argument("--data-dir", default=None, help="folder with the official MNIST test files (else: validation)")
    a = p.parse_args()
    data = load_data("mnist5k", a.data_dir)
    test = for_evaluation(data.test if data.test is not None else data.val, "dynamic")
    settings = [
        ("ELBO", {}),
        ("beta 4", {"beta": 4.0}),
        ("beta 4, free bits 0.5", {"beta": 4.0, "free_bits": 0.5}),
        ("warm-up (a third of the epochs)", {"warmup_epochs": a.epochs / 3}),
        ("free bits 0.5", {"free_bits": 0.5}),
    ]
    for name, options in settings:
        torch.manual_seed(0)
        model = build_model(ModelConfig(model="vae", data_shape=(1, 28, 28), latent_dim=50, hidden=(200, 200)))
        fit(model, data, TrainConfig(epochs=a.epochs, batch_size=100, patience=None, **options), progress=False)
        m = evaluate(model, test, k=a.eval_k)
        print(
            f"{name:32s} active units {m['active_units_z']['value']:2d}/50  KL {m['kl']['value']:5.1f}  "
            f"ELBO {m['elbo']['value']:8.2f}  log p(x) {m['log_px']['value']:8.2f} (k={a.eval_k})"
        )


if __name__ == "__main__":
    main()

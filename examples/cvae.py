"""The conditional VAE of Sohn, Lee & Yan (2015) on MNIST: p(z|c) p(x|z,c) with guide q(z|x,c).

    python examples/cvae.py --condition quadrant --epochs 20   # complete a digit from one quadrant
    python examples/cvae.py --condition class --epochs 20      # draw any digit on demand
    python examples/cvae.py --condition quadrant --data-dir ../shared/data/mnist   # official test set

--condition quadrant: c is the top-left quadrant of the image, as in Pyro's CVAE example; the
likelihood scores only the three missing quadrants, so evaluate()'s log p(x|c) is the
conditional log-likelihood of the missing pixels. Writes completion.png.
--condition class: c is the label (one-hot). Writes conditional_samples.png, one row per class.
Trains on the 4,500-image mnist5k split (offline); p(z|c) is a learned network of c.
"""

import argparse
import logging
import time

import torch

from pyro_vae import ModelConfig, RunDir, TrainConfig, build_model, fit, load_checkpoint, load_data
from pyro_vae.data.batch import for_evaluation
from pyro_vae.analysis.evaluate import evaluate


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--condition", choices=["quadrant", "class"], default="quadrant")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--data-dir", default=None, help="folder with the official MNIST test files (else: validation)")
    p.add_argument("--k", type=int, default=20, help="importance samples per image for log p(x|c)")
    p.add_argument("--out", default=None, help="run folder (default runs/cvae-CONDITION-TIME)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # fit's line per epoch
    out = RunDir(args.out or time.strftime(f"runs/cvae-{args.condition}-%Y%m%d-%H%M%S"))

    data = load_data("mnist5k", args.data_dir)
    config = ModelConfig(
        model="cvae",
        data_shape=data.train.data_shape,
        num_classes=10,
        condition=args.condition,
        observed_quadrants=1,
        latent_dim=20,
        hidden=(500,),
    )
    torch.manual_seed(0)
    cvae = build_model(config)
    train = TrainConfig(epochs=args.epochs, batch_size=128, lr=1e-3, patience=None)
    fit(cvae, data, train, out, model_config=config)

    cvae, ckpt = load_checkpoint(out.best)  # the epoch with the best validation ELBO
    cvae.eval()
    test, name = (data.test, "official MNIST test set") if data.test is not None else (data.val, "validation split")
    test = for_evaluation(test, ckpt["train_config"]["binarize"])  # as the run resolved it; once (seed 0)
    torch.manual_seed(0)
    if args.condition == "quadrant":
        lp = evaluate(cvae, test, k=args.k, progress=True)["log_px"]
        print(
            f"{name}, {len(test)} images: log p(missing 3 quadrants | top-left quadrant), k={args.k}: "
            f"{lp['value']:.2f} ± {lp['se']:.2f} nats/image"
        )
        path = cvae.figure("completion", test, out.figure("completion"))  # the family's own figure
    else:
        path = cvae.figure("conditional_samples", test, out.figure("conditional_samples"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

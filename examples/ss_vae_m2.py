"""Kingma, Rezende, Mohamed & Welling (2014), model M2: classify MNIST digits from 100 labels.

    python examples/ss_vae_m2.py --epochs 20                                # tests on validation
    python examples/ss_vae_m2.py --data-dir ../shared/data/mnist --out runs/m2   # official test set
    python examples/ss_vae_m2.py --conv --data-dir ../shared/data/mnist     # the benchmark's recipe (~12 min)

M2 generates an image from a class y and a style z. y is observed for the few labelled images
and a latent for the rest, summed out exactly over the 10 classes (TraceEnum_ELBO, the family's
default objective); the guide's q(y|x) is the classifier, also trained on the labels directly
(alpha = 0.1 N). Trained here on the 4,500-image mnist5k split (offline), not the paper's 60,000
images, so the error is higher than its 11.97% with 100 labels; the code is the same.
The best checkpoint is the one with the best accuracy on the (fully labelled) validation split.

``--conv`` trains the recipe that learns most from the unlabelled images on this small split
(benchmarks/results/semi_supervised_conv_z4.md): convolutional networks of 256 hidden units, a
4-dimensional z (so the class has to carry what tells digits apart: with a large z the decoder
can draw any digit from z alone and y drifts to style) and a classifier weight of 10 N, batches
of 100.
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
    p.add_argument("--labels", type=int, default=100, help="training labels kept, the same number per class")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--data-dir", default=None, help="folder with the official MNIST test files (else: validation)")
    p.add_argument("--k", type=int, default=10, help="importance samples per image for log p(x)")
    p.add_argument("--out", default=None, help="run folder (default runs/m2-TIME)")
    p.add_argument("--conv", action="store_true", help="conv networks, z of 4, aux weight 10 (the benchmark's recipe)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # fit's line per epoch
    out = RunDir(args.out or time.strftime("runs/m2-%Y%m%d-%H%M%S"))

    data = load_data("mnist5k", args.data_dir)
    if args.conv:
        config = ModelConfig(
            model="ssvae",
            data_shape=data.train.data_shape,
            num_classes=10,
            network="conv",
            latent_dim=4,
            hidden=(256,),
            aux_weight=10.0,
        )
    else:
        config = ModelConfig(
            model="ssvae",
            data_shape=data.train.data_shape,
            num_classes=10,
            latent_dim=50,
            hidden=(500,),
            aux_weight=0.1,
        )  # Kingma et al.'s sizes
    torch.manual_seed(0)
    m2 = build_model(config)
    train = TrainConfig(
        epochs=args.epochs, labels=args.labels, batch_size=100 if args.conv else 128, lr=1e-3, patience=None
    )
    summary = fit(m2, data, train, out, model_config=config)
    print(f"best validation accuracy {summary['best_val_accuracy']:.3f} at epoch {summary['best_epoch']}")

    m2, ckpt = load_checkpoint(out.best)  # fit leaves m2 at its last epoch; the best one is on disk
    m2.eval()
    test, name = (data.test, "official MNIST test set") if data.test is not None else (data.val, "validation split")
    test = for_evaluation(test, ckpt["train_config"]["binarize"])  # as the run resolved it; once (seed 0)
    torch.manual_seed(0)
    metrics = evaluate(m2, test, k=args.k, progress=True)
    acc = metrics["accuracy"]["value"]
    print(f"{name}, {len(test)} images, {args.labels} training labels:")
    print(f"  accuracy of q(y|x)  {acc:.4f}  (error {100 * (1 - acc):.2f}%)")
    print(
        f"  log p(x), k={args.k}    {metrics['log_px']['value']:.2f} ± {metrics['log_px']['se']:.2f} nats/image "
        f"(y summed out)"
    )
    print(f"checkpoints and metrics.jsonl in {out}")


if __name__ == "__main__":
    main()

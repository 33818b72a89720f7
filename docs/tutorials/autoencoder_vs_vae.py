# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Autoencoder vs VAE, and the reparameterization trick
#
# Two lessons, each measured.
#
# 1. **An autoencoder is not a generative model.** The same encoder and decoder trained as a
#    plain autoencoder (family `ae`: a point-mass guide, reconstruction only) reconstruct at
#    least as well as the VAE, but decoding z ~ N(0, I) gives blots: nothing pulled the
#    autoencoder's codes onto the prior. The VAE's KL term did.
# 2. **Why z = μ + σ ε.** The gradient of the ELBO with respect to the encoder can be estimated
#    through the sample (reparameterized) or with the score function (REINFORCE). Both are
#    unbiased; their variances differ by orders of magnitude.

# %%
import os

import matplotlib.pyplot as plt
import torch

import pyro_vae

# %matplotlib inline
# (importing pyro_vae set matplotlib's file backend, Agg, for its own figures; the magic
# above draws this notebook's figures under their cells again)

SMALL = os.environ.get("PYRO_VAE_TUTORIAL_BUDGET") == "small"
EPOCHS = 2 if SMALL else 20  # passes over the training images
K = 10 if SMALL else 100  # importance samples per image for log p(x)
DRAWS = 10 if SMALL else 100  # gradient draws for each variance
data = pyro_vae.load_data("mnist5k")


def binarized(ds, seed=0):
    """The images drawn once as binary pixels, x ~ Bernoulli(grey value), seeded."""
    seeded = torch.Generator().manual_seed(seed)
    return ds.replace(x=torch.bernoulli(ds.x, generator=seeded))


train, val = binarized(data.train), binarized(data.val)

# %% [markdown]
# ## Two families, one architecture
#
# `ae` reuses the VAE's networks: its guide puts all mass on the encoder's mean, and its objective
# is the reconstruction term alone.

# %%
families = {}
for name in ("ae", "vae"):
    torch.manual_seed(0)
    config = pyro_vae.ModelConfig(model=name, data_shape=data.train.data_shape, latent_dim=16, hidden=(400,))
    families[name] = pyro_vae.build_model(config)
    train_config = pyro_vae.TrainConfig(epochs=EPOCHS, patience=None)
    pyro_vae.fit(families[name], data, train_config, progress=False)
    families[name].eval()

# %% [markdown]
# Reconstruction log-likelihood at the code, and log p(x), on the validation images. The
# autoencoder's guide has no density q(z | x), so its log p(x) is undefined and `evaluate` says
# so in words instead of printing a number.

# %%
for name, family in families.items():
    torch.manual_seed(0)
    m = pyro_vae.evaluate(family, val, k=K)
    print(f"{name}: reconstruction {m['recon_log_lik']['value']:.1f} nats/image")
    log_px = m["log_px"]
    print("  log p(x):", f"{log_px['value']:.1f} nats/image" if log_px["value"] is not None else log_px["note"])

# %% [markdown]
# ## Sampling from the prior, and from the codes
#
# Top row of each pair: z ~ N(0, I). Bottom row: z drawn from a 10-component Gaussian mixture
# fitted to the training images' codes (Ghosh et al. 2020), which makes the autoencoder generate
# too.

# %%
fig, axes = plt.subplots(4, 10, figsize=(10, 4.4))
for i, (name, family) in enumerate(families.items()):
    mixture = pyro_vae.fit_code_mixture(family, train, components=10)
    for j, sampler in enumerate(("prior", "mixture")):
        torch.manual_seed(0)
        images = pyro_vae.generate(family, 10, sampler=sampler, mixture=mixture)
        row = axes[2 * i + j]
        row[0].set_title(f"{name}, z from the {sampler}", loc="left", fontsize=9)
        for image, ax in zip(images, row):
            ax.imshow(image[0].cpu(), cmap="gray")
            ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The reparameterization trick
#
# The VAE's `estimator` option chooses how the guide's sample site carries gradients:
# `reparam` (z = μ + σ ε, the default) or `score` (the score function, Pyro's estimator for
# non-reparameterizable sites), also with a decaying-average baseline (`score-avg`).
# `gradient_variance` draws the gradient many times on one batch at fixed parameters and reports
# its variance per coordinate, for the encoder's and the decoder's parameters.

# %%
batch = train.subset(slice(0, 128))
print(f"{'estimator':12s} {'encoder variance':>17s} {'decoder variance':>17s}")
for estimator in ("reparam", "score", "score-avg"):
    torch.manual_seed(0)
    config = pyro_vae.ModelConfig(data_shape=data.train.data_shape, latent_dim=16, hidden=(200,), estimator=estimator)
    v = pyro_vae.gradient_variance(pyro_vae.build_model(config), batch, draws=DRAWS)
    encoder, decoder = v["encoder"]["variance"], v["decoder"]["variance"]
    print(f"{estimator:12s} {encoder:17.3g} {decoder:17.3g}")

# %% [markdown]
# The score function's variance for the encoder is orders of magnitude larger than the
# reparameterized one at the same parameters, and a baseline buys part of that back; the decoder,
# whose gradient does not go through the sample, is about the same. Trained for the same number
# of steps, the noisier estimator ends far behind: the measured table, with the test ELBO after 20
# epochs, is on the [results page](../results.md#the-textbook-lessons-measured), and
# [the concepts page](../concepts.md#4-the-reparameterization-trick) derives both estimators
# beside their code.

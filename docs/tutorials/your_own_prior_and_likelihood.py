# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Your own prior and likelihood
#
# The VAE's prior p(z) and likelihood p(x | z) are modules you can replace without touching the
# library. A **prior** is any `nn.Module` whose `forward()` returns a distribution over one
# latent vector; a **likelihood** is any module that maps the decoder's output to a distribution
# over one image (and, for the figures, gives its mean). Here: a heavy-tailed Laplace prior and
# a Gaussian likelihood with one learned scale per pixel, for grey (not binarized) digits.
# Neither is registered anywhere.

# %%
import logging
import os
import sys

import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch
from torch import nn

import pyro_vae

# %matplotlib inline
# (importing pyro_vae set matplotlib's file backend, Agg, for its own figures; the magic
# above draws this notebook's figures under their cells again)

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
torch.manual_seed(0)
SMALL = os.environ.get("PYRO_VAE_TUTORIAL_BUDGET") == "small"
EPOCHS = 2 if SMALL else 20


# %% [markdown]
# ## The two modules
#
# Both return Pyro distributions whose `event_shape` is one data point: `(latent_dim,)` for the
# prior, the image's shape for the likelihood (`to_event` turns the per-pixel densities into one
# log-density per image).


# %%
class LaplacePrior(nn.Module):
    def __init__(self, latent_dim):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))  # moves with .to(device)

    def forward(self):  # event_shape (latent_dim,)
        return dist.Laplace(self.loc, torch.ones_like(self.loc)).to_event(1)


class PixelGaussian(nn.Module):
    def __init__(self, data_shape):
        super().__init__()
        self.log_scale = nn.Parameter(torch.full(data_shape, -2.0))  # learned

    def forward(self, params):  # event_shape data_shape: one log-density per image
        event_dims = len(self.log_scale.shape)
        return dist.Normal(params, self.log_scale.exp()).to_event(event_dims)

    def mean(self, params):  # what the figures draw
        return params


# %% [markdown]
# ## The VAE around them
#
# `VAE(encoder, decoder, prior, likelihood, data_shape, latent_dim)` puts them in the model; the
# encoder and decoder are the library's MLPs.

# %%
data = pyro_vae.load_data("mnist5k")
shape, d = data.train.data_shape, 16
encoder = pyro_vae.MLPEncoder(shape, d, hidden=(256,))
decoder = pyro_vae.MLPDecoder(shape, d, hidden=(256,))
vae = pyro_vae.VAE(encoder, decoder, LaplacePrior(d), PixelGaussian(shape), shape, d)

# %% [markdown]
# `vae.model` and `vae.guide` are ordinary Pyro programs, so Pyro's own tools work on them: one
# step of `SVI` with `Trace_ELBO`, and `Predictive` drawing from the prior (`model(x=None)`):

# %%
optimizer = pyro.optim.Adam({"lr": 1e-3})
svi = pyro.infer.SVI(vae.model, vae.guide, optimizer, pyro.infer.Trace_ELBO())
print(f"one SVI step: loss {svi.step(data.train.x[:64]) / 64:.1f} nats/image")
draws = pyro.infer.Predictive(vae.model, num_samples=4)()
print("prior predictive draws of x:", tuple(draws["x"].shape))

# %% [markdown]
# ## Training with `fit`
#
# Grey images are kept as they are (`binarize="none"`); a Gaussian log-density of continuous
# pixels can be positive, so higher is better but there is no bound at 0.

# %%
train = pyro_vae.TrainConfig(epochs=EPOCHS, binarize="none", patience=None)
summary = pyro_vae.fit(vae, data, train, progress=False)
print(f"best validation ELBO {summary['best_val_elbo']:.1f} nats/image")

# %% [markdown]
# ## What the likelihood learned
#
# The scale σ of each pixel: small at the border, where every image is black, larger where the
# strokes vary.

# %%
scale = vae.likelihood.log_scale.exp().detach()[0]
plt.imshow(scale, cmap="viridis")
plt.colorbar(label="σ of the pixel")
plt.axis("off")
plt.show()

# %% [markdown]
# Samples: z from the Laplace prior, shown as the decoder's mean E[x | z] (`mean=True`) and as
# draws from the pixel Gaussians (`mean=False`, noisy by design):

# %%
torch.manual_seed(0)
fig, axes = plt.subplots(2, 8, figsize=(8, 2.2))
for row, mean in enumerate((True, False)):
    for image, ax in zip(pyro_vae.generate(vae, 8, mean=mean), axes[row]):
        ax.imshow(image[0].clamp(0, 1).cpu(), cmap="gray")
        ax.axis("off")
plt.show()

# %% [markdown]
# The same modules plug into `build_model` by name once registered (`register_prior`,
# `register_likelihood`), which also makes them `--prior` and `--likelihood` choices of the
# command line with `--plugin`. [Writing your own family](your_own_family.py) goes one step
# further: your own model and guide.

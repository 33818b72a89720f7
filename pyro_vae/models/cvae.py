"""The conditional VAE of Sohn, Lee & Yan (2015).

    model:  z ~ p(z | c),  x ~ p(x | decoder(z, c))
    guide:  z ~ q(z | x, c) = N(encoder(x, c))

The condition c is

* ``class``: the label y of each image (one-hot): draw any digit on demand;
* ``quadrant``: the observed part of the image itself, as in Pyro's CVAE example: the first
  ``observed_quadrants`` quadrants of the image (1: top-left; 2: + top-right; 3: + bottom-left)
  are given, and the likelihood scores only the missing pixels, so log p(x | c) is the
  conditional log-likelihood of the missing quadrants;
* ``given``: the batch's own condition tensor ``c`` (a data set's ``c`` array), flattened.

p(z|c) is a learned Gaussian network of c (``learned_prior``, the default) or the library prior
``prior`` (e.g. the standard normal). The networks are MLPs on flattened inputs with c
attached, so any data shape works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.components.distributions import ReparamNormal
from pyro_vae.components.likelihoods import build_likelihood
from pyro_vae.components.networks import MLPDecoder, MLPEncoder
from pyro_vae.components.priors import build_prior, check_prior
from pyro_vae.models.base import Family, batch_size_of, option
from pyro_vae.models.parts import cat_broadcast, one_hot
from pyro_vae.models.registry import register_model

CONDITIONS = ("class", "quadrant", "given")


@dataclass
class CVAEConfig:
    """Options of the conditional VAE (each one a ``pyro-vae train`` flag)."""

    condition: str = option(
        "class",
        "what x is conditioned on: the class label, or the first --observed-quadrants quadrants of the image",
        choices=("class", "quadrant"),
    )
    observed_quadrants: int = option(
        1,
        "quadrant condition: how many quadrants are given (1-3)",
        choices=(1, 2, 3),
        only_with={"condition": ("quadrant",)},
    )
    latent_dim: int = option(20, "size of z")
    hidden: tuple = option((500,), "hidden layer sizes of the encoder, decoder and prior networks")
    learned_prior: bool = option(True, "p(z|c) a learned network of c (--no-learned-prior: the library prior --prior)")
    prior: str = option("standard_normal", "p(z) when --no-learned-prior", only_with={"learned_prior": (False,)})
    likelihood: str = option("bernoulli", "p(x|z,c): a registered likelihood")
    prior_kwargs: dict = option({}, "")
    likelihood_kwargs: dict = option({}, "")


def quadrant_mask(data_shape, observed_quadrants: int) -> torch.Tensor:
    """Boolean image mask, True on the observed quadrants (top-left, top-right, bottom-left)."""
    if len(data_shape) < 2:
        raise ValueError(f"the quadrant condition needs image data (..., H, W), got data shape {tuple(data_shape)}")
    if observed_quadrants not in (1, 2, 3):
        raise ValueError(f"observed_quadrants must be 1, 2 or 3, got {observed_quadrants}")
    h, w = data_shape[-2:]
    mask = torch.zeros(data_shape, dtype=torch.bool)
    corners = [
        (slice(0, h // 2), slice(0, w // 2)),
        (slice(0, h // 2), slice(w // 2, w)),
        (slice(h // 2, h), slice(0, w // 2)),
    ]
    for rows, cols in corners[:observed_quadrants]:
        mask[..., rows, cols] = True
    return mask


def mask_event(d, mask: torch.Tensor):
    """Restrict an ``Independent`` likelihood to the elements where ``mask`` is True."""
    if not isinstance(d, dist.Independent):
        raise ValueError(
            "the quadrant condition needs a likelihood that is independent per pixel "
            "(an Independent distribution, as every built-in likelihood is)"
        )
    return d.base_dist.mask(mask).to_event(d.reinterpreted_batch_ndims)


class PriorNet(nn.Module):
    """p(z|c) = N(loc(c), diag scale(c)^2)."""

    def __init__(self, cond_dim: int, latent_dim: int, hidden):
        super().__init__()
        self.net = MLPEncoder((cond_dim,), latent_dim, hidden)

    def forward(self, c):
        loc, scale = self.net(c)
        return dist.Normal(loc, scale).to_event(1)


@register_model("cvae")
class CVAE(Family):
    """Conditional VAE: a condition c (a label, part of the image, or given data) and z generate x."""

    Config = CVAEConfig
    conditional = True

    def __init__(
        self,
        encoder,
        decoder,
        prior,
        likelihood,
        data_shape,
        latent_dim,
        condition="class",
        num_classes=None,
        cond_shape=None,
        observed=None,
    ):
        super().__init__()
        if condition not in CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
        self.encoder, self.decoder, self.prior, self.likelihood = encoder, decoder, prior, likelihood
        self.data_shape = tuple(int(s) for s in data_shape)
        self.latent_dim, self.condition = int(latent_dim), condition
        self.num_classes = num_classes
        self.cond_shape = tuple(cond_shape or ())
        self.register_buffer("observed", observed if observed is not None else torch.zeros(0, dtype=torch.bool))
        self.needs_labels = condition == "class"
        self.learned_prior = isinstance(prior, PriorNet)
        if not self.learned_prior:
            check_prior(prior, self.latent_dim)
        self.figures = {
            "class": ("samples", "conditional_samples", "latent_codes"),
            "quadrant": ("completion", "latent_codes"),
            "given": ("latent_codes",),
        }[condition]
        self.figure_titles = {  # name -> caption, or (caption, alt text), in the report
            "conditional_samples": (
                "Samples of every class: E[x|z,c], z ~ p(z|c)",
                "A grid of generated digits, one row per class",
            ),
            "completion": (
                "Quadrant completion on test images",
                "Digits with given quadrants and several completions of the missing ones",
            ),
            "latent_codes": "Latent space: means of q(z|x,c)",
        }

    @classmethod
    def from_config(cls, config: CVAEConfig, data_shape, num_classes=None, cond_shape=None) -> "CVAE":
        data_shape = tuple(data_shape)
        observed = None
        if config.condition == "class":
            if not num_classes or num_classes < 2:
                raise ValueError(
                    f"the class-conditional VAE needs labelled data with at least 2 classes; "
                    f"got num_classes={num_classes}"
                )
            cond_dim = num_classes
        elif config.condition == "quadrant":
            observed = quadrant_mask(data_shape, config.observed_quadrants)
            cond_dim = math.prod(data_shape)
        elif config.condition == "given":
            raise ValueError(
                "condition 'given' is built in Python: CVAE(..., condition='given', "
                "cond_shape=...) with networks sized for the condition"
            )
        else:
            raise ValueError(f"unknown condition {config.condition!r}; choose one of {', '.join(CONDITIONS)}")
        d, hidden = config.latent_dim, tuple(config.hidden)
        encoder = MLPEncoder((math.prod(data_shape) + cond_dim,), d, hidden)
        decoder = MLPDecoder(data_shape, d + cond_dim, hidden)
        prior = (
            PriorNet(cond_dim, d, hidden)
            if config.learned_prior
            else build_prior(config.prior, d, **config.prior_kwargs)
        )
        likelihood = build_likelihood(config.likelihood, data_shape, **config.likelihood_kwargs)
        return cls(
            encoder, decoder, prior, likelihood, data_shape, d, config.condition, num_classes, (cond_dim,), observed
        )

    # ------------------------------------------------------------------ the contract
    def make_condition(self, batch) -> torch.Tensor:
        """The flat condition vector c (B, cond_dim) of a batch."""
        if self.condition == "class":
            return one_hot(batch.y, self.num_classes)
        if self.condition == "quadrant":
            return (batch.x * self.observed).reshape(len(batch), -1)
        if batch.c is None:
            raise ValueError("condition 'given' needs data with a condition tensor c")
        return batch.c.reshape(len(batch), -1).to(batch.x.dtype)

    def args(self, batch):
        return batch.x, self.make_condition(batch)

    def check_labels(self, y):
        """The labels are classes of this model only where they are its condition."""
        if self.condition == "class":
            super().check_labels(y)

    def check_batch(self, batch):
        super().check_batch(batch)  # shape, and labels of the classes it has (check_labels)
        if self.condition == "given":
            c = self.make_condition(batch)
            if tuple(c.shape[1:]) != self.cond_shape:
                raise ValueError(
                    f"this model expects a condition of {self.cond_shape[0]} numbers per data point, "
                    f"got c of shape {tuple(batch.c.shape)}"
                )

    def _prior(self, c):
        return self.prior(c) if self.learned_prior else self.prior()

    def _likelihood(self, z, c):
        d = self.likelihood(self.decoder(cat_broadcast(z, c)))
        return mask_event(d, ~self.observed) if self.condition == "quadrant" else d

    def model(self, x=None, c=None):
        """p(z|c) p(x|z,c); ``x=None`` draws x given the condition ``c``. (Plain form: training
        puts the KL weight on z and ``N/B`` on every site.)"""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        if c is None:
            raise ValueError(
                "the conditional VAE draws x given a condition: call model(x, c) or model(None, c) "
                "with c = family.make_condition(batch)"
            )
        with pyro.plate("data", batch_size_of(x, c)):
            z = pyro.sample("z", self._prior(c))
            return pyro.sample("x", self._likelihood(z, c), obs=x)

    def guide(self, x, c=None):
        """q(z|x,c) = N(encoder(x, c)), reparameterized."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(cat_broadcast(x.reshape(x.shape[0], -1), c))
            pyro.sample("z", ReparamNormal(loc, scale).to_event(1))

    # ------------------------------------------------------------------ helpers for figures
    def _class_condition(self, condition, n, device):
        if self.condition != "class":
            raise ValueError(
                f"a {self.condition}-conditioned model draws given images, not a class: use "
                f"complete(x) (its figure: pyro-vae plot RUN)"
            )
        y = torch.as_tensor(condition, device=device).long().reshape(-1)
        if y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(f"--condition must be a class in 0..{self.num_classes - 1}, got {condition}")
        return one_hot(y.expand(n) if y.numel() == 1 else y, self.num_classes)

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True, condition=None):
        """``n`` images given ``condition`` (a class, or one class per image); a class-conditional
        model draws classes uniformly when no condition is given."""
        device = next(self.parameters()).device
        if condition is None:
            condition = torch.randint(0, self.num_classes or 1, (n,), device=device)
        c = self._class_condition(condition, n, device)
        z = self._prior(c).sample() if self.learned_prior else self.prior().sample((n,))
        params = self.decoder(cat_broadcast(z, c))
        return self.likelihood.mean(params) if mean else self.likelihood(params).sample()

    @torch.no_grad()
    def encode(self, x, c=None):
        """(loc, scale) of q(z|x,c); the condition is made from x (and the labels, for class)."""
        if c is None:
            if self.condition != "quadrant":
                raise ValueError("encode needs the condition c of these images")
            c = (x * self.observed).reshape(x.shape[0], -1)
        return self.encoder(cat_broadcast(x.reshape(x.shape[0], -1), c))

    @torch.no_grad()
    def complete(self, x, num_samples: int = 1) -> torch.Tensor:
        """Quadrant completion: the observed quadrants of ``x`` kept, the others E[x|z,c] with
        z ~ p(z|c); shape ``(num_samples, B, *data_shape)``."""
        c = (x * self.observed).reshape(x.shape[0], -1)
        z = (
            self._prior(c).sample((num_samples,))
            if self.learned_prior
            else self.prior().sample((num_samples, x.shape[0]))
        )
        mean = self.likelihood.mean(self.decoder(cat_broadcast(z, c)))
        return torch.where(self.observed, x, mean)

    def figure(self, name, data, path):
        from pyro_vae.drawing import plot_codes, plot_image_rows

        if name == "conditional_samples":
            k = self.num_classes
            x = self.sample(k * 8, condition=torch.arange(k, device=data.x.device).repeat_interleave(8))
            return plot_image_rows(
                x.reshape(k, 8, *self.data_shape), path, f"Each row one class c = 0..{k - 1}: E[x|z,c] with z ~ p(z|c)"
            )
        if name == "latent_codes":
            loc, _ = self.encoder(cat_broadcast(data.x.reshape(len(data), -1), self.make_condition(data)))
            return plot_codes(loc, data.y, path, "q(z|x,c) means of test images")
        if name == "completion":
            x = data.x[:8]
            done = self.complete(x, num_samples=3)
            given = torch.where(self.observed, x, torch.full_like(x, 0.5))
            rows = torch.stack([x, given, *done])
            return plot_image_rows(
                rows, path, "Rows: test image; given quadrant(s) (grey: missing); 3 completions, z ~ p(z|c)"
            )
        return super().figure(name, data, path)

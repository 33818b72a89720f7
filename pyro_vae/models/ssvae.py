"""The semi-supervised VAE "M2" of Kingma, Rezende, Mohamed & Welling (2014).

    model:  y ~ Cat(1/C),  z ~ p(z),  x ~ p(x | decoder(z, y))
    guide:  y ~ q(y|x) = Cat(classifier(x)),  z ~ q(z|x,y) = N(encoder(x, y))

A batch carries labels ``y`` and a mask ``labelled``: a labelled y is observed
(``obs_mask``); an unlabelled one is the latent site ``y_unobserved``, which the guide marks
``enumerate="parallel"`` so ``TraceEnum_ELBO`` (this family's default objective) and the
evaluator sum it out exactly over the C classes. For a labelled point the guide's distribution
over ``y_unobserved`` is a point mass on its label, so the enumeration weighs only the true
class and adds no entropy: the labelled term is exactly ``log p(x, y) >= E_q(z|x,y)[...]``.

Per data set the loss is (Kingma et al., eq. 9)

    -ELBO(labelled and unlabelled points) + alpha * sum_labelled -log q(y|x),
    alpha = aux_weight * N      (Kingma et al.: alpha = 0.1 N),

the second term (:meth:`SSVAE.extra_loss`) training the classifier on the labels directly.
Labelled points are added to every training batch (``--labelled-batch-size``), so their terms
weigh more than their share of the data set, as in Kingma et al.'s own training.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch.nn import functional as F

from pyro_vae.components.distributions import ReparamNormal
from pyro_vae.components.likelihoods import build_likelihood
from pyro_vae.components.networks import build_networks
from pyro_vae.components.priors import build_prior, check_prior
from pyro_vae.models.base import GENERIC_FIGURES, Family, batch_size_of, data_plate, option
from pyro_vae.models.parts import (
    Classifier,
    NetworkConfig,
    cat_broadcast,
    label_encoder_shape,
    most_probable,
    one_hot,
    with_label,
)
from pyro_vae.models.registry import register_model

POINT_MASS = -1e4  # logit of the classes a labelled point does not have (exp() is exactly 0)


@dataclass
class SSVAEConfig(NetworkConfig):
    """Options of the M2 family (each one a ``pyro-vae train`` flag): the VAE's, with the
    classifier's loss weight and Kingma et al.'s 500 hidden units."""

    hidden: tuple = option((500,), "hidden layer sizes of the classifier, encoder and decoder")
    aux_weight: float = option(
        0.1, "weight of the classifier loss on the labels, alpha / N (Kingma et al.: 0.1)", min=0
    )
    classifier_dropout: float = option(0.0, "dropout on the classifier's input pixels while training (0: none)", min=0)


@register_model("ssvae")
class SSVAE(Family):
    """M2: a class label y (observed or summed out) and a continuous z generate x."""

    Config = SSVAEConfig
    latent_sites = ("z", "y_unobserved")
    default_objective = "enum"
    joint_prior = True  # sample(n) draws y ~ p(y) and z ~ p(z): unconditional samples (generation scores)
    select_by = "accuracy"
    needs_labels = True
    partial_labels = True
    conditional = True
    figures = tuple(f for f in GENERIC_FIGURES if f not in ("manifold", "interpolation")) + ("confusion", "analogies")
    metric_notes = {"accuracy": "argmax q(y|x) against the true labels"}
    figure_titles = {  # name -> (caption, alt text) in the report
        "confusion": ("Confusion matrix of q(y|x)", "A matrix of counts of true against predicted classes"),
        "analogies": (
            "Analogies: the style z of a test image, drawn as every class",
            "Rows of digits: a test image, then its style drawn as each class",
        ),
    }

    def __init__(
        self, classifier, encoder, decoder, prior, likelihood, data_shape, latent_dim, num_classes, aux_weight=0.1
    ):
        super().__init__()
        self.classifier, self.encoder, self.decoder = classifier, encoder, decoder
        self.prior, self.likelihood = prior, likelihood
        self.data_shape = tuple(int(s) for s in data_shape)
        self.latent_dim, self.num_classes = int(latent_dim), int(num_classes)
        self.aux_weight = float(aux_weight)
        self.register_buffer("class_logits", torch.zeros(self.num_classes))  # p(y) uniform
        check_prior(prior, self.latent_dim)

    @classmethod
    def from_config(cls, config: SSVAEConfig, data_shape, num_classes=None) -> "SSVAE":
        if not num_classes or num_classes < 2:
            raise ValueError(
                f"the semi-supervised model needs labelled data with at least 2 classes; got num_classes={num_classes}"
            )
        data_shape = tuple(data_shape)
        k, d = num_classes, config.latent_dim
        # q(z|x,y) sees y as extra input: a flat vector for the MLP, constant channels for conv
        encoder, _ = build_networks(
            config.network, label_encoder_shape(config.network, data_shape, k), d, config.hidden
        )
        _, decoder = build_networks(config.network, data_shape, d + k, config.hidden)
        return cls(
            Classifier(config.network, data_shape, k, config.hidden, config.classifier_dropout),
            encoder,
            decoder,
            build_prior(config.prior, d, **config.prior_kwargs),
            build_likelihood(config.likelihood, data_shape, **config.likelihood_kwargs),
            data_shape,
            d,
            k,
            config.aux_weight,
        )

    # ------------------------------------------------------------------ the contract
    def args(self, batch):
        n = len(batch)
        if batch.y is None:
            return (
                batch.x,
                torch.zeros(n, dtype=torch.long, device=batch.x.device),
                torch.zeros(n, dtype=torch.bool, device=batch.x.device),
            )
        labelled = (
            batch.labelled if batch.labelled is not None else torch.ones(n, dtype=torch.bool, device=batch.x.device)
        )
        return batch.x, batch.y, labelled

    def _encode_input(self, x, y1h):
        """x with the one-hot label attached, for q(z|x,y)."""
        return with_label(x, y1h, self.data_shape, conv=len(self.encoder.data_shape) == 3)

    def model(self, x=None, y=None, labelled=None, kl_weight=1.0, num_data=None):
        """p(y) p(z) p(x|y,z). ``y`` with ``labelled``: labels observed where the mask is True;
        ``x=None`` draws from the prior predictive."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with data_plate(batch_size_of(x, y), num_data):
            with poutine.scale(scale=kl_weight):
                z = pyro.sample("z", self.prior())
                py = dist.Categorical(logits=self.class_logits)
                y = (
                    pyro.sample("y", py, obs=y, obs_mask=labelled)
                    if labelled is not None
                    else pyro.sample("y", py, obs=y)
                )
            params = self.decoder(cat_broadcast(z, one_hot(y, self.num_classes)))
            return pyro.sample("x", self.likelihood(params), obs=x)

    def guide(self, x, y=None, labelled=None, kl_weight=1.0, num_data=None):
        """q(y|x) q(z|x,y); the unobserved y is enumerated (a point mass on the label for the
        labelled points, see the module docstring)."""
        pyro.module(self.pyro_name, self)
        self.check_shape(x)
        with data_plate(x.shape[0], num_data):
            logits = self.classifier(x)
            if y is None or labelled is not None:
                if labelled is not None:  # point mass on the label where it is known
                    known = torch.full_like(logits, POINT_MASS).scatter(-1, y[:, None], 0.0)
                    logits = torch.where(labelled[:, None], known, logits)
                with poutine.scale(scale=kl_weight):
                    y = pyro.sample(
                        "y" if labelled is None else "y_unobserved",
                        dist.Categorical(logits=logits),
                        infer={"enumerate": "parallel"},
                    )
            loc, scale = self.encoder(self._encode_input(x, one_hot(y, self.num_classes)))
            with poutine.scale(scale=kl_weight):
                pyro.sample("z", ReparamNormal(loc, scale).to_event(1))

    def extra_loss(self, batch, num_data=None):
        """alpha * mean over the batch's labelled points of -log q(y|x), alpha = aux_weight * N."""
        if batch.y is None or self.aux_weight == 0:
            return None
        mask = batch.labelled if batch.labelled is not None else torch.ones_like(batch.y, dtype=torch.bool)
        if not bool(mask.any()):
            return None
        nll = F.cross_entropy(self.classifier(batch.x[mask]), batch.y[mask])
        return self.aux_weight * (num_data or len(batch)) * nll

    def predict(self, x, batch_size: int = 1000) -> torch.Tensor:
        """argmax q(y|x) for every row of ``x``."""
        return most_probable(self.classifier, x, batch_size)

    @torch.no_grad()
    def metrics(self, batch) -> dict:
        if batch.y is None:
            return {}
        return {"accuracy": (self.predict(batch.x) == batch.y).float().mean().item()}

    # ------------------------------------------------------------------ helpers for figures
    @torch.no_grad()
    def encode(self, x, y=None):
        """(loc, scale) of q(z|x,y), with y = argmax q(y|x) when not given."""
        y = self.predict(x) if y is None else y
        return self.encoder(self._encode_input(x, one_hot(y, self.num_classes)))

    @torch.no_grad()
    def decode(self, z, y=None):
        """E[x|z,y]; y defaults to class 0."""
        y = torch.zeros(z.shape[:-1], dtype=torch.long, device=z.device) if y is None else y
        return self.likelihood.mean(self.decoder(cat_broadcast(z, one_hot(y, self.num_classes))))

    @torch.no_grad()
    def reconstruct(self, x, sample_z: bool = False):
        y = self.predict(x)
        loc, scale = self.encode(x, y)
        z = loc + scale * torch.randn_like(scale) if sample_z else loc
        return self.decode(z, y)

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True, condition=None):
        """``n`` images: z ~ p(z) and y ~ p(y) (or y = ``condition``), shown as E[x|y,z]."""
        z = self.prior().sample((n,))
        if condition is None:
            y = dist.Categorical(logits=self.class_logits).sample((n,))
        else:
            y = torch.as_tensor(condition, device=z.device).long().expand(n)
        params = self.decoder(cat_broadcast(z, one_hot(y, self.num_classes)))
        return self.likelihood.mean(params) if mean else self.likelihood(params).sample()

    def figure(self, name, data, path):
        from pyro_vae.drawing import plot_confusion

        if name == "confusion":
            return plot_confusion(self.predict(data.x), data.y, self.num_classes, path)
        if name == "analogies":
            return self.plot_analogies(data.x, path)
        return super().figure(name, data, path)

    @torch.no_grad()
    def plot_analogies(self, x, path, n: int = 8):
        """For each of ``n`` test images (left column): its style z = mean of q(z|x, y=argmax q(y|x)),
        decoded as every class y (one column per class), as in Kingma et al. (2014), fig. 1."""
        from pyro_vae.drawing import grid_figsize, image_grid, no_ticks, plt, save, show

        xb = x[:n].to(self.class_logits.device)
        k = self.num_classes
        z, _ = self.encode(xb)
        ys = torch.arange(k, device=z.device)
        dec = self.decode(z[:, None, :].expand(-1, k, -1), ys[None, :].expand(z.shape[0], -1))
        rows = torch.cat([xb[:, None].cpu(), dec.reshape(z.shape[0], k, *self.data_shape).cpu()], 1)
        grid = image_grid(rows.reshape(-1, *self.data_shape), k + 1)
        fig, ax = plt.subplots(figsize=grid_figsize(grid, min_w=5.0, max_w=9.0))
        show(ax, grid)
        no_ticks(ax)
        ax.set_title(f"Analogies: left, a test image; right, its style z drawn as each class 0..{k - 1}", fontsize=10)
        fig.tight_layout()
        return save(fig, path)

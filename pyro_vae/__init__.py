"""pyro-vae: variational autoencoders written as Pyro programs.

A model is an ``nn.Module`` with ``model(x, ...)`` and ``guide(x, ...)``; everything else
(training, evaluation, plots) works on any such pair.
"""

from .config import ModelConfig, TrainConfig
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data import DataError, Dataset, load_data
from .likelihoods import (BernoulliLikelihood, ContinuousBernoulliLikelihood, GaussianLikelihood,
                          LaplaceLikelihood, Likelihood, register_likelihood)
from .models import VAE, build_model
from .networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from .priors import DiagonalGaussian, MixtureOfGaussians, StandardNormal, register_prior
from .training import ELBOLoss, TrainingDiverged, fit, make_elbo

__version__ = "0.1.0"

__all__ = [
    "ModelConfig", "TrainConfig", "CheckpointError", "load_checkpoint", "save_checkpoint",
    "DataError", "Dataset", "load_data", "BernoulliLikelihood", "ContinuousBernoulliLikelihood",
    "GaussianLikelihood", "LaplaceLikelihood", "Likelihood", "register_likelihood", "VAE",
    "build_model", "ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder", "DiagonalGaussian",
    "MixtureOfGaussians", "StandardNormal", "register_prior", "ELBOLoss", "TrainingDiverged", "fit",
    "make_elbo",
]

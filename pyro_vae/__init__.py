"""pyro-vae: variational autoencoders written as Pyro programs.

Every model family is an ``nn.Module`` with Pyro programs ``model`` and ``guide`` behind one
declared contract (:mod:`pyro_vae.models.base`); training, evaluation, figures, report and CLI
work on any family that meets it.
"""

from .config import DataConfig, ModelConfig, TrainConfig
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data import Batch, DataError, Dataset, select_labels
from .datasets import load_data
from .likelihoods import (BernoulliLikelihood, ContinuousBernoulliLikelihood, GaussianLikelihood,
                          LaplaceLikelihood, Likelihood, register_likelihood)
from .models import (AE, CVAE, GMVAE, IAFVAE, SSVAE, VAE, ContractError, Family, HierarchicalVAE, build_model,
                     data_plate, register_model)
from .networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from .objectives import Loss, make_objective, register_objective
from .importance import IWAE, FreeBitsELBO, StickingTheLanding
from .priors import DiagonalGaussian, FlowPrior, MixtureOfGaussians, StandardNormal, VampPrior, register_prior
from .run import RunDir
from .finish import finish_run
from .training import TrainingDiverged, fit
from .estimators import gradient_variance
from .evaluation import evaluate
from .m1 import m1_classify
from .samplers import fit_code_mixture, generate

__version__ = "0.2.0"

__all__ = [
    "DataConfig", "ModelConfig", "TrainConfig", "CheckpointError", "load_checkpoint", "save_checkpoint",
    "Batch", "DataError", "Dataset", "load_data", "select_labels", "BernoulliLikelihood",
    "ContinuousBernoulliLikelihood", "GaussianLikelihood", "LaplaceLikelihood", "Likelihood",
    "register_likelihood", "VAE", "AE", "SSVAE", "CVAE", "Family", "ContractError", "build_model", "data_plate",
    "register_model", "ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder", "Loss", "make_objective",
    "register_objective", "DiagonalGaussian", "MixtureOfGaussians", "StandardNormal", "register_prior",
    "RunDir", "finish_run", "TrainingDiverged", "fit", "evaluate", "gradient_variance", "m1_classify",
    "fit_code_mixture", "generate", "HierarchicalVAE", "IAFVAE", "GMVAE", "IWAE", "StickingTheLanding",
    "FreeBitsELBO", "FlowPrior", "VampPrior",
]

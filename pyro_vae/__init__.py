"""pyro-vae: variational autoencoders written as Pyro programs.

Every model family is an ``nn.Module`` with Pyro programs ``model`` and ``guide`` behind one
declared contract (:mod:`pyro_vae.contract`: a required core and optional abilities); training,
evaluation, figures, report and CLI work on any family that meets it.

Messages go to the ``pyro_vae`` logger (:mod:`logging`); the library installs no handler of its
own (the CLI does), so from Python ``logging.basicConfig(level=logging.INFO)`` shows them.
"""

import logging

from pyro_vae.analysis.evaluate import evaluate
from pyro_vae.analysis.m1 import m1_classify
from pyro_vae.analysis.samplers import fit_code_mixture, generate
from pyro_vae.components.likelihoods import (
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    GaussianLikelihood,
    LaplaceLikelihood,
    Likelihood,
    register_likelihood,
)
from pyro_vae.components.networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from pyro_vae.components.priors import (
    DiagonalGaussian,
    FlowPrior,
    MixtureOfGaussians,
    StandardNormal,
    VampPrior,
    register_prior,
)
from pyro_vae.config import DataConfig, ModelConfig, TrainConfig
from pyro_vae.contract import MissingAbility
from pyro_vae.data.batch import Batch, DataError, Dataset, select_labels
from pyro_vae.data import load_data
from pyro_vae.inference.estimators import gradient_variance
from pyro_vae.inference.importance import IWAE, FreeBitsELBO, StickingTheLanding
from pyro_vae.inference.objectives import Loss, make_objective, register_objective
from pyro_vae.models import (
    AE,
    CVAE,
    GMVAE,
    IAFVAE,
    SSVAE,
    VAE,
    ContractError,
    Family,
    HierarchicalVAE,
    build_model,
    data_plate,
    register_model,
)
from pyro_vae.runs.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pyro_vae.runs.folder import RunDir
from pyro_vae.training.finish import finish_run
from pyro_vae.training.callbacks import Callback, CallbackError, RunInfo
from pyro_vae.training.fit import TrainingDiverged, fit
from pyro_vae.version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())  # the library's messages are the application's to show

__all__ = [
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "Batch",
    "DataError",
    "Dataset",
    "load_data",
    "select_labels",
    "BernoulliLikelihood",
    "ContinuousBernoulliLikelihood",
    "GaussianLikelihood",
    "LaplaceLikelihood",
    "Likelihood",
    "register_likelihood",
    "VAE",
    "AE",
    "SSVAE",
    "CVAE",
    "Family",
    "ContractError",
    "build_model",
    "data_plate",
    "register_model",
    "MissingAbility",
    "ConvDecoder",
    "ConvEncoder",
    "MLPDecoder",
    "MLPEncoder",
    "Loss",
    "make_objective",
    "register_objective",
    "DiagonalGaussian",
    "MixtureOfGaussians",
    "StandardNormal",
    "register_prior",
    "RunDir",
    "finish_run",
    "TrainingDiverged",
    "fit",
    "evaluate",
    "gradient_variance",
    "m1_classify",
    "fit_code_mixture",
    "generate",
    "HierarchicalVAE",
    "IAFVAE",
    "GMVAE",
    "IWAE",
    "StickingTheLanding",
    "FreeBitsELBO",
    "FlowPrior",
    "VampPrior",
    "Callback",
    "CallbackError",
    "RunInfo",
    "__version__",
]

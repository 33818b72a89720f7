"""Data: tensors in memory (:mod:`~pyro_vae.data.batch`), the sources they are read from
(:mod:`~pyro_vae.data.sources`: files, image folders, torchvision, the offline MNIST),
data sets by name, path or ``module:function`` (:mod:`~pyro_vae.data.datasets`, with the
registry :func:`register_dataset`), streaming for data that do not fit
(:mod:`~pyro_vae.data.streaming`), and torch Datasets and DataLoaders read at the boundary
(:mod:`~pyro_vae.data.torch_data`, :mod:`~pyro_vae.data.items`, :mod:`~pyro_vae.data.loaders`).
Imports nothing of the library above it."""

from pyro_vae.data.batch import Batch, DataError, Dataset, Splits, select_labels
from pyro_vae.data.datasets import load_data, register_dataset
from pyro_vae.data.loaders import LoaderData
from pyro_vae.data.torch_data import from_torch, to_memory

__all__ = [
    "Batch",
    "DataError",
    "Dataset",
    "Splits",
    "load_data",
    "register_dataset",
    "select_labels",
    "from_torch",
    "to_memory",
    "LoaderData",
]

"""Data: tensors in memory (:mod:`~pyro_vae.data.batch`), the sources they are read from
(:mod:`~pyro_vae.data.sources`: files, image folders, torchvision, the offline MNIST),
splits by name (:mod:`~pyro_vae.data.datasets`) and streaming for data that do not fit
(:mod:`~pyro_vae.data.streaming`). Imports nothing of the library above it."""

from pyro_vae.data.batch import Batch, DataError, Dataset, Splits, select_labels
from pyro_vae.data.datasets import load_data

__all__ = ["Batch", "DataError", "Dataset", "Splits", "load_data", "select_labels"]

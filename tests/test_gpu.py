"""GPU paths (skipped without CUDA): training and evaluation on the device, checkpoints that
load back on the CPU."""

import pytest
import torch

from pyro_vae import Dataset, ModelConfig, TrainConfig, build_model, fit, load_checkpoint
from pyro_vae.evaluation import log_marginal

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_train_and_evaluate_on_cuda_then_load_on_cpu(mnist_bin, tmp_path):
    train, val = mnist_bin
    mc = ModelConfig(data_shape=(1, 28, 28), latent_dim=8, hidden=(64,))
    vae = build_model(mc)
    summary = fit(vae, Dataset(train), Dataset(val), TrainConfig(epochs=2, batch_size=100, lr=3e-3,
                  binarize="none", patience=None, device="auto"), tmp_path, mc, progress=False)
    assert summary["device"].startswith("cuda")
    assert next(vae.parameters()).is_cuda
    lp = log_marginal(vae.model, vae.guide, val[:50].cuda(), num_particles=64)
    assert lp.is_cuda and torch.isfinite(lp).all()
    cpu_vae, _ = load_checkpoint(tmp_path / "checkpoint_last.pt", "cpu")
    z = torch.randn(3, 8)
    assert torch.allclose(cpu_vae.decode(z), vae.decode(z.cuda()).cpu(), atol=1e-5)

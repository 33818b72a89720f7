"""GPU paths (skipped without CUDA): training and evaluation on the device, checkpoints that
load back on the CPU."""

import pytest
import torch

from pyro_vae import Dataset, ModelConfig, TrainConfig, build_model, fit, load_checkpoint
from pyro_vae.inference.marginal import log_marginal

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_train_and_evaluate_on_cuda_then_load_on_cpu(mnist_bin, tmp_path):
    train, val = mnist_bin
    mc = ModelConfig(data_shape=(1, 28, 28), latent_dim=8, hidden=(64,))
    vae = build_model(mc)
    summary = fit(
        vae,
        (Dataset(train), Dataset(val)),
        TrainConfig(epochs=2, batch_size=100, lr=3e-3, binarize="none", patience=None, device="auto"),
        tmp_path,
        model_config=mc,
        progress=False,
    )
    assert summary["device"].startswith("cuda")
    assert next(vae.parameters()).is_cuda
    lp = log_marginal(vae.model, vae.guide, val[:50].cuda(), num_particles=64)
    assert lp.is_cuda and torch.isfinite(lp).all()
    cpu_vae, _ = load_checkpoint(tmp_path / "checkpoint_last.pt", "cpu")
    z = torch.randn(3, 8)
    assert torch.allclose(cpu_vae.decode(z), vae.decode(z.cuda()).cpu(), atol=1e-5)


@pytest.mark.parametrize("member", ["hvae", "iaf", "gmvae", "vampprior", "iwae_dreg"])
def test_family_members_train_on_cuda(member, mnist_bin):
    train, val = mnist_bin
    opts = {
        "hvae": dict(model="hvae", latent_dims=(8, 4)),
        "iaf": dict(model="iaf"),
        "gmvae": dict(model="gmvae", clusters=4),
        "vampprior": dict(prior="vampprior", prior_kwargs={"components": 8}),
        "iwae_dreg": {},
    }[member]
    fam = build_model(ModelConfig(data_shape=(1, 28, 28), hidden=(32,), **opts))
    extra = {"objective": "iwae_dreg", "num_particles": 3} if member == "iwae_dreg" else {}
    fit(
        fam,
        (Dataset(train[:300]), Dataset(val[:100])),
        TrainConfig(epochs=1, batch_size=100, binarize="none", patience=None, device="cuda", **extra),
        progress=False,
    )
    assert next(fam.parameters()).is_cuda and fam.sample(2).is_cuda


def test_data_larger_than_the_gpu_budget_stay_on_the_host(mnist_bin, monkeypatch):
    from pyro_vae.training.prepare import prepare_data

    monkeypatch.setattr("pyro_vae.data.streaming.MEMORY_SHARE", 1e-12)
    train, val = mnist_bin
    vae = build_model(ModelConfig(data_shape=(1, 28, 28), latent_dim=4, hidden=(32,))).cuda()
    cfg = TrainConfig(epochs=1, batch_size=100, binarize="none", patience=None, device="cuda")
    data = prepare_data(vae, Dataset(train[:300]), Dataset(val[:100]), cfg, torch.device("cuda"))
    assert data.on_host and not data.train.x.is_cuda
    fit(vae, (Dataset(train[:300]), Dataset(val[:100])), cfg, progress=False)

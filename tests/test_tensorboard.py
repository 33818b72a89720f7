"""TensorBoard events: written each epoch, read back with TensorBoard's own reader; a run is the
same with or without them."""

import pytest
import torch

from pyro_vae import Batch, ModelConfig, TrainConfig, build_model, fit

pytest.importorskip("tensorboard")


def test_tensorboard_events_hold_the_expected_scalars_and_images(tmp_path, mnist_bin):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train, val = Batch(mnist_bin[0][:200]), Batch(mnist_bin[1][:100])
    mc = ModelConfig(data_shape=(1, 28, 28), latent_dim=2, hidden=(16,))
    cfg = TrainConfig(epochs=2, batch_size=50, patience=None, binarize="none")
    states = []
    for tb in (True, False):
        torch.manual_seed(0)
        vae = build_model(mc)
        fit(vae, (train, val), cfg, tmp_path / f"run{tb}", model_config=mc, tensorboard=tb, progress=False)
        states.append(vae.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # TensorBoard draws change nothing
    assert not (tmp_path / "runFalse" / "tensorboard").exists()
    acc = EventAccumulator(str(tmp_path / "runTrue" / "tensorboard"), size_guidance={"images": 0}).Reload()
    tags = acc.Tags()
    for tag in (
        "train_loss",
        "val_elbo",
        "train/kl_weight",
        "train/images_per_s",
        "val_terms/recon_log_lik",
        "val_terms/kl",
    ):
        assert tag in tags["scalars"], tags["scalars"]
        assert [e.step for e in acc.Scalars(tag)] == [1, 2]
    rows = [r for r in (tmp_path / "runTrue" / "metrics.jsonl").read_text().splitlines()]
    import json

    assert acc.Scalars("val_elbo")[1].value == pytest.approx(json.loads(rows[1])["val_elbo"], rel=1e-6)
    terms = acc.Scalars("val_terms/recon_log_lik")[1].value - acc.Scalars("val_terms/kl")[1].value
    assert terms == pytest.approx(json.loads(rows[1])["val_elbo"], abs=15)  # the ELBO's two terms, ~1 sample
    assert {"reconstructions", "samples"} <= set(tags["images"])

"""M1 (Kingma et al. 2014): a classifier on a trained VAE's latent means, from 100 real MNIST labels."""

import gzip
import json
import struct

import numpy as np
import pytest
import torch

from pyro_vae import VAE, Batch, DataError, ModelConfig, TrainConfig, build_model, fit
from pyro_vae.cli import main
from pyro_vae.data.batch import for_evaluation
from pyro_vae.analysis.m1 import latent_means, m1_classify

MC = ModelConfig(data_shape=(1, 28, 28), latent_dim=16, hidden=(200,))


@pytest.fixture(scope="module")
def trained(mnist5k):
    """A VAE trained 15 epochs on 1,500 real MNIST digits; 2,000 other digits held out for the test."""
    data = mnist5k.subset(torch.randperm(len(mnist5k), generator=torch.Generator().manual_seed(0)))
    train, val, test = data.subset(slice(0, 1500)), data.subset(slice(1500, 1800)), data.subset(slice(3000, 5000))
    torch.manual_seed(0)
    vae = build_model(MC)
    fit(vae, (train, val), TrainConfig(epochs=15, batch_size=100, lr=3e-3, patience=None, device="cpu"), progress=False)
    vae.eval()
    return vae, for_evaluation(train, "dynamic"), for_evaluation(test, "dynamic")


def test_m1_with_100_labels_is_far_above_chance_and_deterministic(trained):
    vae, train, test = trained
    r = m1_classify(vae, train, test, labels=100, seed=0)
    # measured 0.76-0.80 over label seeds 0-4 (seed 0: 0.769); chance is 0.10
    assert r["accuracy"] > 0.65, r
    assert r["labels"] == 100 and r["seed"] == 0 and r["num_test"] == 2000 and r["num_train"] == 1500
    assert r["latent_dim"] == 16 and r["num_classes"] == 10 and r["labels_used"] == 100
    assert r["train_accuracy"] > 0.9 and r["unlabelled_accuracy"] > 0.65
    again = m1_classify(vae, train, test, labels=100, seed=0)
    assert {k: v for k, v in again.items() if k != "time_s"} == {k: v for k, v in r.items() if k != "time_s"}
    other = m1_classify(vae, train, test, labels=100, seed=1, epochs=50)
    assert other["seed"] == 1 and other["accuracy"] > 0.65 and other["epochs"] == 50


def test_m1_with_a_labelled_validation_subset(trained):
    vae, train, test = trained
    r = m1_classify(vae, train, test, labels=100, seed=0, epochs=60, val_labels=50)
    assert r["labels_used"] == 150 and r["val_labels"] == 50 and 1 <= r["best_epoch"] <= 60
    assert r["accuracy"] > 0.6 and "best accuracy" in r["selection"]


def test_latent_means_are_the_encoder_means_and_the_guide_gives_the_same(trained):
    vae, train, _ = trained
    sub = train.subset(slice(0, 30))
    codes = latent_means(vae, sub, batch_size=7)
    assert codes.shape == (30, 16)
    assert torch.allclose(codes, vae.encode(sub.x)[0], atol=1e-5)  # chunks of 7: float rounding

    class NoEncode(VAE):
        encode = None  # forces the trace of the guide

    plain = NoEncode(vae.encoder, vae.decoder, vae.prior, vae.likelihood, vae.data_shape, vae.latent_dim)
    assert torch.allclose(latent_means(plain, sub, batch_size=7), codes, atol=1e-5)


def test_clear_errors(trained):
    vae, train, test = trained
    with pytest.raises(DataError, match="no labels"):
        m1_classify(vae, Batch(train.x), test)
    with pytest.raises(DataError, match="no labels"):
        m1_classify(vae, train, Batch(test.x))
    with pytest.raises(DataError, match="multiple of the 10 classes"):
        m1_classify(vae, train, test, labels=7)
    with pytest.raises(DataError, match="only"):
        m1_classify(vae, train.subset(slice(0, 200)), test, labels=1000)
    cvae = build_model(
        ModelConfig(model="cvae", data_shape=(1, 28, 28), num_classes=10, latent_dim=4, hidden=(16,), condition="class")
    )
    with pytest.raises(ValueError, match="cannot compute latent means"):
        m1_classify(cvae, train.subset(slice(0, 200)), test.subset(slice(0, 50)), labels=10)


def _idx_test_folder(path, x, y):
    """The official MNIST test files' format (IDX, gzip), here holding the digits given."""
    path.mkdir()
    imgs = (x.reshape(-1, 28, 28) * 255).round().to(torch.uint8).numpy()
    for name, arr in (("t10k-images-idx3-ubyte.gz", imgs), ("t10k-labels-idx1-ubyte.gz", y.numpy())):
        arr = np.asarray(arr, dtype=np.uint8)
        with gzip.open(path / name, "wb") as f:
            f.write(bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape) + arr.tobytes())
    return path


def test_classify_command(tmp_path, capsys, mnist5k):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--epochs",
                "1",
                "--latent-dim",
                "8",
                "--hidden",
                "64",
                "--batch-size",
                "256",
                "--eval-k",
                "0",
                "--no-plots",
                "--no-progress",
                "--val-fraction",
                "0.5",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    capsys.readouterr()
    # no test files: measured on the validation split, said on stderr and in the file name
    assert main(["classify", str(run), "--labels", "100", "--epochs", "30", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "accuracy" in out and "labels" in out and "seed" in out and "validation split" in err
    result = json.loads((run / "m1_labels100_seed0_val_e30.json").read_text())
    assert result["data"] == "mnist5k/val" and result["labels"] == 100 and result["epochs"] == 30
    assert result["num_test"] == 2500 and result["accuracy"] > 0.3

    some = torch.randperm(len(mnist5k), generator=torch.Generator().manual_seed(1))[:300]  # every class
    data_dir = _idx_test_folder(tmp_path / "mnist", mnist5k.x[some], mnist5k.y[some])
    assert (
        main(
            [
                "classify",
                str(run / "checkpoint_best.pt"),
                "--labels",
                "100",
                "--seed",
                "2",
                "--epochs",
                "30",
                "--data-dir",
                str(data_dir),
                "--no-progress",
            ]
        )
        == 0
    )
    result = json.loads((run / "m1_labels100_seed2_e30.json").read_text())
    assert result["data"] == "mnist5k/test" and result["num_test"] == 300 and result["seed"] == 2

    assert main(["classify", str(run), "--labels", "7", "--no-progress"]) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("pyro-vae classify: error:") and "multiple of the 10 classes" in lines[-1]
    assert len([line for line in lines if "error" in line]) == 1
    assert main(["classify", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err

"""Data larger than memory: a .npy file memory-mapped, or a folder of images opened batch by
batch, trains to the same parameters as the same data loaded into memory (same seed), with or
without worker processes; bad rows are named when their batch is read."""

import numpy as np
import pytest
import torch

from pyro_vae import ModelConfig, TrainConfig, build_model, fit
from pyro_vae.cli import main
from pyro_vae.data.batch import DataError
from pyro_vae.data.datasets import load_data
from pyro_vae.data.streaming import StreamedData, memory_budget


def _images(n=260, seed=0):
    g = np.random.default_rng(seed)
    return (g.random((n, 8, 8)) * 255).astype(np.uint8)


def _train(splits, labels=None, **cfg):
    torch.manual_seed(0)
    model = dict(model="ssvae", num_classes=3) if labels else dict(model="vae")  # labels: a partly labelled family
    fam = build_model(ModelConfig(data_shape=(1, 8, 8), latent_dim=3, hidden=(16,), **model))
    fit(
        fam,
        splits,
        TrainConfig(epochs=2, batch_size=32, patience=None, device="cpu", labels=labels, **cfg),
        progress=False,
    )
    return {k: v.clone() for k, v in fam.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_memory_mapped_npy_file_trains_to_the_same_parameters_as_in_memory(tmp_path, workers):
    path = tmp_path / "x.npy"
    np.save(path, _images())
    memory = load_data(str(path))
    streamed = load_data(str(path), stream="on", workers=workers)
    assert isinstance(streamed.train, StreamedData) and not isinstance(memory.train, StreamedData)
    assert len(streamed.train) == len(memory.train) and torch.equal(streamed.val.x, memory.val.x)
    assert torch.equal(streamed.train.to_batch().x, memory.train.x)  # the same split, rows and scaling
    a, b = _train(memory), _train(streamed)
    assert _same(a, b)
    assert not _same(a, _train(memory, seed=1))  # (the comparison can fail)


def test_an_image_folder_streams_with_its_labels(tmp_path):
    from PIL import Image

    imgs = _images(90)
    for i, img in enumerate(imgs):
        folder = tmp_path / "digits" / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    memory = load_data(str(tmp_path / "digits"))
    streamed = load_data(str(tmp_path / "digits"), stream="on", workers=1)
    assert torch.equal(streamed.train.y, memory.train.y) and streamed.train.data_shape == (1, 8, 8)
    assert _same(_train(memory, labels=30), _train(streamed, labels=30))


def test_auto_streams_only_what_does_not_fit(tmp_path, monkeypatch):
    path = tmp_path / "x.npy"
    np.save(path, _images(50))
    assert not isinstance(load_data(str(path), stream="auto").train, StreamedData)
    monkeypatch.setattr("pyro_vae.devices.MEMORY_SHARE", 1e-12)  # a machine with no room for it
    assert memory_budget() < 50 * 64 * 4
    assert isinstance(load_data(str(path), stream="auto").train, StreamedData)


def test_streamed_data_errors_are_named(tmp_path):
    bad = _images(100).astype(np.float32) / 255
    bad[70, 3, 3] = np.nan
    path = tmp_path / "bad.npy"
    np.save(path, bad)
    splits = load_data(str(path), stream="on", seed=0)
    with pytest.raises(DataError, match=r"bad.npy \(rows .*NaN"):
        _train(splits)
    with pytest.raises(DataError, match="static"):
        _train(load_data(str(path), stream="on"), binarize="static")
    np.savez(tmp_path / "x.npz", x=_images(10))
    with pytest.raises(DataError, match=r"\.npy file or a folder"):
        load_data(str(tmp_path / "x.npz"), stream="on")
    with pytest.raises(DataError, match="stream"):
        load_data(str(path), stream="maybe")
    with pytest.raises(DataError, match="read batch by batch"):
        splits.train.x


def test_the_cli_streams_and_records_it(tmp_path):
    import json

    path = tmp_path / "x.npy"
    np.save(path, _images(200))
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(path),
                "--stream",
                "on",
                "--workers",
                "1",
                "--epochs",
                "1",
                "--latent-dim",
                "2",
                "--hidden",
                "8",
                "--eval-k",
                "2",
                "--no-plots",
                "--out",
                str(run),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["streamed"] is True and data["workers"] == 1
    assert main(["evaluate", str(run), "--k", "2"]) == 0

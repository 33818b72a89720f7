"""Data loading: the offline MNIST subset, IDX files, user arrays and folders, clear errors."""

import gzip
import struct

import numpy as np
import pytest
import torch

from pyro_vae.data.batch import DataError, batches, binarize

from pyro_vae.data.sources import load_mnist_test_files, load_torchvision, read_idx
from pyro_vae.data.datasets import load_data


def test_mnist5k_is_real_mnist(mnist5k):
    assert mnist5k.x.shape == (5000, 1, 28, 28)
    assert mnist5k.x.min() == 0 and mnist5k.x.max() == 1
    assert torch.bincount(mnist5k.y).tolist() == [500] * 10
    # real digits: about 19% of MNIST pixels are non-zero, and the border is empty
    assert 0.15 < (mnist5k.x > 0).float().mean() < 0.25
    assert mnist5k.x[:, :, 0, :].max() == 0


def test_mnist5k_split_is_seeded_and_disjoint():
    a = load_data("mnist5k", val_fraction=0.1, seed=3)
    b = load_data("mnist5k", val_fraction=0.1, seed=3)
    assert len(a.train) == 4500 and len(a.val) == 500 and a.test is None
    assert torch.equal(a.val.x, b.val.x)
    flat_t = {tuple(r) for r in a.train.x.flatten(1)[:, ::7].tolist()}
    assert sum(tuple(r) in flat_t for r in a.val.x.flatten(1)[:, ::7].tolist()) <= 2  # (duplicates in MNIST are rare)


def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


def test_idx_reader_and_mnist_test_folder(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", [3, 1, 4, 1, 5])
    assert np.array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), imgs)
    ds = load_mnist_test_files(tmp_path)
    assert ds.x.shape == (5, 1, 28, 28) and ds.y.tolist() == [3, 1, 4, 1, 5]
    assert torch.allclose(ds.x[2, 0], torch.tensor(imgs[2] / 255.0, dtype=torch.float32))
    splits = load_data("mnist5k", tmp_path)
    assert splits.test is not None and len(splits.test) == 5


def test_bad_idx_and_missing_test_folder(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04garbage")
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "t10k-images-idx3-ubyte")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_data("mnist5k", tmp_path / "nowhere")


def test_torchvision_offline_error_names_the_folder(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "FashionMNIST" / "raw")):
        load_torchvision("fashion-mnist", tmp_path, train=True, download=False)


def test_user_arrays(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(40, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "a.npy", x)
    s = load_data(str(tmp_path / "a.npy"), val_fraction=0.25)
    assert s.train.x.shape == (30, 1, 8, 8) and s.train.x.max() <= 1
    np.savez(tmp_path / "b.npz", x=np.random.rand(20, 5).astype(np.float32), y=np.arange(20))
    s = load_data(str(tmp_path / "b.npz"), val_fraction=0.5)
    assert s.train.x.shape == (10, 5) and s.train.y is not None
    torch.save({"x": torch.rand(12, 3, 4, 4)}, tmp_path / "c.pt")
    assert load_data(str(tmp_path / "c.pt"), val_fraction=0.5).val.x.shape == (6, 3, 4, 4)
    bad = np.random.rand(10, 4)
    bad[2, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match="NaN"):
        load_data(str(tmp_path / "nan.npy"))
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(DataError, match="unsupported file type"):
        load_data(str(tmp_path / "x.csv"))
    with pytest.raises(DataError, match="unknown data set"):
        load_data(str(tmp_path / "missing.npy"))


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (tmp_path / label).mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    s = load_data(str(tmp_path), val_fraction=0.25)
    assert s.train.x.shape == (6, 1, 6, 5)
    assert sorted(torch.cat([s.train.y, s.val.y]).tolist()) == [0] * 4 + [1] * 4
    Image.fromarray(rng.integers(0, 256, (7, 5), dtype=np.uint8)).save(tmp_path / "dogs" / "odd.png")
    with pytest.raises(DataError, match="differ in size"):
        load_data(str(tmp_path))


def test_binarize_static_is_seeded_and_checks_range():
    x = torch.rand(100, 10)
    assert torch.equal(binarize(x, seed=1), binarize(x, seed=1))
    assert not torch.equal(binarize(x, seed=1), binarize(x, seed=2))
    big = torch.full((2000, 3), 0.3)
    assert abs(binarize(big, seed=0).mean().item() - 0.3) < 0.03
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        binarize(x * 255)


def test_batches_cover_every_index_once():
    seen = torch.cat(list(batches(103, 10, shuffle=True)))
    assert sorted(seen.tolist()) == list(range(103))


def test_npz_keeps_labels_and_conditions_and_names_bad_ones(tmp_path):
    import numpy as np

    from pyro_vae.data.batch import DataError
    from pyro_vae.data.datasets import load_data

    x = (np.random.default_rng(0).random((30, 4, 4)) * 255).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(30) % 3, c=np.ones((30, 2)))
    s = load_data(str(tmp_path / "d.npz"), val_fraction=0.2)
    assert s.train.y is not None and s.train.c.shape == (24, 2) and len(s.val.y) == 6
    np.savez(tmp_path / "f.npz", x=x, y=np.full(30, 0.5))
    with pytest.raises(DataError, match="whole numbers"):
        load_data(str(tmp_path / "f.npz"))
    np.savez(tmp_path / "n.npz", x=x, y=np.arange(30) - 1)
    with pytest.raises(DataError, match="class indices"):
        load_data(str(tmp_path / "n.npz"))
    np.savez(tmp_path / "c.npz", x=x, c=np.ones((29, 2)))
    with pytest.raises(DataError, match="29 conditions"):
        load_data(str(tmp_path / "c.npz"))


def test_label_subset_is_per_class_and_seeded(mnist5k):
    from pyro_vae.data.batch import select_labels

    a = select_labels(mnist5k, 100, seed=3)
    b = select_labels(mnist5k, 100, seed=3)
    c = select_labels(mnist5k, 100, seed=4)
    assert a.num_labelled == 100 and torch.equal(a.labelled, b.labelled) and not torch.equal(a.labelled, c.labelled)
    assert torch.bincount(a.y[a.labelled], minlength=10).tolist() == [10] * 10
    assert torch.equal(a.subset(slice(0, 7)).labelled, a.labelled[:7])  # sliced with x


def test_mixed_batches_add_labelled_points_to_every_batch():
    from pyro_vae.data.batch import mixed_batches

    labelled = torch.tensor([3, 7, 11])
    out = list(mixed_batches(20, 8, labelled, 2, torch.Generator().manual_seed(0)))
    assert [len(b) for b in out] == [10, 10, 6]
    assert sorted(torch.cat([b[:-2] for b in out]).tolist()) == list(range(20))  # every point once
    extra = torch.cat([b[-2:] for b in out])
    assert set(extra.tolist()) <= {3, 7, 11} and len(set(extra[:3].tolist())) == 3  # cycles the labelled set


def test_shift_images_moves_each_image_within_its_bound(mnist5k):
    from pyro_vae.data.batch import shift_images

    x = torch.zeros(200, 1, 7, 7)
    x[:, 0, 3, 3] = 1.0  # one lit pixel in the centre of every image
    out = shift_images(x, 2, torch.Generator().manual_seed(0))
    where = out[:, 0].flatten(1).argmax(1)
    dr, dc = where // 7 - 3, where % 7 - 3
    assert out.sum() == 200 and dr.abs().max() == 2 and dc.abs().max() == 2  # moved, never lost
    assert len(set(zip(dr.tolist(), dc.tolist()))) == 25  # every offset in [-2, 2]^2 occurs
    digits = mnist5k.x[:64]
    moved = shift_images(digits, 3, torch.Generator().manual_seed(1))
    assert moved.shape == digits.shape and not torch.equal(moved, digits)
    assert torch.allclose(moved.sum((1, 2, 3)), digits.sum((1, 2, 3)))  # MNIST's 4-pixel border: nothing cut
    assert shift_images(digits, 0) is digits
    with pytest.raises(DataError, match="shape"):
        shift_images(torch.zeros(4, 10), 1)


def test_training_with_augment_shift(mnist5k, tmp_path):
    from pyro_vae import Dataset, ModelConfig, TrainConfig, build_model, fit

    train, val = Dataset(mnist5k.x[:300], mnist5k.y[:300]), Dataset(mnist5k.x[300:400])
    mc = ModelConfig(data_shape=(1, 28, 28), latent_dim=4, hidden=(32,))
    cfg = TrainConfig(epochs=2, batch_size=100, patience=None, device="cpu", augment_shift=2)
    summary = fit(build_model(mc), (train, val), cfg, progress=False)
    assert summary["epochs_run"] == 2
    with pytest.raises(ValueError, match="augment_shift must be an integer >= 0"):
        TrainConfig(augment_shift=-1).check()
    flat = Dataset(mnist5k.x[:300].reshape(300, -1))
    with pytest.raises(DataError, match="augment_shift=2 moves images"):
        fit(build_model(ModelConfig(data_shape=(784,), latent_dim=4, hidden=(32,))), (flat, flat), cfg, progress=False)

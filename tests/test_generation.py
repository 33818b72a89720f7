import math
import os
import time

import pytest
import torch

from pyro_vae.data.batch import Batch
from pyro_vae.analysis.generation import (
    FeatureClassifier,
    class_spread,
    frechet_distance,
    gaussian_frechet,
    generation_scores,
    inception_score,
    load_or_train_classifier,
    train_feature_classifier,
)


def rotation(d, seed=0):
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


# ---------------------------------------------------------------------- Fréchet distance
def test_frechet_of_identical_feature_sets_is_zero():
    f = torch.randn(300, 128, dtype=torch.float64) * torch.linspace(0.01, 10, 128)
    f[:, :20] = 0  # dead units: a rank-deficient covariance
    d = frechet_distance(f, f.clone())
    assert 0 <= d < 1e-6
    assert frechet_distance(f[:50], f[:50]) < 1e-6  # fewer points than dimensions


def test_gaussian_frechet_closed_forms():
    mu_a, mu_b = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.5])
    s_a, s_b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = (mu_a - mu_b).pow(2).sum() + (s_a + s_b - 2 * (s_a * s_b).sqrt()).sum()  # 7.25 + 4 + 1 + 0
    assert gaussian_frechet(mu_a, torch.diag(s_a), mu_b, torch.diag(s_b)) == pytest.approx(float(expected), abs=1e-9)

    # commuting, non-diagonal covariances: the same sum in a rotated basis
    q = rotation(3)
    cov_a, cov_b = q @ torch.diag(s_a.double()) @ q.T, q @ torch.diag(s_b.double()) @ q.T
    assert gaussian_frechet(mu_a, cov_a, mu_b, cov_b) == pytest.approx(float(expected), abs=1e-9)

    # any two 2x2 covariances: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)), M = A^1/2 B A^1/2
    a = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    b = torch.tensor([[0.5, -0.3], [-0.3, 3.0]], dtype=torch.float64)
    cross = math.sqrt(float(torch.trace(a @ b)) + 2 * math.sqrt(float(torch.det(a) * torch.det(b))))
    expected = float(torch.trace(a) + torch.trace(b)) - 2 * cross
    assert gaussian_frechet(torch.zeros(2), a, torch.zeros(2), b) == pytest.approx(expected, abs=1e-9)


def test_frechet_of_large_samples_is_close_to_closed_form():
    g = torch.Generator().manual_seed(1)
    q = rotation(4, seed=2)
    cov_a = q @ torch.diag(torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)) @ q.T
    cov_b = torch.diag(torch.tensor([2.0, 1.0, 1.0, 0.5], dtype=torch.float64))
    mu_a, mu_b = torch.zeros(4, dtype=torch.float64), torch.tensor([1.0, 0.0, -1.0, 0.5], dtype=torch.float64)
    n = 50_000
    xa = mu_a + torch.randn(n, 4, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov_a).T
    xb = mu_b + torch.randn(n, 4, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov_b).T
    exact = gaussian_frechet(mu_a, cov_a, mu_b, cov_b)
    assert exact > 1
    assert frechet_distance(xa, xb) == pytest.approx(exact, rel=0.03)


def test_frechet_refuses_nan_and_mismatched_features():
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(torch.full((5, 3), float("nan")), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="one D"):
        frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4))


# ---------------------------------------------------------------------- Inception score, class spread
def test_inception_score_extremes():
    assert inception_score(torch.full((100, 10), 0.1)) == pytest.approx((1.0, 0.0), abs=1e-9)
    onehot = torch.eye(10)[torch.arange(200) % 10]  # each of the 10 splits holds every class twice
    mean, std = inception_score(onehot, splits=10)
    assert mean == pytest.approx(10.0, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    assert inception_score(torch.eye(4)[torch.zeros(40, dtype=torch.long)], splits=1)[0] == pytest.approx(1.0)


def test_class_spread_of_known_histogram():
    # 10 points over C = 4 classes: counts 5, 3, 1, 1 (0.5, 0.3, 0.1, 0.1)
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] + [3])
    s = class_spread(torch.eye(4)[labels])
    assert s["fractions"] == pytest.approx([0.5, 0.3, 0.1, 0.1])
    h = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 2 * 0.1 * math.log(0.1))
    assert s["entropy"] == pytest.approx(h)
    assert s["entropy_normalised"] == pytest.approx(h / math.log(4))
    assert s["modes_covered"] == 2  # fair share 1/4, half of it 1/8 = 0.125 > 0.1
    assert (s["min_fraction"], s["max_fraction"]) == pytest.approx((0.1, 0.5))
    wider = class_spread(torch.eye(4)[labels], num_classes=5)
    assert wider["num_classes"] == 5 and wider["fractions"][-1] == 0 and wider["modes_covered"] == 4  # 1/10


# ---------------------------------------------------------------------- the classifier on real digits
@pytest.fixture(scope="module")
def digits(mnist5k):
    """mnist5k is sorted by class: a seeded shuffle, then 1,000 training and 1,000 held-out images."""
    perm = torch.randperm(len(mnist5k), generator=torch.Generator().manual_seed(0))
    return mnist5k.subset(perm[:1000]), mnist5k.subset(perm[1000:2000])


@pytest.fixture(scope="module")
def trained(digits):
    # 1,000 images at the default batch size give too few steps; small batches learn in 3 epochs
    return train_feature_classifier(digits[0], epochs=3, batch_size=32, seed=0)


def test_classifier_learns_real_digits(trained, digits):
    clf, info = trained
    assert isinstance(clf, FeatureClassifier) and not clf.training
    assert info["num_train"] == 900 and info["num_val"] == 100 and info["cached"] is False
    assert info["val_accuracy"] > 0.8
    held_out = digits[1]
    with torch.no_grad():
        acc = (clf(held_out.x).argmax(-1) == held_out.y).float().mean().item()
        assert clf.features(held_out.x[:7]).shape == (7, 128)
    assert acc > 0.8


def test_training_is_deterministic(digits):
    small = digits[0].subset(slice(0, 200))
    a, info_a = train_feature_classifier(small, epochs=1, seed=3)
    b, info_b = train_feature_classifier(small, epochs=1, seed=3)
    c, _ = train_feature_classifier(small, epochs=1, seed=4)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert info_a["val_accuracy"] == info_b["val_accuracy"]
    assert not torch.equal(a.head.weight, c.head.weight)


def test_generation_scores_tell_digits_from_noise(trained, digits):
    clf, _ = trained
    real = digits[1].x
    ref, test = real[:500], real[500:]
    good = generation_scores(test, ref, clf)
    noise = generation_scores(torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(0)), ref, clf)
    assert good["frechet_distance"]["value"] * 10 < noise["frechet_distance"]["value"]
    assert "not comparable" in good["frechet_distance"]["note"]
    assert good["modes_covered"]["value"] == 10 and good["modes_covered"]["unit"] == "of 10"
    assert good["class_entropy"]["value"] > noise["class_entropy"]["value"]
    assert good["inception_score"]["value"] > 5 > noise["inception_score"]["value"]
    assert good["inception_score_reference"]["value"] > 5
    assert len(good["class_fractions"]["value"]) == 10
    assert sum(good["class_fractions"]["value"]) == pytest.approx(1.0)
    assert good["num_generated"]["value"] == 500 and good["num_reference"]["value"] == 500
    # identical sets: distance 0
    assert generation_scores(ref, ref, clf, batch_size=128)["frechet_distance"]["value"] < 1e-6


def test_generation_scores_refuse_wrong_shapes(trained, digits):
    clf, _ = trained
    ref = digits[1].x[:50]
    with pytest.raises(ValueError, match="both sets"):
        generation_scores(torch.rand(50, 784), ref, clf)
    with pytest.raises(ValueError, match="trained on"):
        generation_scores(torch.rand(50, 1, 14, 14), torch.rand(50, 1, 14, 14), clf)


def test_flat_vectors_get_an_mlp():
    clf = FeatureClassifier((20,), 3)
    assert clf.architecture == "mlp" and clf(torch.rand(4, 20)).shape == (4, 3)
    assert clf.features(torch.rand(4, 20)).shape == (4, 128)
    assert FeatureClassifier((1, 28, 28), 10).architecture == "conv"
    assert FeatureClassifier((3, 4, 4), 10).architecture == "mlp"


# ---------------------------------------------------------------------- cache and errors
def test_cache_loads_retrains_on_new_data_and_survives_corruption(tmp_path, digits):
    data = digits[0].subset(slice(0, 300))
    path = tmp_path / "sub" / "classifier.pt"
    clf1, info1 = load_or_train_classifier(path, data, epochs=1)
    assert path.is_file() and info1["cached"] is False and info1["cache"] == "missing"
    start = time.perf_counter()
    clf2, info2 = load_or_train_classifier(path, data, epochs=1)
    assert info2["cached"] is True and info2["cache"] == "hit"
    assert time.perf_counter() - start < info1["seconds"] + 1
    assert info2["val_accuracy"] == info1["val_accuracy"]
    assert all(torch.equal(clf1.state_dict()[k], clf2.state_dict()[k]) for k in clf1.state_dict())

    changed = data.replace(x=data.x.clone())
    changed.x[0, 0, 0, 0] += 0.5
    _, info3 = load_or_train_classifier(path, changed, epochs=1)
    assert info3["cached"] is False and info3["cache"] == "stale"
    assert load_or_train_classifier(path, changed, epochs=1)[1]["cached"] is True
    assert load_or_train_classifier(path, changed, epochs=1, seed=1)[1]["cache"] == "stale"
    assert load_or_train_classifier(path, changed, epochs=2, seed=1)[1]["cache"] == "stale"

    path.write_bytes(path.read_bytes()[:100])  # truncated
    _, info4 = load_or_train_classifier(path, changed, epochs=1)
    assert info4["cached"] is False and info4["cache"] == "unreadable"
    assert load_or_train_classifier(path, changed, epochs=1)[1]["cached"] is True
    assert sorted(os.listdir(path.parent)) == ["classifier.pt"]  # no temp files left behind


def test_data_without_labels_is_refused(tmp_path):
    x = torch.rand(20, 1, 28, 28)
    with pytest.raises(ValueError, match="labelled data set.*has no labels"):
        train_feature_classifier(Batch(x))
    with pytest.raises(ValueError, match="my-images has no labels"):
        load_or_train_classifier(tmp_path / "c.pt", Batch(x), name="my-images")
    assert not (tmp_path / "c.pt").exists()
    hidden = Batch(x, torch.zeros(20, dtype=torch.long), labelled=torch.zeros(20, dtype=torch.bool))
    with pytest.raises(ValueError, match="none of them is marked labelled"):
        train_feature_classifier(hidden)

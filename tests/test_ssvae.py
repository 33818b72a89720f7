"""The semi-supervised M2 family: its enumerated loss is the explicit sum over classes, labelled
and unlabelled batches both train it, its classifier learns from a few real labels, and it
runs through fit, evaluation and its own figures."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from torch.nn import functional as F

from pyro_vae import Batch, Loss, ModelConfig, TrainConfig, build_model, fit, load_checkpoint
from pyro_vae.analysis.evaluate import evaluate
from pyro_vae.inference.marginal import log_marginal
from pyro_vae.models.ssvae import one_hot

C = 3


def tiny(aux_weight=0.0):
    torch.manual_seed(0)
    return build_model(
        ModelConfig(model="ssvae", data_shape=(6,), num_classes=C, latent_dim=2, hidden=(8,), aux_weight=aux_weight)
    )


def _log_terms(m, x, y, z):
    """log p(y) + log p(z) + log p(x|y,z) - log q(z|x,y), by hand, for one class per point."""
    y1h = one_hot(y, C)
    log_py = -math.log(C)
    log_pz = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_px = dist.Bernoulli(logits=m.decoder(torch.cat([z, y1h], -1))).log_prob(x).sum(-1)
    loc, scale = m.encoder(torch.cat([x, y1h], -1))
    log_qz = dist.Normal(loc, scale).log_prob(z).sum(-1)
    return log_py + log_pz + log_px - log_qz


def _enum_loss_and_z(m, batch):
    """TraceEnum_ELBO's loss on ``batch``, and the z it drew for every (class, point)."""
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    args = m.args(batch)
    pyro.set_rng_seed(7)
    loss = elbo.differentiable_loss(m.model, m.guide, *args)
    pyro.set_rng_seed(7)
    guide = poutine.enum(m.guide, first_available_dim=-2)
    tr = poutine.trace(guide).get_trace(*args)
    return loss, tr.nodes["z"]["value"]


def test_enumerated_loss_equals_the_explicit_sum_over_classes():
    m = tiny()
    x = torch.bernoulli(torch.full((5, 6), 0.4))
    batch = Batch(x, torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.bool))  # none labelled
    loss, z = _enum_loss_and_z(m, batch)
    assert z.shape == (C, 5, 2)  # one z per enumerated class and point
    q = F.softmax(m.classifier(x), -1)  # (5, C)
    elbo = 0.0
    for c in range(C):  # sum_y q(y|x) [log p(x, y, z_y) - log q(z_y|x, y) - log q(y|x)]
        yc = torch.full((5,), c)
        elbo = elbo + (q[:, c] * (_log_terms(m, x, yc, z[c]) - q[:, c].log())).sum()
    assert loss.item() == pytest.approx(-elbo.item(), rel=1e-5, abs=1e-4)


def test_labelled_points_weigh_only_their_class():
    m = tiny()
    x = torch.bernoulli(torch.full((4, 6), 0.6))
    y = torch.tensor([0, 2, 1, 2])
    batch = Batch(x, y, torch.ones(4, dtype=torch.bool))
    loss, z = _enum_loss_and_z(m, batch)
    # the guide's point mass picks z[y_n] for point n; no entropy of q(y|x) is added
    z_true = z[y, torch.arange(4)]
    assert loss.item() == pytest.approx(-_log_terms(m, x, y, z_true).sum().item(), rel=1e-5, abs=1e-4)


def test_labelled_and_unlabelled_batches_both_train(mnist_bin, mnist5k):
    x = mnist_bin[0][:600]
    y = mnist5k.y[:600]
    torch.manual_seed(0)
    m = build_model(ModelConfig(model="ssvae", data_shape=(1, 28, 28), num_classes=10, latent_dim=8, hidden=(64,)))
    loss_fn = Loss(m, TraceEnum_ELBO(max_plate_nesting=1))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    labelled = Batch(x[:100], y[:100], torch.ones(100, dtype=torch.bool))
    unlabelled = Batch(x[100:], y[100:], torch.zeros(500, dtype=torch.bool))
    before = [loss_fn(b, 1.0).item() / len(b) for b in (labelled, unlabelled)]
    for step in range(40):
        for b in (labelled, unlabelled):
            idx = torch.randint(0, len(b), (50,))
            loss = loss_fn(b.subset(idx), 1.0) / 50
            opt.zero_grad()
            loss.backward()
            assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
            if b is unlabelled:  # y is summed out: the classifier gets its gradient through the weights
                assert m.classifier.net.head.loc.weight.grad.abs().sum() > 0
            opt.step()
    after = [loss_fn(b, 1.0).item() / len(b) for b in (labelled, unlabelled)]
    assert after[0] < before[0] - 100 and after[1] < before[1] - 100, (before, after)


def test_classifier_learns_from_100_real_labels(mnist5k, tmp_path):
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(5000, generator=g)
    train, val = mnist5k.subset(perm[:2000]), mnist5k.subset(perm[2000:2500])
    mc = ModelConfig(model="ssvae", data_shape=(1, 28, 28), num_classes=10, latent_dim=16, hidden=(128,))
    torch.manual_seed(0)
    m = build_model(mc)
    summary = fit(
        m,
        (train, val),
        TrainConfig(epochs=8, batch_size=100, lr=1e-3, labels=100, patience=None, device="cpu"),
        tmp_path,
        model_config=mc,
        progress=False,
    )
    best, _ = load_checkpoint(tmp_path / "checkpoint_best.pt")
    acc = best.metrics(Batch(torch.bernoulli(val.x, generator=g), val.y))["accuracy"]
    assert summary["select_by"] == "val_accuracy"
    assert acc > 0.45, acc  # chance is 0.1; trained on 100 labels and 1,900 unlabelled digits


def test_evaluation_sums_the_label_out_and_reports_accuracy(mnist_bin, mnist5k):
    m = build_model(ModelConfig(model="ssvae", data_shape=(1, 28, 28), num_classes=10, latent_dim=4, hidden=(32,)))
    data = Batch(mnist_bin[1][:40], mnist5k.y[1000:1040])
    torch.manual_seed(0)
    out = evaluate(m, data, k=20, iwae_k=0)
    assert 0 <= out["accuracy"]["value"] <= 1
    assert out["elbo"]["value"] < out["log_px"]["value"] < 0
    assert "y_unobserved" in out["kl"]["note"]
    # log p(x) = log sum_y p(x, y): the same with the labels hidden by hand
    args = m.args(data.unlabelled())
    torch.manual_seed(1)
    a = log_marginal(m.model, m.guide, *args, num_particles=200)
    torch.manual_seed(1)
    b = log_marginal(m.model, m.guide, *args, num_particles=200, batch_size=7)
    assert (a.mean() - b.mean()).abs() < 0.3  # same estimator, other Monte Carlo draws
    # exact in y: with one z particle the weight is a sum over all C classes, not a sampled one
    lw = __import__("pyro_vae.inference.marginal", fromlist=["log_weights"]).log_weights(
        m.model, m.guide, *args, num_particles=3
    )
    assert lw.shape == (3, 40)


def test_figures_of_the_family(mnist_bin, mnist5k, tmp_path):
    from pyro_vae.figures.plots import make_figures

    m = build_model(ModelConfig(model="ssvae", data_shape=(1, 28, 28), num_classes=10, latent_dim=4, hidden=(32,)))
    figs = make_figures(m, tmp_path, Batch(mnist_bin[1][:50], mnist5k.y[1000:1050]))
    assert {"confusion", "analogies", "samples", "reconstructions", "latent_space"} <= set(figs)
    for p in figs.values():
        assert p.stat().st_size > 1000


def test_bad_labels_are_named(mnist5k):
    m = build_model(ModelConfig(model="ssvae", data_shape=(1, 28, 28), num_classes=10, latent_dim=4, hidden=(16,)))
    x = torch.bernoulli(mnist5k.x[:300])
    cfg = TrainConfig(epochs=1, batch_size=100, patience=None, device="cpu", binarize="none")
    with pytest.raises(ValueError, match=r"lie in \[0, 9\]"):
        fit(m, (Batch(x[:200], mnist5k.y[:200] + 10), Batch(x[200:], mnist5k.y[200:300])), cfg, progress=False)
    with pytest.raises(ValueError, match="needs labelled data"):
        fit(m, (Batch(x[:200]), Batch(x[200:])), cfg, progress=False)
    with pytest.raises(ValueError, match="entries in 'y'"):
        Batch(x[:200], mnist5k.y[:150])
    g = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
    sub = mnist5k.subset(g[:300])
    with pytest.raises(ValueError, match="multiple of the 10 classes"):
        fit(m, (sub, sub), TrainConfig(epochs=1, labels=25, device="cpu"), progress=False)
    with pytest.raises(ValueError, match="has only"):
        fit(m, (sub, sub), TrainConfig(epochs=1, labels=1000, device="cpu"), progress=False)


def test_classifier_dropout_acts_in_training_only():
    """``classifier_dropout`` drops input pixels of q(y|x) while training; evaluation (and the
    accuracy reported) sees the whole image. A rate outside [0, 1) is refused by name."""
    torch.manual_seed(0)
    m = build_model(
        ModelConfig(model="ssvae", data_shape=(6,), num_classes=C, latent_dim=2, hidden=(8,), classifier_dropout=0.5)
    )
    x = torch.rand(4, 6)
    m.train()
    assert not torch.allclose(m.classifier(x), m.classifier(x))  # two dropout masks
    m.eval()
    assert torch.equal(m.classifier(x), m.classifier(x))
    with pytest.raises(ValueError, match="classifier dropout"):
        build_model(ModelConfig(model="ssvae", data_shape=(6,), num_classes=C, latent_dim=2, classifier_dropout=1.0))

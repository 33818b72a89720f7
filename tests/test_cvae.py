"""The conditional VAE: class- and quadrant-conditioned models train on real digits, score only the
missing pixels, draw given a condition from Python and the CLI, and refuse bad conditions."""

import pyro.distributions as dist
import pytest
import torch

from pyro_vae import Batch, Loss, ModelConfig, TrainConfig, build_model, fit
from pyro_vae.cli import main
from pyro_vae.inference.marginal import log_weights
from pyro_vae.models.cvae import quadrant_mask


def _cvae(**kw):
    torch.manual_seed(0)
    return build_model(
        ModelConfig(model="cvae", data_shape=(1, 28, 28), num_classes=10, latent_dim=4, hidden=(64,), **kw)
    )


def test_quadrant_mask():
    m = quadrant_mask((1, 4, 4), 1)
    assert m.sum() == 4 and m[0, :2, :2].all()
    assert quadrant_mask((1, 4, 4), 3).sum() == 12 and not quadrant_mask((1, 4, 4), 3)[0, 2:, 2:].any()
    with pytest.raises(ValueError, match="1, 2 or 3"):
        quadrant_mask((1, 4, 4), 4)


def test_quadrant_model_scores_only_the_missing_pixels(mnist_bin):
    fam = _cvae(condition="quadrant")
    x = mnist_bin[1][:5]
    x2 = x.clone()
    x2[..., :14, :14] = 1 - x2[..., :14, :14]  # change the given quadrant of the target only
    args, args2 = fam.args(Batch(x)), (x2, fam.args(Batch(x))[1])
    torch.manual_seed(0)
    a = log_weights(fam.model, fam.guide, *args, num_particles=2)
    torch.manual_seed(0)
    b = log_weights(fam.model, fam.guide, *args2, num_particles=2)
    # the guide sees x, so compare the likelihood term alone: same z, same missing pixels
    d = fam._likelihood(torch.zeros(5, 4), args[1])
    assert torch.allclose(d.log_prob(x), d.log_prob(x2))
    assert d.log_prob(x).shape == (5,)
    assert not torch.allclose(a, b)  # the guide does see the whole image


@pytest.mark.parametrize("condition", ["class", "quadrant"])
def test_cvae_trains_on_real_digits(condition, mnist_bin, mnist5k):
    fam = _cvae(condition=condition)
    x = mnist_bin[0][:1000]
    perm = torch.randperm(5000, generator=torch.Generator().manual_seed(0))[:1000]
    y = mnist5k.y[perm]
    x = torch.bernoulli(mnist5k.x[perm], generator=torch.Generator().manual_seed(1))
    train, val = Batch(x[:800], y[:800]), Batch(x[800:], y[800:])
    summary = fit(
        fam,
        (train, val),
        TrainConfig(epochs=3, batch_size=100, lr=3e-3, patience=None, device="cpu", binarize="none"),
        progress=False,
    )
    assert summary["best_val_elbo"] > -250, summary  # ~540 nats (class) / ~400 (3 quadrants) untrained
    if condition == "class":
        s = fam.sample(12, condition=7)
        assert s.shape == (12, 1, 28, 28)
        with pytest.raises(ValueError, match=r"class in 0..9"):
            fam.sample(3, condition=12)
    else:
        done = fam.complete(val.x[:4], num_samples=2)
        assert done.shape == (2, 4, 1, 28, 28)
        assert torch.equal(done[..., :14, :14], val.x[:4, :, :14, :14].expand(2, -1, -1, -1, -1))


def test_learned_prior_or_library_prior():
    fam = _cvae(learned_prior=False, prior="standard_normal")
    assert not fam.learned_prior
    c = fam.make_condition(Batch(torch.zeros(3, 1, 28, 28), torch.tensor([1, 2, 3])))
    assert isinstance(fam._prior(c), dist.Independent)
    loss = Loss(fam)(Batch(torch.zeros(3, 1, 28, 28), torch.tensor([1, 2, 3])), 1.0)
    assert torch.isfinite(loss)


def test_cli_conditional_sampling_and_completion(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(200, 1, 12, 12, generator=g) < 0.3).float()
    y = torch.arange(200) % 4
    data = tmp_path / "d.pt"
    torch.save({"x": x, "y": y}, data)
    common = [
        "--dataset",
        str(data),
        "--binarize",
        "none",
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--eval-k",
        "5",
        "--no-progress",
        "--latent-dim",
        "2",
        "--hidden",
        "16",
    ]
    assert main(["train", "--model", "cvae", *common, "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "conditional_samples.png").exists()
    assert main(["sample", str(tmp_path / "c"), "-n", "8", "--condition", "3", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    assert main(["sample", str(tmp_path / "c"), "--condition", "9"]) == 2
    assert "class in 0..3" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--model",
                "cvae",
                "--condition",
                "quadrant",
                "--observed-quadrants",
                "2",
                *common,
                "--out",
                str(tmp_path / "q"),
            ]
        )
        == 0
    )
    assert (tmp_path / "q" / "completion.png").exists()
    assert main(["train", "--model", "cvae", "--condition", "corner", *common, "--out", str(tmp_path / "b")]) == 2
    assert "condition must be one of class, quadrant" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "q"), "--condition", "1"]) == 2
    assert "draws given images" in capsys.readouterr().err
    vae_run = tmp_path / "v"
    assert main(["train", *common, "--out", str(vae_run)]) == 0
    assert main(["sample", str(vae_run), "--condition", "1"]) == 2
    assert "not conditional" in capsys.readouterr().err


def test_a_given_condition_of_the_wrong_shape_is_named():
    from pyro_vae.components.likelihoods import GaussianLikelihood
    from pyro_vae.models import CVAE
    from pyro_vae.models.cvae import PriorNet
    from pyro_vae.components.networks import MLPDecoder, MLPEncoder

    fam = CVAE(
        MLPEncoder((6 + 2,), 2, (8,)),
        MLPDecoder((6,), 2 + 2, (8,)),
        PriorNet(2, 2, (8,)),
        GaussianLikelihood((6,)),
        (6,),
        2,
        condition="given",
        cond_shape=(2,),
    )
    x, c = torch.randn(40, 6), torch.randn(40, 2)
    cfg = TrainConfig(epochs=2, batch_size=20, binarize="none", patience=None, device="cpu")
    summary = fit(fam, (Batch(x[:30], c=c[:30]), Batch(x[30:], c=c[30:])), cfg, progress=False)
    assert summary["epochs_run"] == 2
    with pytest.raises(ValueError, match="condition of 2 numbers per data point, got c of shape"):
        fit(fam, (Batch(x[:30], c=torch.randn(30, 3)), Batch(x[30:], c=c[30:])), cfg, progress=False)
    with pytest.raises(ValueError, match="needs data with a condition tensor c"):
        fit(fam, (Batch(x[:30]), Batch(x[30:], c=c[30:])), cfg, progress=False)

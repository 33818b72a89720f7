"""Families written as Pyro users write them: ``model(x)``, ``guide(x)`` and a plain
``pyro.plate("data", x.shape[0])``; beta, KL warm-up, free bits and the data-set scale N/B
applied from outside (pyro_vae.inference.scaling), checked from traces; the same numbers as the explicit
form (``model(x, kl_weight, num_data)``) on common random numbers."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn

from pyro_vae import Batch, Loss, TrainConfig, fit, make_objective
from pyro_vae.analysis.evaluate import evaluate
from pyro_vae.training import fit as training
from pyro_vae.components.distributions import ReparamNormal
from pyro_vae.inference.importance import FreeBitsELBO
from pyro_vae.models import ContractError, Family, check_family
from pyro_vae.models.base import batch_size_of, data_plate
from pyro_vae.models.vae import VAE, VAEConfig
from pyro_vae.inference.objectives import _compiled_count
from pyro_vae.inference.scaling import EXPLICIT, PLAIN, Scaled, ScaleSites, program_form, uses_handlers


# ---------------------------------------------------------------------- Pyro's VAE tutorial, 8x8 images
class Encoder(nn.Module):
    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, z_dim)
        self.fc22 = nn.Linear(hidden_dim, z_dim)
        self.softplus = nn.Softplus()

    def forward(self, x):
        x = x.reshape(-1, 64)
        hidden = self.softplus(self.fc1(x))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class Decoder(nn.Module):
    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(z_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, 64)
        self.softplus = nn.Softplus()
        self.sigmoid = nn.Sigmoid()

    def forward(self, z):
        return self.sigmoid(self.fc21(self.softplus(self.fc1(z))))


class TutorialVAE(Family):
    """The tutorial's pair as it is written there, plus what the contract asks (data_shape)."""

    data_shape = (64,)
    latent_sites, observed_sites = ("latent",), ("obs",)

    def __init__(self, z_dim=3, hidden_dim=16):
        super().__init__()
        self.encoder, self.decoder = Encoder(z_dim, hidden_dim), Decoder(z_dim, hidden_dim)
        self.z_dim = z_dim
        self.epoch = None

    def on_epoch(self, epoch, epochs):
        self.epoch = epoch

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z_loc = x.new_zeros(torch.Size((x.shape[0], self.z_dim)))
            z_scale = x.new_ones(torch.Size((x.shape[0], self.z_dim)))
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            loc_img = self.decoder(z)
            pyro.sample("obs", dist.Bernoulli(loc_img, validate_args=False).to_event(1), obs=x.reshape(-1, 64))
            return loc_img

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = self.encoder(x)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))


def _images(n, seed=0):
    return (torch.rand(n, 64, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def test_a_tutorial_pair_trains_with_beta_warm_up_and_free_bits_scaled_as_documented(monkeypatch):
    """fit with beta 4, warm-up 2 epochs, free bits 0.5: at every step the scaled programs' traces
    give the latent site N/B * w (w = 4 min(1, (step+1) / (2 * steps per epoch))) in the guide and in
    the model, and the observed site N/B alone; the objective is free bits; evaluation works."""
    steps = []

    class Recording(Loss):
        def _loss(self, batch, args, kl_weight, num_data):
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                g = poutine.trace(self._guide).get_trace(*args, kl_weight, num_data=num_data)
                m = poutine.trace(poutine.replay(self._model, trace=g)).get_trace(*args, kl_weight, num_data=num_data)
            steps.append(
                {
                    "epoch": self.family.epoch,
                    "kl_weight": float(kl_weight),
                    "B": args[0].shape[0],
                    "N": num_data,
                    "objective": self.objective,
                    "plain": self.plain,
                    "guide": {n: s["scale"] for n, s in g.nodes.items() if s["type"] == "sample"},
                    "model": {n: s["scale"] for n, s in m.nodes.items() if s["type"] == "sample"},
                }
            )
            return super()._loss(batch, args, kl_weight, num_data)

    monkeypatch.setattr(training, "Loss", Recording)
    torch.manual_seed(0)
    family = TutorialVAE()
    N, B, epochs = 80, 16, 4
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=B,
        beta=4.0,
        warmup_epochs=2,
        free_bits=0.5,
        lr=1e-2,
        device="cpu",
        patience=None,
        binarize="none",
        seed=1,
    )
    summary = fit(family, (Batch(_images(N)), Batch(_images(40, seed=1))), cfg, progress=False)
    assert summary is not None

    per_epoch = N // B
    assert len(steps) == epochs * per_epoch
    for step, rec in enumerate(steps):
        assert rec["plain"] and isinstance(rec["objective"], FreeBitsELBO) and rec["objective"].free_bits == 0.5
        assert rec["epoch"] == step // per_epoch and rec["N"] == N and rec["B"] == B
        w = 4.0 * min(1.0, (step + 1) / (2 * per_epoch))  # beta x the linear warm-up (schedules.kl_weight_at)
        assert rec["kl_weight"] == pytest.approx(w, rel=1e-6)
        for program in ("guide", "model"):
            assert float(rec[program]["latent"]) == pytest.approx(N / B * w, rel=1e-6), (step, program)
        assert rec["model"]["obs"] == N / B  # the data-set scale only, exactly
        assert set(rec["guide"]) == {"data", "latent"} and set(rec["model"]) == {"data", "latent", "obs"}
        if step + 1 < 2 * per_epoch:  # warming up (epochs 1 and 2; beta reached at the last step of epoch 2)
            assert float(rec["guide"]["latent"]) < N / B * 4.0
        else:  # warm-up over: beta itself
            assert float(rec["guide"]["latent"]) == N / B * 4.0 and float(rec["model"]["latent"]) == N / B * 4.0
    assert steps[0]["kl_weight"] == pytest.approx(4.0 / (2 * per_epoch))

    # the evaluator calls the plain programs on chunks, unscaled
    out = evaluate(family, Batch(_images(30, seed=2)), k=20, batch_size=7)
    assert all(torch.isfinite(torch.tensor(out[m]["value"])) for m in ("elbo", "log_px", "kl", "recon_log_lik"))
    assert out["log_px"]["value"] >= out["elbo"]["value"] - 1.0


# ---------------------------------------------------------------------- the handler's table
def _program(x, y, labelled):
    """A global latent outside the data plate, a latent and an observed site inside it, a label
    observed where known (obs_mask: an observed and a latent part), a factor, an enumerated site."""
    g = pyro.sample("g", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(g, 1.0))
        pyro.sample("y", dist.Categorical(logits=torch.zeros(3)), obs=y, obs_mask=labelled)
        pyro.sample("k", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        pyro.factor("penalty", -z.abs())
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def _scales(**handler):
    x, y = torch.randn(4), torch.tensor([0, 1, 2, 0])
    labelled = torch.tensor([True, False, True, False])
    with ScaleSites(**handler):
        tr = poutine.trace(_program).get_trace(x, y, labelled)
    return {
        n: (float(s["scale"]) if torch.is_tensor(s["scale"]) else s["scale"])
        for n, s in tr.nodes.items()
        if s["type"] == "sample" and n != "data"
    }


def test_the_handler_scales_latents_by_the_kl_weight_and_the_data_plate_by_n_over_b():
    w = torch.tensor(0.5)
    got = _scales(kl_weight=w, num_data=100, plate_name="data")
    assert got == {
        "g": 0.5,
        "z": 25 * 0.5,
        "y_observed": 25.0,
        "y_unobserved": 25 * 0.5,
        "y": 25.0,
        "k": 25 * 0.5,
        "penalty": 25.0,
        "x": 25.0,
    }
    assert _scales(kl_weight=w) == {
        "g": 0.5,
        "z": 0.5,
        "y_observed": 1.0,
        "y_unobserved": 0.5,
        "y": 1.0,
        "k": 0.5,
        "penalty": 1.0,
        "x": 1.0,
    }
    # a family's kl_sites: exactly those sites, observed or not
    assert _scales(kl_weight=w, num_data=100, kl_sites=("z", "y_observed")) == {
        "g": 1.0,
        "z": 12.5,
        "y_observed": 12.5,
        "y_unobserved": 25.0,
        "y": 25.0,
        "k": 25.0,
        "penalty": 25.0,
        "x": 25.0,
    }
    # another plate name: no site is in the data plate, so none gets N/B
    assert _scales(kl_weight=w, num_data=100, plate_name="images")["x"] == 1.0
    with pytest.raises(ValueError, match="KL weight must be > 0"):
        ScaleSites(kl_weight=0.0)


# ---------------------------------------------------------------------- the forms, read once
class ExplicitVAE(VAE):
    """Today's VAE programs, explicit form (kl_weight, num_data in the signatures)."""

    def model(self, x=None, kl_weight=1.0, num_data=None):
        pyro.module(self.pyro_name, self)
        with data_plate(batch_size_of(x), num_data):
            with poutine.scale(scale=kl_weight):
                z = pyro.sample("z", self.prior())
            return pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x, kl_weight=1.0, num_data=None):
        pyro.module(self.pyro_name, self)
        with data_plate(x.shape[0], num_data):
            loc, scale = self.encoder(self.encoder_input(x))
            with poutine.scale(scale=kl_weight):
                pyro.sample("z", ReparamNormal(loc, scale).to_event(1))


class PlainVAE(VAE):
    """The same VAE written as the tutorial writes it."""

    def model(self, x=None):
        pyro.module(self.pyro_name, self)
        with pyro.plate("data", batch_size_of(x)):
            z = pyro.sample("z", self.prior())
            return pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x):
        pyro.module(self.pyro_name, self)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(self.encoder_input(x))
            pyro.sample("z", ReparamNormal(loc, scale).to_event(1))


class MixedVAE(PlainVAE):
    """A user's subclass that overrides one program in the explicit form."""

    guide = ExplicitVAE.guide


class HalfVAE(PlainVAE):
    def model(self, x=None, kl_weight=1.0):
        return super().model(x)


def test_the_form_is_read_from_the_signatures():
    assert program_form(PlainVAE.model) == PLAIN and program_form(ExplicitVAE.guide) == EXPLICIT
    assert program_form(lambda x, **kw: None) == EXPLICIT and program_form(HalfVAE.model) is None
    cfg = VAEConfig(latent_dim=2, hidden=(8,))
    plain, explicit, mixed = (cls.from_config(cfg, (1, 4, 4)) for cls in (PlainVAE, ExplicitVAE, MixedVAE))
    for family in (plain, explicit, mixed):
        check_family(family)
    assert uses_handlers(plain) and uses_handlers(mixed) and not uses_handlers(explicit)
    assert Loss(plain, "trace").plain and Loss(explicit, "trace").programs is None
    loss = Loss(plain, "trace")
    assert Loss(plain, "jit").programs is loss.programs  # one Scaled per family: compiled graphs are reused
    assert [n for n, _ in loss.named_parameters()] == [n for n, _ in Loss(explicit, "trace").named_parameters()]
    plain.eval()
    assert not loss.programs.training  # the family's mode (the compiled graphs are keyed on it)
    with pytest.raises(ContractError, match="HalfVAE.model takes one of kl_weight and num_data"):
        check_family(HalfVAE.from_config(cfg, (1, 4, 4)))


# ---------------------------------------------------------------------- same numbers as the explicit form
def _twins(classes=(ExplicitVAE, PlainVAE, MixedVAE, VAE)):
    torch.manual_seed(0)
    cfg = VAEConfig(latent_dim=4, hidden=(16,))
    first = classes[0].from_config(cfg, (1, 8, 8))
    out = [first]
    for cls in classes[1:]:
        f = cls.from_config(cfg, (1, 8, 8))
        f.load_state_dict(first.state_dict())
        out.append(f)
    return out


def _loss_and_grads(family, objective, x, kl_weight, num_data, calls=2):
    loss_fn = Loss(
        family,
        make_objective(objective, family)
        if objective != "free_bits"
        else make_objective("auto", family, free_bits=0.5),
    )
    for _ in range(calls):  # a JIT objective: the second call runs the compiled graph
        torch.manual_seed(1)
        family.zero_grad()
        loss = loss_fn(Batch(x), torch.tensor(kl_weight), num_data=num_data)
        loss.backward()
    return loss.detach(), [p.grad.clone() for p in family.parameters()]


@pytest.mark.parametrize("objective", ["trace", "jit", "free_bits", "iwae"])
@pytest.mark.parametrize("num_data", [None, 1000])
@pytest.mark.parametrize("kl_weight", [4.0, 1.3])
def test_the_plain_form_gives_the_explicit_forms_loss_and_gradients(objective, num_data, kl_weight):
    """Same parameters, same seed: the plain VAE under the handlers, the explicit one, a mixed one
    and the library's VAE give the same loss and gradients, bit for bit (batch 16: see the next test
    for other batch sizes), beta != 1, with and without N, for Trace_ELBO, the compiled lean graph,
    free bits and IWAE."""
    x = (torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(5)) < 0.3).float()
    results = [_loss_and_grads(f, objective, x, kl_weight, num_data) for f in _twins()]
    for loss, grads in results[1:]:
        assert torch.equal(loss, results[0][0])
        assert all(torch.equal(a, b) for a, b in zip(grads, results[0][1]))


@pytest.mark.parametrize("objective", ["trace", "jit"])
def test_at_any_batch_size_the_forms_agree_to_the_rounding_of_pyros_plate_scale(objective):
    """The one difference: Pyro's plate multiplies a site's scale by ``B / B`` (its size over its
    subsample size) after the handlers *inside* it. In the explicit form ``data_plate`` puts N/B
    and ``kl_weight`` inside the plate, so the product is rounded once more, ``(s * B) / B``; exact
    for B a power of two (above), within a float's rounding otherwise. The plain form's handler
    sits outside the plate and multiplies after it."""
    x = (torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(5)) < 0.3).float()
    (l0, g0), (l1, g1) = (_loss_and_grads(f, objective, x, 0.37, 86) for f in _twins((ExplicitVAE, PlainVAE)))
    torch.testing.assert_close(l1, l0, rtol=1e-6, atol=0)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_the_compiled_objective_keeps_the_kl_weight_a_graph_input():
    """One compiled graph for every KL weight (the weight is a traced input, not a constant), and
    its value at each weight is Trace_ELBO's on the same draws (so the weight was not frozen)."""
    (family,) = _twins((PlainVAE,))
    x = (torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(5)) < 0.3).float()
    jit, trace = Loss(family, "jit"), Loss(family, "trace")
    jit(Batch(x), torch.tensor(0.5), num_data=100)
    compiled = _compiled_count(jit.objective)
    assert compiled >= 1 and vars(jit.objective)["_lean_graphs"]  # the lean graph took the plain programs
    for w in (0.5, 2.0, 4.0):
        torch.manual_seed(3)
        a = jit(Batch(x), torch.tensor(w), num_data=100)
        torch.manual_seed(3)
        b = trace(Batch(x), torch.tensor(w), num_data=100)
        # the lean graph sums -(log p - log q) in another order than Trace_ELBO: equal to a float's
        # rounding, in either form (the explicit VAE shows the same last-digit difference at w = 2)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    assert _compiled_count(jit.objective) == compiled


def test_scaled_programs_take_the_weights_as_keywords_for_any_objective():
    """``Scaled(family)`` shows a plain family in the explicit signature, for code that calls an
    objective itself (SVI, a loop of one's own)."""
    explicit, plain = _twins((ExplicitVAE, PlainVAE))
    x = (torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(5)) < 0.3).float()
    s = Scaled(plain)
    values = []
    for model, guide in ((explicit.model, explicit.guide), (s.model, s.guide)):
        torch.manual_seed(2)
        values.append(pyro.infer.Trace_ELBO().loss(model, guide, x, kl_weight=3.0, num_data=500))
    assert values[0] == values[1]

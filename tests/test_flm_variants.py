"""The FLM options of the ablations: model.loss (ce | mse | velocity_mse), model.schedule (decoding_error |
uniform) and model.interpolant (the registry): exact identities, closed-form losses, learning, config errors."""

from __future__ import annotations

import pytest
import torch

from flowlm import Flow
from flowlm.interpolants import (INTERPOLANTS, Cosine, IdentitySchedule, Interpolant, Linear, Quadratic,
                                 interpolant_from_name, register_interpolant, stratified_uniform)
from flowlm.models import FLM
from flowlm.nets import DiTConfig, VelocityNetDenoiser
from flowlm.pipeline import RunError, build_model
from flowlm.presets import ConfigError, preset
from flowlm.samplers import EulerSampler
from flowlm.samplers.base import drift
from flowlm.states import OneHotSpace

V, L = 7, 5


def _net(**kw) -> DiTConfig:
    return DiTConfig(vocab_size=V, max_length=L, width=16, depth=1, heads=2, cond=8, dropout=0.0, **kw)


# ------------------------------------------------------------------------------------ interpolants
def test_registry_names_builds_and_refuses():
    assert isinstance(interpolant_from_name("cosine"), Cosine) and isinstance(interpolant_from_name("quadratic"), Quadratic)
    with pytest.raises(ValueError, match="did you mean 'cosine'"):
        interpolant_from_name("cosin")

    class Cubic(Interpolant):
        name = "cubic"

        def alpha(self, t):
            return 1 - t**3

        def beta(self, t):
            return t**3

    register_interpolant("cubic-test", Cubic)
    try:
        flow = Flow.from_names("cubic-test", "uniform", V)
        assert isinstance(flow.interpolant, Cubic) and isinstance(flow.schedule, IdentitySchedule)
        with pytest.raises(ValueError, match="taken"):
            register_interpolant("linear", Cubic)
    finally:
        INTERPOLANTS.pop("cubic-test")
    with pytest.raises(ValueError, match="decoding_error or uniform"):
        Flow.from_names("linear", "loglinear", V)


def test_quadratic_is_a_valid_path():
    q = Quadratic()
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    assert torch.allclose(q.alpha(t[[0, -1]]), torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert torch.allclose(q.beta(t[[0, -1]]), torch.tensor([0.0, 1.0], dtype=torch.float64))
    rho = q.rho(t[1:-1])
    assert bool((rho.diff() > 0).all())  # the SNR increases: a schedule exists
    assert torch.allclose(q.alpha_dot(t), -2 * t) and torch.allclose(q.beta_dot(t), 2 * t)


def test_decoding_error_time_fixes_the_snr_whatever_the_interpolant():
    """The decoding error depends on ρ = β/α alone, so at equal model time τ every interpolant has the same
    ρ(t(τ)) and x_t/α = x0 + ρ·x1 is the same state: under decoding-error time the interpolant only scales."""
    tau = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    rhos = [Flow.decoding_error(p, 50).schedule for p in (Linear(), Cosine(), Quadratic())]
    rho = [s.interpolant.rho(s.t_of_tau(tau)) for s in rhos]
    for r in rho[1:]:
        assert torch.allclose(r, rho[0], rtol=1e-4, atol=1e-8)
    # ... and uniform time does not: Quadratic's ρ(t) = t²/(1−t²) differs from Linear's t/(1−t)
    t = tau
    assert not torch.allclose(Quadratic().rho(t), Linear().rho(t), rtol=1e-2)


# ------------------------------------------------------------------------------------ losses
def _draws(flm: FLM, tokens: torch.Tensor, seed: int):
    g = torch.Generator().manual_seed(seed)
    tau = stratified_uniform(tokens.shape[0], generator=g)
    return g, tau


def test_mse_loss_is_the_squared_distance_to_the_one_hot():
    torch.manual_seed(0)
    flm = FLM(_net(), Flow.decoding_error(Linear(), V), loss="mse")
    torch.nn.init.normal_(flm.net.head.weight, std=0.5)
    tokens = torch.randint(V, (4, L), generator=torch.Generator().manual_seed(1))
    loss, _ = flm.loss(tokens, generator=torch.Generator().manual_seed(2))
    g, tau = _draws(flm, tokens, 2)
    xt = flm.flow.noisy(tokens, tau=tau, space=flm.space, generator=g).xt
    probs = torch.softmax(flm.net(xt, tau), -1)
    want = (probs - torch.nn.functional.one_hot(tokens, V)).square().sum(-1).mean()
    assert torch.allclose(loss, want, atol=1e-6)


@pytest.mark.parametrize("projected", [True, False])
def test_velocity_loss_is_the_mse_to_the_path_velocity(projected):
    torch.manual_seed(0)
    flm = FLM(_net(), Flow.decoding_error(Cosine(), V), projected=projected, loss="velocity_mse")
    tokens = torch.randint(V, (4, L), generator=torch.Generator().manual_seed(1))
    loss, _ = flm.loss(tokens, generator=torch.Generator().manual_seed(2))
    g, tau = _draws(flm, tokens, 2)
    x0 = torch.randn(4, L, V, generator=g)
    x1 = torch.nn.functional.one_hot(tokens, V).float()
    t = flm.flow.t_of_tau(tau)[:, None, None]
    p = flm.flow.interpolant
    xt = p.alpha(t) * x0 + p.beta(t) * x1
    u = flm.net(xt @ flm.net.E, tau)
    want = (u - (p.alpha_dot(t) * x0 + p.beta_dot(t) * x1)).square().mean()
    assert torch.allclose(loss, want, atol=1e-6)


@pytest.mark.parametrize("interpolant", [Linear(), Cosine(), Quadratic()])
@pytest.mark.parametrize("projected", [True, False])
def test_velocity_denoiser_drift_is_the_network_velocity(interpolant, projected):
    """The implied clean estimate x̂1 makes the probability-flow drift exactly the network's u (u·E projected)."""
    torch.manual_seed(0)
    flm = FLM(_net(), Flow.decoding_error(interpolant, V), projected=projected, loss="velocity_mse").double()
    torch.nn.init.normal_(flm.net.head.weight, std=0.5)
    space = flm.space
    x = space.noise(3, L, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    u = flm.denoiser.velocity(x, t)
    want = u @ flm.net.E if projected else u
    got = torch.stack([drift(flm.flow, x[i:i + 1], t[i], flm.denoiser.probs(x[i:i + 1], t[i:i + 1], space=space))[0]
                       for i in range(3)])
    assert torch.allclose(got, want, atol=1e-9)
    with pytest.raises(TypeError, match="no logits"):
        flm.denoiser.logits(x, t)


def test_velocity_denoiser_recovers_the_clean_state_from_the_exact_velocity():
    """Point-mass law: the exact velocity given x_t is α̇x0 + β̇x1 with x0 = (x_t − βx1)/α; its implied x̂1 is x1."""
    flow = Flow.decoding_error(Cosine(), V)
    x1 = torch.nn.functional.one_hot(torch.tensor([[1, 4, 0, 6, 2]]), V).double()

    class Exact(VelocityNetDenoiser):
        def velocity(self, x, t, *, tau=None):
            tt = t[:, None, None]
            p = flow.interpolant
            x0 = (x - p.beta(tt) * x1) / p.alpha(tt)
            return p.alpha_dot(tt) * x0 + p.beta_dot(tt) * x1

    den = Exact(FLM(_net(), flow, projected=False).net, flow, OneHotSpace(V))
    for t in (0.1, 0.6, 0.95):
        tt = torch.tensor([t], dtype=torch.float64)
        x = flow.interpolant.alpha(tt) * torch.randn(1, L, V, dtype=torch.float64) + flow.interpolant.beta(tt) * x1
        assert torch.allclose(den.probs(x, tt, space=OneHotSpace(V)), x1, atol=1e-9)
    out = EulerSampler(4)(den, flow, torch.randn(1, L, V, dtype=torch.float64), space=OneHotSpace(V))
    assert torch.equal(out.tokens, x1.argmax(-1))


@pytest.mark.parametrize("changes, steps", [({"model.loss": "mse"}, 150), ({"model.loss": "velocity_mse"}, 300),
                                            ({"model.schedule": "uniform"}, 150), ({"model.interpolant": "quadratic"}, 150)])
def test_every_variant_learns_a_two_sequence_law(changes, steps):
    """A tiny FLM of each variant learns the law "all 2s or all 5s, 1/2 each" (positions must agree)."""
    torch.manual_seed(0)
    flm = build_model(preset("tiny").updated({**changes, "model.dropout": 0.0}), V)
    opt = torch.optim.Adam(flm.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        tokens = torch.where(torch.rand(16, 1, generator=g) < 0.5, 2, 5).expand(16, 8)
        opt.zero_grad()
        flm.loss(tokens, generator=g)[0].backward()
        opt.step()
    out = flm.sample(32, 8, 16, generator=torch.Generator().manual_seed(1)).tokens
    valid = (out == out[:, :1]).all(1) & ((out[:, 0] == 2) | (out[:, 0] == 5))
    assert valid.float().mean() >= 0.85
    assert 0.2 <= (out[:, 0] == 2).float().mean() <= 0.8  # both modes


# ------------------------------------------------------------------------------------ config
def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match="model.loss must be one of ce, mse, velocity_mse"):
        preset("tiny").updated({"model.loss": "l1"}).validate()
    with pytest.raises(ConfigError, match="model.schedule"):
        preset("tiny").updated({"model.schedule": "linear"}).validate()
    with pytest.raises(ConfigError, match="FLM options"):
        preset("tiny").updated({"model.kind": "ar", "model.loss": "mse"}).validate()
    with pytest.raises(RunError, match="did you mean 'cosine'"):
        build_model(preset("tiny").updated({"model.interpolant": "cosin"}), V)
    with pytest.raises(RunError, match="cannot be distilled"):
        build_model(preset("tiny").updated({"model.loss": "velocity_mse"}), V, "fmlm")
    flm = build_model(preset("tiny").updated({"model.loss": "mse"}), V)
    with pytest.raises(ValueError, match="supports the CE loss"):
        flm.loss(torch.zeros(2, 8, dtype=torch.long), condition_fraction=0.5)


def test_a_checkpoint_rebuilds_its_flow(tmp_path):
    from flowlm.pipeline import load_model, train_model

    corpus = tmp_path / "c.txt"
    corpus.write_text("to be or not to be, that is the question. " * 40, encoding="utf-8")
    cfg = preset("tiny", steps=2, device="cpu").updated({"model.interpolant": "cosine", "model.schedule": "uniform",
                                                         "model.loss": "velocity_mse"})
    ckpt = train_model(cfg, corpus, tmp_path / "run")
    model, _, back = load_model(ckpt)
    assert isinstance(model.flow.interpolant, Cosine) and isinstance(model.flow.schedule, IdentitySchedule)
    assert isinstance(model.denoiser, VelocityNetDenoiser) and back.model.loss == "velocity_mse"

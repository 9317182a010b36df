"""Flow maps of two-time denoisers: conversions, time pairs, JVP backends, projections, sampler.

Values are checked against float64 exact oracles (``flowlm.oracles``) and closed forms of the
Linear interpolant; universal statements run under hypothesis.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from flowlm.flowmaps import (
    EulerianDistiller,
    ExactJVP,
    FiniteDifferenceJVP,
    FlowMap,
    FlowMapSampler,
    ForwardModeADError,
    TimePairSampler,
    TwoTimeDenoiser,
    average_velocity_from_delta,
    clip_to_simplex,
    delta_from_average_velocity,
    delta_from_flow_map,
    eulerian_factor,
    lagrangian_factor,
    sparsemax_projection,
    target_loss,
)
from flowlm import Flow
from flowlm.flowmaps.semigroup import safe_semigroup_weight
from flowlm.interpolants import Cosine, IdentitySchedule, Interpolant, Linear, MixtureSchedule
from flowlm.nets.mlp import TwoTimeMLP
from flowlm.oracles import ExactFlowMap, ExactTwoTimeDenoiser, FactorizedCategorical, FiniteSequences

F64 = torch.float64


def make_interpolant(name: str) -> Interpolant:
    if name == "linear":
        return Linear()
    if name == "cosine":
        return Cosine()
    if name == "flat-end":  # α'(1) = 0: the Lagrangian factor's last form is 0/0 at t = 1
        return Interpolant.from_functions(lambda t: (1 - t) ** 2, lambda t: 1 - (1 - t) ** 2, name="flat-end")
    return Interpolant.from_functions(lambda t: 1 - t**2, lambda t: t * (2 - t), name="quadratic")


INTERPOLANTS = st.sampled_from(["linear", "cosine", "quadratic", "flat-end"])


def time_pair(draw, lo: float = 0.0, hi: float = 1.0) -> tuple[float, float]:
    a = draw(st.floats(lo, hi))
    b = draw(st.floats(lo, hi))
    return min(a, b), max(a, b)


class TemperedTwoTime(TwoTimeDenoiser):
    """A perturbed map: the exact δ's logits scaled by a temperature (still on the simplex)."""

    def __init__(self, exact: ExactTwoTimeDenoiser, temperature: float) -> None:
        self.exact, self.temperature, self.vocab_size = exact, temperature, exact.vocab_size
        self.interpolant = exact.interpolant

    def logits(self, x, s, t, *, tau_s=None, tau_t=None):
        return self.exact(x, s, t) / self.temperature


def random_law(V: int, L: int, seed: int, interpolant: Interpolant) -> FactorizedCategorical:
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2.0 * torch.randn(L, V, generator=g, dtype=F64), -1)
    return FactorizedCategorical(probs, interpolant)


# --------------------------------------------------------------------------- conversions
@settings(max_examples=4, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: ODE solves
@given(V=st.integers(2, 5), L=st.integers(1, 3), name=INTERPOLANTS, seed=st.integers(0, 10**6), data=st.data())
def test_exact_delta_lies_on_the_simplex(V, L, name, seed, data):
    it = make_interpolant(name)
    law = random_law(V, L, seed, it)
    fm = FlowMap(ExactTwoTimeDenoiser(law, it, rtol=1e-8, atol=1e-8), Flow.identity(it, V))
    s, t = time_pair(data.draw)
    B = 3
    x = torch.randn(B, L, V, dtype=F64, generator=torch.Generator().manual_seed(seed))
    _, p = fm.X(x, torch.full((B,), s, dtype=F64), torch.full((B,), t, dtype=F64), return_delta=True)
    assert bool((p >= -1e-9).all())
    torch.testing.assert_close(p.sum(-1), torch.ones(B, L, dtype=F64), atol=1e-8, rtol=0)


@given(V=st.integers(2, 6), L=st.integers(1, 4), name=INTERPOLANTS, s=st.floats(0.0, 0.999), seed=st.integers(0, 10**6))
def test_flow_map_at_equal_times_is_the_identity(V, L, name, s, seed):
    it = make_interpolant(name)
    torch.manual_seed(seed)
    flow = Flow.identity(it, V)
    net = TwoTimeMLP(V, L, flow, hidden=16, depth=1).double()
    x = torch.randn(4, L, V, dtype=F64)
    ss = torch.full((4,), s, dtype=F64)
    torch.testing.assert_close(FlowMap(net, flow).X(x, ss, ss), x, atol=1e-12, rtol=1e-12)


@given(V=st.integers(2, 6), L=st.integers(1, 4), data=st.data(), seed=st.integers(0, 10**6))
def test_conversions_round_trip_and_match_the_linear_closed_forms(V, L, data, seed):
    it = Linear()
    s, t = time_pair(data.draw, 0.0, 0.99)
    t = max(t, s + 1e-3)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, L, V, dtype=F64, generator=g)
    delta = torch.softmax(torch.randn(3, L, V, dtype=F64, generator=g), -1)
    ss, tt = torch.full((3,), s, dtype=F64), torch.full((3,), t, dtype=F64)
    X = it.flow_map_from_delta(x, ss, tt, delta)
    torch.testing.assert_close(X, (1 - t) / (1 - s) * x + (t - s) / (1 - s) * delta)  # DESIGN §1 (Linear)
    v = average_velocity_from_delta(it, x, ss, tt, delta)
    torch.testing.assert_close(v, (delta - x) / (1 - s))  # Linear: (X − x)/(t − s) = (δ − x)/(1 − s)
    torch.testing.assert_close(delta_from_flow_map(it, x, ss, tt, X), delta)
    torch.testing.assert_close(delta_from_average_velocity(it, x, ss, tt, v), delta)


@settings(max_examples=3, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: ODE solves
@given(name=INTERPOLANTS, seed=st.integers(0, 10**6), data=st.data())
def test_flow_map_of_the_exact_delta_is_the_exact_flow_map(name, seed, data):
    it = make_interpolant(name)
    V, L, B = 3, 2, 3
    law = random_law(V, L, seed, it)
    s, t = time_pair(data.draw, 0.0, 1.0)
    x = torch.randn(B, L, V, dtype=F64, generator=torch.Generator().manual_seed(seed))
    ss, tt = torch.full((B,), s, dtype=F64), torch.full((B,), t, dtype=F64)
    ex = ExactTwoTimeDenoiser(law, it, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(FlowMap(ex, Flow.identity(it))(x, ss, tt), ExactFlowMap(law, it, rtol=1e-9, atol=1e-9)(x, ss, tt), atol=1e-6, rtol=1e-6)


def test_exact_two_time_denoiser_satisfies_the_protocol():
    it = Linear()
    law = random_law(3, 2, 0, it)
    assert isinstance(ExactTwoTimeDenoiser(law, it), TwoTimeDenoiser)
    assert isinstance(TwoTimeMLP(3, 2, Flow.identity(it, 3)), TwoTimeDenoiser)
    with pytest.raises(ValueError, match="built for"):  # a map built for another path
        FlowMap(ExactTwoTimeDenoiser(law, it), Flow.identity(Cosine()))
    with pytest.raises(ValueError, match="vocabulary 3 but the flow has 4"):
        FlowMap(ExactTwoTimeDenoiser(law, it), Flow.identity(it, 4))


# --------------------------------------------------------------------------- coefficients
@given(name=INTERPOLANTS, data=st.data())
def test_semigroup_weight_vanishes_at_t_one_and_as_u_approaches_s(name, data):
    it = make_interpolant(name)
    s = data.draw(st.floats(0.0, 0.9))
    u = data.draw(st.floats(s, 0.95))
    one = torch.ones(1, dtype=F64)
    S, U = s * one, u * one
    assert float(it.semigroup_weight(S, U, one)) == pytest.approx(0.0, abs=1e-12)
    t = data.draw(st.floats(0.96, 1.0))
    w_near = it.semigroup_weight(S, S + 1e-9, t * one)
    assert abs(float(w_near)) < 1e-6
    w = float(safe_semigroup_weight(it, S, U, t * one))
    assert 0.0 <= w <= 1.0


@given(data=st.data())
def test_semigroup_weight_matches_the_linear_table_form(data):
    s = data.draw(st.floats(0.0, 0.9))
    t = data.draw(st.floats(s + 0.01, 1.0))
    u = data.draw(st.floats(s, min(t, 0.99)))
    S, U, T = (torch.tensor([v], dtype=F64) for v in (s, u, t))
    want = (1 - t) * (u - s) / ((1 - u) * (t - s))
    assert float(Linear().semigroup_weight(S, U, T)) == pytest.approx(want, rel=1e-9, abs=1e-12)


def rho_derivative(it: Interpolant, t: torch.Tensor) -> torch.Tensor:
    """dρ/dt by autograd on ρ = β/α directly (independent of the α-multiplied forms)."""
    t = t.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(it.rho(t).sum(), t)
    return g


@given(name=INTERPOLANTS, data=st.data())
def test_lagrangian_and_eulerian_factors_match_their_rho_definitions(name, data):
    it = make_interpolant(name)
    s = data.draw(st.floats(0.0, 0.9))
    t = data.draw(st.floats(s, 0.99))
    S, T = torch.tensor([s], dtype=F64), torch.tensor([t], dtype=F64)
    drho = it.rho(T) - it.rho(S)
    torch.testing.assert_close(lagrangian_factor(it, S, T), drho / rho_derivative(it, T), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(eulerian_factor(it, S, T), drho / rho_derivative(it, S), rtol=1e-9, atol=1e-12)


@given(data=st.data())
def test_factors_match_the_linear_table_forms_and_lagrangian_is_finite_at_one(data):
    s = data.draw(st.floats(0.0, 0.9))
    t = data.draw(st.floats(s, 0.999))
    S, T = torch.tensor([s], dtype=F64), torch.tensor([t], dtype=F64)
    it = Linear()
    assert float(lagrangian_factor(it, S, T)) == pytest.approx((1 - t) * (t - s) / (1 - s), rel=1e-9, abs=1e-14)
    assert float(eulerian_factor(it, S, T)) == pytest.approx((t - s) * (1 - s) / (1 - t), rel=1e-9, abs=1e-14)
    for name in ("linear", "cosine", "quadratic", "flat-end"):
        it_n = make_interpolant(name)
        lam = lagrangian_factor(it_n, S, torch.ones(1, dtype=F64))
        assert float(lam) == 0.0  # finite (no 0/0) and equal to its limit
        # and continuous there: λ(s, 1 − h) → 0
        near = lagrangian_factor(it_n, S, torch.tensor([1 - 1e-6], dtype=F64))
        assert 0.0 <= float(near) < 1e-5


# --------------------------------------------------------------------------- time pairs
class _Square(IdentitySchedule):
    """τ = t² (a non-trivial schedule with a closed-form inverse)."""

    def tau_of_t(self, t):
        return t * t

    def t_of_tau(self, tau):
        return tau.sqrt()


def test_time_pair_sampler_follows_the_reference_law():
    sched = _Square()
    B = 20000
    pairs = TimePairSampler(Flow(Linear(), sched))(B, dtype=F64, generator=torch.Generator().manual_seed(0))
    s, u, t = pairs.s, pairs.u, pairs.t
    assert bool((s <= u).all() and (u <= t).all())
    assert pairs.diagonal.float().mean().item() == pytest.approx(0.5, abs=1e-3)  # stratified: exact up to 1/B
    assert pairs.boundary.float().mean().item() == pytest.approx(1 / 64, abs=1e-3)
    assert bool((s[pairs.diagonal] == t[pairs.diagonal]).all())
    assert bool((s[pairs.boundary] == 0).all() and (t[pairs.boundary] == 1).all())
    rest = pairs.off_diagonal & ~pairs.boundary
    tau_s, tau_t, tau_u = s[rest] ** 2, t[rest] ** 2, u[rest] ** 2
    d = tau_t - tau_s
    # d ~ U[0,1]: mean 1/2, var 1/12; τ_s | d ~ U[0, 1 − d]: E τ_s = E(1 − d)/2 = 1/4
    assert d.mean().item() == pytest.approx(0.5, abs=0.01)
    assert d.var().item() == pytest.approx(1 / 12, abs=0.005)
    assert tau_s.mean().item() == pytest.approx(0.25, abs=0.01)
    torch.testing.assert_close(tau_u, 0.5 * (tau_s + tau_t))  # τ-midpoint
    # the drawn model times travel with the pairs (what a network receives)
    torch.testing.assert_close(pairs.tau_s, s**2)
    torch.testing.assert_close(pairs.tau_t[rest], tau_t)
    torch.testing.assert_close(pairs.tau_u[rest], tau_u)
    tm = TimePairSampler(Flow(Linear(), sched), intermediate="t_midpoint")(64, dtype=F64, generator=torch.Generator().manual_seed(1))
    off = tm.off_diagonal
    torch.testing.assert_close(tm.u[off], 0.5 * (tm.s[off] + tm.t[off]))


def test_time_pair_sampler_rejects_bad_options():
    with pytest.raises(ValueError, match="intermediate"):
        TimePairSampler(Flow.identity(Linear()), intermediate="middle")
    with pytest.raises(ValueError, match="> 1"):
        TimePairSampler(Flow.identity(Linear()), diagonal_fraction=0.9, boundary_fraction=0.2)
    with pytest.raises(TypeError):
        TimePairSampler(IdentitySchedule())  # a schedule alone is not a flow


# --------------------------------------------------------------------------- JVP backends
@settings(max_examples=10)
@given(seed=st.integers(0, 10**6), name=INTERPOLANTS)
def test_exact_and_finite_difference_jvps_agree(seed, name):
    torch.manual_seed(seed)
    V, L, B = 4, 3, 5
    net = TwoTimeMLP(V, L, Flow(make_interpolant(name), MixtureSchedule(_Square(), 0.5)), hidden=32, depth=2).double()
    x = torch.randn(B, L, V, dtype=F64)
    s = torch.rand(B, dtype=F64) * 0.4 + 0.05
    t = s + torch.rand(B, dtype=F64) * 0.5
    v = torch.randn(B, L, V, dtype=F64)

    def fn(ss, xx):
        return torch.softmax(net(xx, ss, t), -1)

    out_e, jv_e = ExactJVP()(fn, (s, x), (torch.ones_like(s), v))
    out_f, jv_f = FiniteDifferenceJVP(1e-5)(fn, (s, x), (torch.ones_like(s), v))
    torch.testing.assert_close(out_e, out_f)
    torch.testing.assert_close(jv_e, jv_f, atol=1e-7, rtol=1e-6)


def test_finite_differences_are_exact_on_a_quadratic():
    p = torch.randn(7, dtype=F64)
    v = torch.randn(7, dtype=F64)
    out, jv = FiniteDifferenceJVP(0.3)(lambda a: a * a, (p,), (v,))
    torch.testing.assert_close(jv, 2 * p * v)  # central differences have no error on a quadratic
    torch.testing.assert_close(out, p * p)


class _NoForwardRule(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a):
        return a * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2


def test_exact_jvp_names_the_fix_when_forward_mode_fails():
    p = torch.randn(3, dtype=F64)
    with pytest.raises(ForwardModeADError, match="FiniteDifferenceJVP"):
        ExactJVP()(lambda a: _NoForwardRule.apply(a), (p,), (torch.ones_like(p),))
    # the finite-difference backend goes through the same function
    _, jv = FiniteDifferenceJVP(1e-3)(lambda a: _NoForwardRule.apply(a), (p,), (torch.ones_like(p),))
    torch.testing.assert_close(jv, torch.full((3,), 2.0, dtype=F64))
    # and through the exact oracle, whose ODE solver has no forward-mode rule
    it = Linear()
    ex = ExactTwoTimeDenoiser(random_law(3, 2, 0, it), it)
    x, s = torch.randn(2, 2, 3, dtype=F64), torch.full((2,), 0.2, dtype=F64)
    with pytest.raises(ForwardModeADError, match="plain-math"):
        ExactJVP()(lambda tt: ex(x, s, tt), (s + 0.3,), (torch.ones_like(s),))


def _tiny_dit(dropout: float):
    from flowlm.nets import DiT, DiTConfig

    torch.manual_seed(0)
    net = DiT(DiTConfig(vocab_size=11, max_length=6, width=32, depth=2, heads=2, cond=16, dropout=dropout,
                        two_time=True))
    for p in net.parameters():  # the head and adaLN start at zero: give every weight a value
        torch.nn.init.normal_(p, std=0.2)
    return net


def test_finite_differences_in_tau_match_forward_mode_on_a_dit():
    """Audit defect 1: FD in model time τ with the default ε = 1e-3 (float32) against the exact
    forward-mode JVP of a small DiT (eval mode, math attention). The authors' time embedding has
    frequencies ≤ 1 in τ, so rounding, not truncation, limits small steps: ε = 1e-6 is far off.
    (DESIGN §1 says ε ≈ 1e-5; that was measured on flowlm's earlier DiT, whose embedding reached
    frequency 1e3 in τ: on the authors' network ε = 1e-5 gives ~8 % error, 1e-3 gives ~0.1 %.)"""
    net = _tiny_dit(0.0).eval()
    g = torch.Generator().manual_seed(1)
    h = torch.randn(3, 6, 32, generator=g)
    tau_s, tau_t = torch.tensor([0.1, 0.4, 0.7]), torch.tensor([0.5, 0.6, 0.95])

    def probs(tt):
        return torch.softmax(net(h, tau_s, tt), -1)

    _, exact = ExactJVP()(probs, (tau_t,), (torch.ones_like(tau_t),))
    _, fd = FiniteDifferenceJVP()(probs, (tau_t,), (torch.ones_like(tau_t),))
    rel = float(((fd - exact).norm() / exact.norm()).detach())
    assert rel < 0.01, rel
    # float32 rounding: a step of 1e-6 in τ is far off
    _, tiny = FiniteDifferenceJVP(1e-6)(probs, (tau_t,), (torch.ones_like(tau_t),))
    assert float(((tiny - exact).norm() / exact.norm()).detach()) > 5 * rel


def test_finite_differences_hold_the_dropout_masks_fixed_and_refuse_half_precision():
    net = _tiny_dit(0.3).train()
    g = torch.Generator().manual_seed(2)
    h = torch.randn(2, 6, 32, generator=g)
    tau_s, tau_t = torch.tensor([0.2, 0.3]), torch.tensor([0.6, 0.8])

    def probs(tt):
        return torch.softmax(net(h, tau_s, tt), -1)

    torch.manual_seed(5)
    out, fd = FiniteDifferenceJVP()(probs, (tau_t,), (torch.ones_like(tau_t),))
    torch.manual_seed(5)
    same_masks = probs(tau_t)  # the primal pass used the masks of the current RNG state
    torch.testing.assert_close(out, same_masks)
    torch.manual_seed(5)
    _, exact = ExactJVP()(probs, (tau_t,), (torch.ones_like(tau_t),))  # same masks, exact derivative
    assert float((fd - exact).norm() / exact.norm()) < 0.05
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(RuntimeError, match="autocast"):
            FiniteDifferenceJVP()(probs, (tau_t,), (torch.ones_like(tau_t),))
    with pytest.raises(RuntimeError, match="float32 or float64"):
        FiniteDifferenceJVP()(lambda a: a, (tau_t.bfloat16(),), (torch.ones_like(tau_t).bfloat16(),))


# --------------------------------------------------------------------------- projections
def brute_force_projection(p: torch.Tensor) -> torch.Tensor:
    """Euclidean projection onto the simplex by scipy's constrained least squares (independent oracle)."""
    from scipy.optimize import minimize

    p_np = p.numpy()
    V = p_np.shape[-1]
    res = minimize(
        lambda q: ((q - p_np) ** 2).sum(), x0=torch.full((V,), 1.0 / V, dtype=F64).numpy(),
        jac=lambda q: 2 * (q - p_np), bounds=[(0.0, None)] * V,
        constraints=[{"type": "eq", "fun": lambda q: q.sum() - 1.0, "jac": lambda q: torch.ones(V, dtype=F64).numpy()}],
        method="SLSQP", options={"ftol": 1e-14, "maxiter": 500},
    )
    return torch.as_tensor(res.x)


@settings(max_examples=15)
@given(V=st.integers(2, 7), seed=st.integers(0, 10**6), scale=st.floats(0.01, 3.0))
def test_sparsemax_is_the_euclidean_projection(V, seed, scale):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(V, dtype=F64, generator=g) * scale + 1.0 / V
    proj = sparsemax_projection(p[None])[0]
    assert bool((proj >= 0).all())
    assert float(proj.sum()) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(proj, brute_force_projection(p), atol=1e-6, rtol=0)


@given(V=st.integers(2, 7), seed=st.integers(0, 10**6))
def test_projections_leave_points_of_the_simplex_unchanged(V, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.softmax(3 * torch.randn(2, 3, V, dtype=F64, generator=g), -1)
    torch.testing.assert_close(sparsemax_projection(q), q)
    torch.testing.assert_close(clip_to_simplex(q), q)
    off = q + 0.5 * (torch.randn_like(q).sign())
    off = off - (off.sum(-1, keepdim=True) - 1) / V
    c = clip_to_simplex(off)
    assert bool((c >= 0).all()) and torch.allclose(c.sum(-1), torch.ones(2, 3, dtype=F64))


def test_target_losses_are_minimized_at_the_target():
    g = torch.Generator().manual_seed(0)
    q = torch.softmax(torch.randn(2, 3, 4, dtype=F64, generator=g), -1)
    for projection in (None, "clip", "sparsemax", "mse"):
        logits = torch.zeros(2, 3, 4, dtype=F64, requires_grad=True)
        opt = torch.optim.Adam([logits], lr=0.1)
        for _ in range(400):
            opt.zero_grad()
            target_loss(logits, q, projection).sum().backward()
            opt.step()
        torch.testing.assert_close(torch.softmax(logits, -1), q, atol=2e-3, rtol=0)
    with pytest.raises(ValueError, match="projection"):
        target_loss(logits, q, "softmax")


# --------------------------------------------------------------------------- sampler
def test_flow_map_sampler_with_the_exact_delta_reproduces_the_exact_flow_map():
    it = Linear()
    V, L, B = 3, 3, 6
    g = torch.Generator().manual_seed(3)
    seqs = torch.randint(0, V, (5, L), generator=g)
    law = FiniteSequences(seqs, torch.rand(5, dtype=F64, generator=g) + 0.1, V, it)
    ex = ExactTwoTimeDenoiser(law, it, rtol=1e-9, atol=1e-9)
    x0 = torch.randn(B, L, V, dtype=F64, generator=g)
    one = torch.ones(B, dtype=F64)
    X01 = ExactFlowMap(law, it, rtol=1e-9, atol=1e-9)(x0, 0 * one, one)  # the exact one-step map: on the simplex
    flow = Flow(it, MixtureSchedule(_Square(), 0.5), V)
    for n in (1, 2):
        out = FlowMapSampler(n)(ex, flow, x0)
        assert out.nfe == n
        torch.testing.assert_close(out.probs, X01, atol=1e-6, rtol=0)
        assert torch.equal(out.tokens, X01.argmax(-1))
    # exact samples follow the law (X_{0,1} sends N(0, I) to the data law)
    tokens = FlowMapSampler(1)(ex, flow, torch.randn(16, L, V, dtype=F64, generator=g)).tokens
    assert bool(torch.isfinite(law.log_prob(tokens)).all())


def test_flow_map_sampler_counts_evaluations_and_renoises():
    torch.manual_seed(0)
    flow = Flow.identity(Linear(), 4)
    net = TwoTimeMLP(4, 3, flow, hidden=16, depth=1)
    x0 = torch.randn(8, 3, 4)
    det = FlowMapSampler(4)(net, flow, x0)
    assert det.nfe == 4 and det.tokens.shape == (8, 3) and torch.allclose(det.probs.sum(-1), torch.ones(8, 3))
    assert torch.equal(FlowMapSampler(4, gamma=0.0)(net, flow, x0).probs, det.probs)
    assert FlowMapSampler(4, gamma=0.5)(net, flow, x0, generator=torch.Generator().manual_seed(0)).nfe == 7
    assert FlowMapSampler(4, gamma=1.0)(net, flow, x0, generator=torch.Generator().manual_seed(0)).nfe == 4
    with pytest.raises(ValueError, match="gamma"):
        FlowMapSampler(2, gamma=1.5)


def test_flow_map_rejects_reversed_times():
    flow = Flow.identity(Linear(), 3)
    net = TwoTimeMLP(3, 2, flow, hidden=8, depth=1)
    with pytest.raises(ValueError, match="s <= t"):
        FlowMap(net, flow).X(torch.randn(2, 2, 3), torch.full((2,), 0.5), torch.full((2,), 0.2))
    with pytest.raises(ValueError, match="boundary"):
        EulerianDistiller(flow, boundary="clip")


def test_one_sided_stencils_stay_inside_the_domain_and_are_second_order():
    def sqrt_checked(a):
        assert bool((a >= 0).all()) and bool((a <= 1).all()), "evaluated outside [0, 1]"
        return a.sqrt() * (2 - a)  # smooth on (0, 1]; derivative (2 − 3a)/(2√a)

    p = torch.tensor([1.0, 0.36, 1.0], dtype=F64)
    shift = torch.tensor([-1.0, 0.0, -1.0], dtype=F64)
    for eps in (1e-3, 1e-4):
        _, jv = FiniteDifferenceJVP(eps)(sqrt_checked, (p,), (torch.ones_like(p),), row_shift=shift)
        exact = (2 - 3 * p) / (2 * p.sqrt())
        err = (jv - exact).abs()
        assert float(err.max()) < 10 * eps**2  # central and one-sided rows are second order
    with pytest.raises(AssertionError, match="outside"):
        FiniteDifferenceJVP(1e-3)(sqrt_checked, (p,), (torch.ones_like(p),))


@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_renoising_with_gamma_zero_or_one_keeps_the_marginal(gamma):
    """Audit defect 4: with the exact maps, γ ∈ {0, 1} leave x_{t_1} with the path's marginal
    (mean β·p, E|x|² = β² + α²V) and the samples with the data law."""
    from flowlm.oracles import total_variation

    law = FactorizedCategorical(torch.tensor([[0.7, 0.2, 0.1]], dtype=F64), Linear())
    flow = Flow.identity(Linear(), 3)
    two = ExactTwoTimeDenoiser(law, rtol=1e-7, atol=1e-7)
    n = 3000
    x0 = torch.randn(n, 1, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    out = FlowMapSampler(2, gamma=gamma)(two, flow, x0, return_trajectory=True, generator=torch.Generator().manual_seed(1))
    x1, t1 = out.trajectory[1], float(out.times[1])
    a, b = 1 - t1, t1
    assert total_variation(out.tokens, law) < 0.03  # MC noise ≈ 0.01
    assert float(x1.square().sum(-1).mean()) == pytest.approx(b * b + 3 * a * a, abs=0.05)
    torch.testing.assert_close(x1.mean(0)[0], b * law.marginals[0], rtol=0, atol=0.05)


def test_non_finite_targets_raise_instead_of_becoming_uniform():
    """Audit defect 2: a NaN target row is an error, not a uniform distribution."""
    from flowlm.flowmaps import LagrangianDistiller
    from flowlm.flowmaps.distiller import Target

    flow = Flow.identity(Linear(), 3)

    class Broken(LagrangianDistiller):
        def target(self, flow_map, x, rows):
            return Target(probs=torch.full((x.shape[0], x.shape[1], 3), math.nan))

    student = TwoTimeMLP(3, 2, flow, hidden=8, depth=1)
    with pytest.raises(RuntimeError, match="NaN"):
        Broken(flow).loss(student, torch.zeros(8, 2, dtype=torch.long), generator=torch.Generator().manual_seed(0))

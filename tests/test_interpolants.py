"""Interpolants: endpoints, validation, autograd derivatives, velocity/flow-map conversions.

Oracles are closed forms written out here (not calls into the code under test), in float64.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchdiffeq import odeint

from flowlm.interpolants import Cosine, FunctionInterpolant, Interpolant, Linear

F64 = torch.float64
HALF_PI = 0.5 * math.pi


def quadratic() -> FunctionInterpolant:
    """α = 1 − t², β = 1 − (1 − t)²: a valid custom interpolant."""
    return Interpolant.from_functions(lambda t: 1 - t**2, lambda t: 1 - (1 - t) ** 2, name="quadratic")


INTERPOLANTS = {"linear": Linear, "cosine": Cosine, "quadratic": quadratic}

# closed forms: (α, β, α', β', ρ, ρ')
CLOSED = {
    "linear": (
        lambda t: 1 - t, lambda t: t, lambda t: -torch.ones_like(t), lambda t: torch.ones_like(t),
        lambda t: t / (1 - t), lambda t: 1 / (1 - t) ** 2,
    ),
    "cosine": (
        lambda t: torch.cos(HALF_PI * t), lambda t: torch.sin(HALF_PI * t),
        lambda t: -HALF_PI * torch.sin(HALF_PI * t), lambda t: HALF_PI * torch.cos(HALF_PI * t),
        lambda t: torch.tan(HALF_PI * t), lambda t: HALF_PI / torch.cos(HALF_PI * t) ** 2,
    ),
    "quadratic": (
        lambda t: 1 - t**2, lambda t: 1 - (1 - t) ** 2, lambda t: -2 * t, lambda t: 2 * (1 - t),
        lambda t: (2 * t - t**2) / (1 - t**2), lambda t: 2 * (1 - t + t**2) / (1 - t**2) ** 2,
    ),
}

names = st.sampled_from(sorted(INTERPOLANTS))
times = st.floats(0.0, 0.999, allow_nan=False)


def times_tensor(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# ---------------------------------------------------------------------------------- endpoints
@pytest.mark.parametrize("name", sorted(INTERPOLANTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_endpoints(name: str, dtype: torch.dtype) -> None:
    interp = INTERPOLANTS[name]()
    t = torch.tensor([0.0, 1.0], dtype=dtype)
    a, b = interp.alpha(t), interp.beta(t)
    assert a.dtype == dtype and b.dtype == dtype
    assert a.tolist() == [1.0, 0.0] and b.tolist() == [0.0, 1.0]
    assert float(interp.rho(t[:1])) == 0.0
    assert math.isinf(float(interp.rho(t[1:])))


@pytest.mark.parametrize("name", sorted(INTERPOLANTS))
def test_monotone_and_positive(name: str) -> None:
    interp = INTERPOLANTS[name]()
    t = torch.linspace(0, 1, 1001, dtype=F64)
    assert bool((interp.alpha(t).diff() < 0).all()) and bool((interp.beta(t).diff() > 0).all())
    assert bool((interp.alpha(t[:-1]) > 0).all())


def test_flow_noisy_is_the_affine_combination() -> None:
    """``Flow.noisy`` (the one place x_t is built) returns x_t = α(t)·x0 + β(t)·x1 with its x0, x1 and times."""
    from flowlm import Flow

    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 5, (3, 4), generator=g)
    t = times_tensor([0.0, 0.3, 1.0])
    path = Flow.identity(Cosine(), 5).noisy(tokens, t=t, generator=g, dtype=F64)
    x1 = torch.nn.functional.one_hot(tokens, 5).to(F64)
    torch.testing.assert_close(path.x1, x1)
    a, b = CLOSED["cosine"][0](t), CLOSED["cosine"][1](t)
    torch.testing.assert_close(path.xt, a[:, None, None] * path.x0 + b[:, None, None] * x1, rtol=0, atol=1e-15)
    torch.testing.assert_close(path.xt[0], path.x0[0], rtol=0, atol=0)  # t = 0 is pure noise
    torch.testing.assert_close(path.xt[2], x1[2], rtol=0, atol=1e-16)  # t = 1 is data
    torch.testing.assert_close(path.tau, t)  # identity schedule
    # per-token times [B, L] broadcast the same way
    tt = torch.rand(3, 4, dtype=F64, generator=g)
    p2 = Flow.decoding_error(Linear(), 5).noisy(tokens, t=tt, generator=g, dtype=F64)
    torch.testing.assert_close(p2.xt, (1 - tt)[..., None] * p2.x0 + tt[..., None] * x1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Flow.identity(Linear(), 5).noisy(tokens, t=times_tensor([0.0, 0.5, 1.2]))
    with pytest.raises(ValueError, match="exactly one"):
        Flow.identity(Linear(), 5).noisy(tokens)
    with pytest.raises(ValueError, match="does not know its vocabulary"):
        Flow.identity(Linear()).noisy(tokens, t=t)
    with pytest.raises(ValueError, match="built for the interpolant"):
        from flowlm.interpolants import DecodingErrorSchedule

        Flow(Cosine(), DecodingErrorSchedule(5, Linear()))


# ---------------------------------------------------------------------------------- validation of custom interpolants
@pytest.mark.parametrize(
    "alpha, beta, message",
    [
        (lambda t: 0.5 * (1 - t), lambda t: t, r"alpha\(0\) = 0\.5.*must be 1"),
        (lambda t: 1 - t, lambda t: 0.9 * t, r"beta\(1\) = 0\.9.*must be 1"),
        (lambda t: 1 - t + 0 * t, lambda t: 0.1 + 0.9 * t, r"beta\(0\)"),
        (lambda t: 1 - t, lambda t: t + 0.3 * torch.sin(2 * math.pi * t), r"beta must be non-decreasing"),
        (lambda t: (1 - t) * (1 + 0.9 * torch.sin(3 * math.pi * t)), lambda t: t, r"alpha must be non-increasing"),
        (lambda t: (1 - t).sum(), lambda t: t, r"must return the shape of t"),
        (lambda t: 1 - t, lambda t: t[:-1], r"must return the shape of t"),
        (lambda t: (1 - t) * torch.sqrt(t - 0.5), lambda t: t, r"not finite"),
        (lambda t: 1.0, lambda t: t, r"must return tensors|torch functions"),
        (lambda t: 1 - t.numpy().sum(), lambda t: t, r"torch functions"),
    ],
    ids=["alpha0", "beta1", "beta0", "beta-non-monotone", "alpha-non-monotone", "scalar", "short", "nan",
         "float", "not-torch"],
)
def test_custom_validation_errors(alpha, beta, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Interpolant.from_functions(alpha, beta)


def test_custom_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match="callables"):
        Interpolant.from_functions(1.0, lambda t: t)  # type: ignore[arg-type]


def test_alpha_must_stay_positive_before_one() -> None:
    # reaches 0 at t = 0.5 and stays there: monotone, right endpoints, but ρ would be infinite early
    with pytest.raises(ValueError, match=r"alpha must be > 0"):
        Interpolant.from_functions(lambda t: torch.clamp(1 - 2 * t, min=0.0), lambda t: t)


# ---------------------------------------------------------------------------------- autograd derivatives vs closed form
@given(name=names, values=st.lists(times, min_size=1, max_size=8))
def test_derivatives_match_closed_form(name: str, values: list[float]) -> None:
    interp = INTERPOLANTS[name]()
    a, b, da, db, rho, drho = CLOSED[name]
    t = times_tensor(values)
    torch.testing.assert_close(interp.alpha(t), a(t), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(interp.beta(t), b(t), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(interp.alpha_dot(t), da(t), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(interp.beta_dot(t), db(t), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(interp.rho(t), rho(t), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(interp.rho_dot(t), drho(t), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(interp.alpha_rho_dot(t), a(t) * drho(t), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(), (5,), (2, 3), (2, 1, 4)])
def test_derivatives_keep_shape(shape: tuple[int, ...]) -> None:
    t = torch.rand(shape, dtype=F64) * 0.9
    for interp in (Linear(), Cosine(), quadratic()):
        for f in (interp.alpha_dot, interp.beta_dot, interp.rho_dot, interp.alpha_rho_dot):
            assert f(t).shape == t.shape


# ---------------------------------------------------------------------------------- velocity <-> denoiser
def random_state(seed: int, B: int = 3, L: int = 4, V: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, V, dtype=F64, generator=g)
    d = torch.softmax(torch.randn(B, L, V, dtype=F64, generator=g), dim=-1)
    return x, d


@given(name=names, values=st.lists(st.floats(0.0, 0.99), min_size=3, max_size=3), seed=st.integers(0, 1000))
def test_velocity_denoiser_round_trip(name: str, values: list[float], seed: int) -> None:
    interp = INTERPOLANTS[name]()
    a, b, da, db, _, _ = CLOSED[name]
    x, d = random_state(seed)
    t = times_tensor(values)
    v = interp.velocity_from_denoiser(x, t, d)
    # independent form: b = E[α'x0 + β'x1 | x] with x0 = (x − β D)/α
    aa, bb, dda, ddb = (f(t)[:, None, None] for f in (a, b, da, db))
    torch.testing.assert_close(v, dda * (x - bb * d) / aa + ddb * d, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(interp.denoiser_from_velocity(x, t, v), d, rtol=1e-9, atol=1e-10)


def test_linear_velocity_closed_form() -> None:
    x, d = random_state(1)
    t = times_tensor([0.0, 0.5, 0.9])
    v = Linear().velocity_from_denoiser(x, t, d)
    torch.testing.assert_close(v, (d - x) / (1 - t)[:, None, None], rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------------- flow map <-> two-time denoiser
pairs = st.tuples(st.floats(0.0, 0.98), st.floats(0.0, 1.0)).map(sorted).filter(lambda p: p[1] - p[0] > 1e-3)


@given(name=names, pair=pairs, seed=st.integers(0, 1000))
def test_flow_map_delta_round_trip(name: str, pair: list[float], seed: int) -> None:
    interp = INTERPOLANTS[name]()
    x, d = random_state(seed, B=1)
    s, t = times_tensor(pair[:1]), times_tensor(pair[1:])
    flow = interp.flow_map_from_delta(x, s, t, d)
    torch.testing.assert_close(interp.delta_from_flow_map(x, s, t, flow), d, rtol=1e-8, atol=1e-9)
    # X = (α_t/α_s) x + α_t(ρ_t − ρ_s) δ  (written with closed forms; t < 1 here)
    a, _, _, _, rho, _ = CLOSED[name]
    if pair[1] < 1.0:
        want = (a(t) / a(s)) * x + a(t) * (rho(t) - rho(s)) * d
        torch.testing.assert_close(flow, want, rtol=1e-10, atol=1e-10)


@given(name=names, s=st.floats(0.0, 0.99))
def test_flow_map_coefficients_identity_and_endpoint(name: str, s: float) -> None:
    interp = INTERPOLANTS[name]()
    ss = times_tensor([s])
    c_x, c_d = interp.flow_map_coefficients(ss, ss)  # X_{s,s} = id
    assert float(c_x) == 1.0 and float(c_d) == 0.0
    x, d = random_state(0, B=1)
    torch.testing.assert_close(interp.flow_map_from_delta(x, ss, ss, d), x, rtol=0, atol=0)
    c_x, c_d = interp.flow_map_coefficients(ss, times_tensor([1.0]))  # finite at t = 1: X_{s,1} = δ
    assert torch.isfinite(c_x).all() and torch.isfinite(c_d).all()
    assert abs(float(c_x)) < 1e-15 and abs(float(c_d) - 1.0) < 1e-12


def test_linear_flow_map_coefficients_closed_form() -> None:
    s, t = times_tensor([0.0, 0.2, 0.5, 0.5]), times_tensor([1.0, 0.7, 0.5, 0.9])
    c_x, c_d = Linear().flow_map_coefficients(s, t)
    torch.testing.assert_close(c_x, (1 - t) / (1 - s), rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(c_d, (t - s) / (1 - s), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", sorted(INTERPOLANTS))
def test_flow_map_matches_ode_for_a_point_mass(name: str) -> None:
    """Data = a single token e_k ⇒ D ≡ e_k and δ_{s,t} ≡ e_k: X_{s,t} from the formula equals the ODE solution."""
    interp = INTERPOLANTS[name]()
    V, k = 5, 2
    e = torch.zeros(1, 1, V, dtype=F64)
    e[..., k] = 1.0
    x_s = torch.randn(1, 1, V, dtype=F64, generator=torch.Generator().manual_seed(3))
    s, t_end = 0.1, 0.95

    def field(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return interp.velocity_from_denoiser(x, u.reshape(1), e)

    ts = torch.tensor([s, 0.5, t_end], dtype=F64)
    sol = odeint(field, x_s, ts, method="dopri5", rtol=1e-9, atol=1e-10)
    for i in (1, 2):
        got = interp.flow_map_from_delta(x_s, ts[:1], ts[i : i + 1], e)
        torch.testing.assert_close(got, sol[i], rtol=1e-7, atol=1e-7)


# ---------------------------------------------------------------------------------- semigroup weight
triples = (
    st.tuples(st.floats(0.0, 0.97), st.floats(0.0, 1.0), st.floats(0.0, 0.99))
    .map(lambda v: (min(v), sorted(v)[1], max(v)))
    .filter(lambda v: v[2] - v[0] > 1e-3 and v[1] < 0.99)
)


@given(name=names, triple=triples)
def test_semigroup_weight_formula(name: str, triple: tuple[float, float, float]) -> None:
    interp = INTERPOLANTS[name]()
    rho = CLOSED[name][4]
    s, u, t = (times_tensor([v]) for v in triple)
    w = interp.semigroup_weight(s, u, t)
    want = (rho(u) - rho(s)) / (rho(t) - rho(s))
    torch.testing.assert_close(w, want, rtol=1e-9, atol=1e-12)
    assert 0.0 <= float(w) <= 1.0 + 1e-12


@given(name=names, s=st.floats(0.0, 0.9), u=st.floats(0.0, 1.0))
def test_semigroup_weight_limits(name: str, s: float, u: float) -> None:
    interp = INTERPOLANTS[name]()
    ss, tt = times_tensor([s]), times_tensor([1.0])
    uu = times_tensor([s + u * (0.95 - s)])
    assert float(interp.semigroup_weight(ss, uu, tt)) == 0.0  # t = 1: the whole jump is the second leg
    assert float(interp.semigroup_weight(ss, ss, times_tensor([0.97]))) == 0.0  # u = s
    # u → s: w → 0 linearly
    eps = torch.tensor([1e-3, 1e-5, 1e-7], dtype=F64)
    w = interp.semigroup_weight(ss.expand(3), ss + eps, times_tensor([0.97] * 3))
    assert bool((w.diff() < 0).all()) and float(w[-1]) < 1e-5


def test_linear_semigroup_weight_closed_form() -> None:
    s, u, t = times_tensor([0.0, 0.1, 0.3]), times_tensor([0.5, 0.2, 0.6]), times_tensor([0.9, 0.8, 0.95])
    w = Linear().semigroup_weight(s, u, t)
    torch.testing.assert_close(w, (1 - t) * (u - s) / ((1 - u) * (t - s)), rtol=1e-14, atol=1e-15)


def test_time_checks_pass_good_times_and_name_each_problem():
    from flowlm._checks import check_unit_interval

    check_unit_interval("t", torch.tensor([0.0, 0.5, 1.0]))
    check_unit_interval("t", torch.empty(0))
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="t contains NaN or inf"):
            check_unit_interval("t", torch.tensor([0.5, bad]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\].*\[-0.5, 0.5\]"):
        check_unit_interval("t", torch.tensor([-0.5, 0.5]))
    with pytest.raises(TypeError, match="floating-point"):
        check_unit_interval("t", torch.tensor([0, 1]))

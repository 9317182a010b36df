"""Time schedules: decoding-error τ(t) against independent references, its inverse, grids, strata.

Independent references for q(t) = ∫ φ(z) Φ(z + ρ)^{V−1} dz (the library integrates a different
formula, E_M[Φ(ρ − M)] with a Gauss rule for the max M):
* scipy ``quad`` of the original z-integrand with break points at the step (float64, ~1e-14),
* mpmath ``quad`` at 30 digits for a few points,
* the closed form for V = 2: τ = 2Φ(ρ/√2) − 1 = erf(ρ/2).
"""

from __future__ import annotations

import functools
import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate
from scipy.special import erf, log_ndtr, ndtri

from flowlm.interpolants import (
    Cosine,
    DecodingErrorSchedule,
    IdentitySchedule,
    Interpolant,
    Linear,
    MixtureSchedule,
    stratified_uniform,
)
from flowlm.interpolants.decoding_error import max_of_normals_rule

F64 = torch.float64
VOCABS = [2, 3, 5, 10, 100, 1000, 30522, 50257, 10**6]


@functools.lru_cache(maxsize=None)
def schedule(vocab_size: int, interpolant: str = "linear") -> DecodingErrorSchedule:
    interp = {"linear": Linear, "cosine": Cosine}[interpolant]()
    return DecodingErrorSchedule(vocab_size, interp)


def ref_tau_quad(vocab_size: int, rho: float) -> float:
    """τ from scipy quad of φ(z)Φ(z+ρ)^{V−1} (log space), split at the step of Φ^{V−1}."""
    if math.isinf(rho):
        return 1.0
    n = vocab_size - 1

    def f(z: float) -> float:
        return math.exp(-0.5 * z * z - 0.5 * math.log(2 * math.pi) + n * float(log_ndtr(z + rho)))

    step = float(ndtri(1.0 - 1.0 / n)) - rho if n > 1 else -rho
    pts = sorted({p for p in (step - 2, step - 1, step, step + 1, step + 2, 0.0) if -12 < p < 12})
    q, _ = integrate.quad(f, -12.0, 12.0, points=pts, epsabs=1e-15, epsrel=1e-13, limit=400)
    return (vocab_size * q - 1.0) / (vocab_size - 1)


def ref_tau_mpmath(vocab_size: int, rho: float) -> float:
    mpmath.mp.dps = 30
    n = vocab_size - 1
    step = float(ndtri(1.0 - 1.0 / n)) - rho if n > 1 else -rho
    pts = sorted({-40.0, 0.0, 40.0, *(min(max(step + d, -39.0), 39.0) for d in (-3, -1, -0.5, 0, 0.5, 1, 3))})
    q = mpmath.quad(lambda z: mpmath.npdf(z) * mpmath.ncdf(z + rho) ** n, pts)
    return float((vocab_size * q - 1) / (vocab_size - 1))


def linear_rho(t: float) -> float:
    return math.inf if t >= 1.0 else t / (1.0 - t)


# ---------------------------------------------------------------------------------- τ(t) accuracy
@given(V=st.sampled_from(VOCABS), t=st.floats(0.0, 1.0))
def test_tau_matches_quad_reference(V: int, t: float) -> None:
    got = float(schedule(V).tau_of_t(torch.tensor(t, dtype=F64)))
    assert abs(got - ref_tau_quad(V, linear_rho(t))) < 1e-9  # spec: 1e-6


@pytest.mark.parametrize("V", VOCABS)
def test_tau_matches_quad_reference_across_the_window(V: int) -> None:
    """Dense t grid through the whole rise of τ (the hard part for large V)."""
    t = np.linspace(0.0, 0.999, 41)
    got = schedule(V).tau_of_t(torch.from_numpy(t)).numpy()
    want = np.array([ref_tau_quad(V, linear_rho(v)) for v in t])
    assert np.abs(got - want).max() < 1e-9
    assert want.max() > 0.99  # the grid does cover the rise


@pytest.mark.parametrize("V, t", [(2, 0.4), (3, 0.6), (30522, 0.7), (30522, 0.8), (10**6, 0.78), (10**6, 0.9)])
def test_tau_matches_mpmath(V: int, t: float) -> None:
    got = float(schedule(V).tau_of_t(torch.tensor(t, dtype=F64)))
    assert abs(got - ref_tau_mpmath(V, linear_rho(t))) < 1e-12


def test_tau_closed_form_for_two_tokens() -> None:
    t = np.linspace(0.0, 0.999, 2001)
    rho = t / (1 - t)
    got = schedule(2).tau_of_t(torch.from_numpy(t)).numpy()
    np.testing.assert_allclose(got, erf(rho / 2), rtol=0, atol=1e-13)


@given(V=st.sampled_from(VOCABS), t=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=16))
def test_tau_depends_only_on_snr(V: int, t: list[float]) -> None:
    """Cosine has ρ = tan(πt/2); Linear reaches the same ρ at t' = ρ/(1 + ρ)."""
    tc = torch.tensor(t, dtype=F64)
    rho = torch.tan(0.5 * math.pi * tc)
    t_lin = torch.where(tc >= 1, torch.ones_like(tc), torch.sin(0.5 * math.pi * tc) / (torch.sin(0.5 * math.pi * tc) + torch.cos(0.5 * math.pi * tc)))
    assert torch.allclose(t_lin[tc < 1], (rho / (1 + rho))[tc < 1], rtol=1e-12, atol=1e-14)
    got = schedule(V, "cosine").tau_of_t(tc)
    torch.testing.assert_close(got, schedule(V).tau_of_t(t_lin), rtol=0, atol=1e-12)


def test_spec_sanity_value() -> None:
    """DESIGN.md: Linear, V = 30522: τ = 0.01..0.99 ↔ t ≈ 0.63..0.87."""
    t = schedule(30522).t_of_tau(torch.tensor([0.01, 0.99], dtype=F64))
    assert abs(float(t[0]) - 0.63) < 0.01 and abs(float(t[1]) - 0.87) < 0.01


# ---------------------------------------------------------------------------------- the quadrature rule
@pytest.mark.parametrize(
    "V, mean", [(2, 0.0), (3, 1 / math.sqrt(math.pi)), (4, 1.5 / math.sqrt(math.pi))]
)
def test_max_rule_moments(V: int, mean: float) -> None:
    """E[max of n normals]: 0, 1/√π, 3/(2√π) for n = 1, 2, 3; E[M²] = 1 for n = 1, 2."""
    m, w = max_of_normals_rule(V, 16)
    assert bool((w > 0).all()) and abs(float(w.sum()) - 1.0) < 1e-13
    assert abs(float((w * m).sum()) - mean) < 1e-12
    if V <= 3:
        assert abs(float((w * m * m).sum()) - 1.0) < 1e-12


# ---------------------------------------------------------------------------------- endpoints, monotonicity, shapes, dtypes
@pytest.mark.parametrize("V", [2, 30522, 10**6])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_endpoints_exact(V: int, dtype: torch.dtype) -> None:
    for interp in ("linear", "cosine"):
        sched = schedule(V, interp)
        ends = torch.tensor([0.0, 1.0], dtype=dtype)
        assert sched.tau_of_t(ends).tolist() == [0.0, 1.0]
        assert sched.t_of_tau(ends).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("V", VOCABS)
def test_monotone(V: int) -> None:
    sched = schedule(V)
    t = torch.linspace(0, 1, 20001, dtype=F64)
    tau = sched.tau_of_t(t)
    assert bool((tau.diff() >= 0).all())
    rising = (tau[:-1] > 1e-12) & (tau[1:] < 1 - 1e-12)
    assert bool((tau.diff()[rising] > 0).all())
    grid = torch.linspace(0, 1, 100_001, dtype=F64)  # spacing 1e-5
    assert bool((sched.t_of_tau(grid).diff() > 0).all())


shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


@given(shape=shapes, dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 100))
def test_same_shape_and_dtype_out(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=F64).to(dtype)
    for sched in (schedule(30522), IdentitySchedule(), MixtureSchedule(schedule(100), 0.5)):
        for f in (sched.tau_of_t, sched.t_of_tau, sched.dtau_dt):
            y = f(x)
            assert y.shape == x.shape and y.dtype == dtype and y.device == x.device


def test_float32_is_the_float64_value_rounded() -> None:
    sched = schedule(30522)
    t = torch.linspace(0, 1, 1001, dtype=torch.float32)
    torch.testing.assert_close(sched.tau_of_t(t), sched.tau_of_t(t.double()).float(), rtol=0, atol=0)
    tau = torch.linspace(0, 1, 1001, dtype=torch.float32)
    torch.testing.assert_close(sched.t_of_tau(tau), sched.t_of_tau(tau.double()).float(), rtol=0, atol=0)


# ---------------------------------------------------------------------------------- inverse
def hard_taus(n_random: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    near = torch.logspace(-15, -1, 141, dtype=F64)
    return torch.cat([torch.rand(n_random, generator=g, dtype=F64), near, 1 - near, torch.tensor([0.0, 1.0], dtype=F64)])


@pytest.mark.parametrize("V", VOCABS)
def test_round_trip(V: int) -> None:
    sched = schedule(V)
    tau = hard_taus(100_000, seed=V)  # 10^5 values in one batch
    err = (sched.tau_of_t(sched.t_of_tau(tau)) - tau).abs().max()
    assert float(err) < 1e-9  # spec: 1e-6
    err_newton = (sched.tau_of_t(sched.t_of_tau(tau[:2000], newton_steps=1)) - tau[:2000]).abs().max()
    assert float(err_newton) < 1e-13


@given(V=st.sampled_from(VOCABS), tau=st.floats(0.0, 1.0))
def test_round_trip_against_reference(V: int, tau: float) -> None:
    """τ_ref(t(τ)) = τ with the independent quadrature (not the library's own τ)."""
    t = float(schedule(V).t_of_tau(torch.tensor(tau, dtype=F64)))
    assert abs(ref_tau_quad(V, linear_rho(t)) - tau) < 1e-9


@pytest.mark.parametrize("V", [2, 30522, 10**6])
def test_round_trip_float32(V: int) -> None:
    """float32 in and out: the error is the float32 rounding of t times the slope, plus the table's."""
    sched = schedule(V)
    tau = hard_taus(20_000, seed=1).float()
    t = sched.t_of_tau(tau)
    assert t.dtype == torch.float32
    back = sched.tau_of_t(t.double())
    slope = sched.dtau_dt(t.double())
    bound = 1e-9 + slope * t.double().abs() * 2.0**-23 + tau.double().abs() * 2.0**-24
    assert bool(((back - tau.double()).abs() <= bound).all())


@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (2, 3, 4)])
def test_inverse_batch_shapes(shape: tuple[int, ...]) -> None:
    sched = schedule(1000)
    tau = torch.rand(shape, dtype=F64)
    t = sched.t_of_tau(tau)
    assert t.shape == tau.shape
    torch.testing.assert_close(sched.tau_of_t(t), tau, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------- derivative
def test_dtau_dt_closed_form_two_tokens() -> None:
    """V = 2, Linear: τ = erf(ρ/2) ⇒ dτ/dt = exp(−ρ²/4)/√π · 1/(1 − t)²."""
    t = torch.linspace(0, 0.99, 199, dtype=F64)
    rho = t / (1 - t)
    want = torch.exp(-rho**2 / 4) / math.sqrt(math.pi) / (1 - t) ** 2
    torch.testing.assert_close(schedule(2).dtau_dt(t), want, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("V", [100, 30522, 10**6])
def test_dtau_dt_matches_reference_differences(V: int) -> None:
    sched = schedule(V)
    h = 1e-5
    for t in (0.3, 0.6, 0.7, 0.8, 0.9):
        fd = (ref_tau_quad(V, linear_rho(t + h)) - ref_tau_quad(V, linear_rho(t - h))) / (2 * h)
        got = float(sched.dtau_dt(torch.tensor(t, dtype=F64)))
        assert abs(got - fd) <= 1e-6 * max(1.0, abs(fd))


def test_dtau_dt_autograd_paths_agree() -> None:
    sched = schedule(30522)
    t = torch.tensor([0.0, 0.5, 0.7, 0.75, 0.8, 0.95, 1.0], dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(sched.tau_of_t(t).sum(), t)
    d = sched.dtau_dt(t.detach())
    assert torch.isfinite(grad).all() and torch.isfinite(d).all()
    torch.testing.assert_close(grad, d, rtol=1e-12, atol=0)
    assert float(d[-1]) == 0.0 and float(d[0]) > 0.0
    vm = torch.func.vmap(torch.func.grad(sched.tau_of_t))(t.detach())  # inside a transform: no host sync
    torch.testing.assert_close(vm, d, rtol=1e-12, atol=0)
    # float32 network time: autograd still flows
    t32 = torch.tensor([0.7, 0.8], requires_grad=True)
    (g32,) = torch.autograd.grad(sched.tau_of_t(t32).sum(), t32)
    assert g32.dtype == torch.float32 and bool((g32 > 0).all())


# ---------------------------------------------------------------------------------- grid and strata
@pytest.mark.parametrize("n", [1, 2, 7, 64, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grid(n: int, dtype: torch.dtype) -> None:
    for sched in (schedule(30522), schedule(2, "cosine"), IdentitySchedule(), MixtureSchedule(schedule(1000), 0.7)):
        g = sched.grid(n, dtype=dtype)
        assert g.shape == (n + 1,) and g.dtype == dtype
        assert float(g[0]) == 0.0 and float(g[-1]) == 1.0
        assert bool((g.diff() > 0).all())
        # uniform in τ
        torch.testing.assert_close(sched.tau_of_t(g.double()), torch.linspace(0, 1, n + 1, dtype=F64), rtol=0,
                                   atol=1e-6 if dtype == torch.float32 else 1e-9)


def test_grid_rejects_bad_sizes() -> None:
    for bad in (0, -3, 2.5):
        with pytest.raises((ValueError, TypeError), match="n_steps"):  # TypeError: the jaxtyping hook
            IdentitySchedule().grid(bad)  # type: ignore[arg-type]


@given(batch=st.integers(1, 600), seed=st.integers(0, 10_000), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_stratified_uniform_one_per_stratum(batch: int, seed: int, dtype: torch.dtype) -> None:
    u = stratified_uniform(batch, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    assert u.shape == (batch,) and u.dtype == dtype
    assert bool(((u >= 0) & (u <= 1)).all())
    strata = torch.sort(torch.floor(u.double() * batch).clamp(max=batch - 1)).values
    assert strata.tolist() == list(range(batch))


def test_stratified_uniform_is_shuffled_and_reproducible() -> None:
    a = stratified_uniform(256, generator=torch.Generator().manual_seed(0))
    b = stratified_uniform(256, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert not bool((a.diff() > 0).all())  # not returned in stratum order
    with pytest.raises(ValueError, match="batch"):
        stratified_uniform(0)


# ---------------------------------------------------------------------------------- mixture
@given(w=st.floats(0.0, 1.0), tau=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_mixture(w: float, tau: list[float]) -> None:
    base = schedule(1000)
    mix = MixtureSchedule(base, w)
    t = torch.linspace(0, 1, 11, dtype=F64)
    torch.testing.assert_close(mix.tau_of_t(t), w * base.tau_of_t(t) + (1 - w) * t, rtol=0, atol=1e-15)
    x = torch.tensor(tau, dtype=F64)
    torch.testing.assert_close(mix.tau_of_t(mix.t_of_tau(x)), x, rtol=0, atol=1e-9)


def test_identity() -> None:
    x = torch.rand(4, 3, dtype=F64)
    for f in (IdentitySchedule().tau_of_t, IdentitySchedule().t_of_tau):
        y = f(x)
        assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()
    torch.testing.assert_close(IdentitySchedule().dtau_dt(x), torch.ones_like(x))


# ---------------------------------------------------------------------------------- bad input
ALL = [schedule(30522), IdentitySchedule(), MixtureSchedule(schedule(100), 0.5)]


@pytest.mark.parametrize("sched", ALL, ids=repr)
@pytest.mark.parametrize("method", ["tau_of_t", "t_of_tau", "dtau_dt"])
def test_bad_inputs(sched, method: str) -> None:
    f = getattr(sched, method)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        f(torch.tensor([0.5, 1.5], dtype=F64))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        f(torch.tensor([-1e-3], dtype=torch.float32))
    with pytest.raises(ValueError, match="NaN"):
        f(torch.tensor([0.2, float("nan")], dtype=F64))
    with pytest.raises(TypeError):  # the jaxtyping hook or check_unit_interval: both are TypeErrors
        f(0.5)
    with pytest.raises(TypeError):
        f(torch.tensor([0, 1]))  # integer tensor


def test_bad_constructor_arguments() -> None:
    for bad in (1, 0, 2.5, True):
        with pytest.raises((ValueError, TypeError), match="vocab_size"):  # TypeError: the jaxtyping hook
            DecodingErrorSchedule(bad, Linear())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Interpolant"):
        DecodingErrorSchedule(10, "linear")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_nodes"):
        DecodingErrorSchedule(10, Linear(), n_nodes=1)
    with pytest.raises(ValueError, match="table_size"):
        DecodingErrorSchedule(10, Linear(), table_size=4)
    with pytest.raises(ValueError, match="weight"):
        MixtureSchedule(IdentitySchedule(), 1.5)
    with pytest.raises(ValueError, match="newton_steps"):
        schedule(10).t_of_tau(torch.tensor([0.5], dtype=F64), newton_steps=-1)


def test_custom_interpolant_schedule() -> None:
    """Any valid interpolant works; τ still depends only on ρ."""
    quad = Interpolant.from_functions(lambda t: 1 - t**2, lambda t: 1 - (1 - t) ** 2)
    sched = DecodingErrorSchedule(500, quad)
    t = torch.linspace(0, 0.99, 50, dtype=F64)
    rho = (2 * t - t**2) / (1 - t**2)
    torch.testing.assert_close(sched.tau_of_t(t), schedule(500).tau_of_t(rho / (1 + rho)), rtol=0, atol=1e-12)
    tau = hard_taus(1000)
    torch.testing.assert_close(sched.tau_of_t(sched.t_of_tau(tau)), tau, rtol=0, atol=1e-9)

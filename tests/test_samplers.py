"""FLM samplers against the exact flow map of closed-form oracles (float64)."""

import math

import numpy as np
import pytest
import torch

from flowlm import Flow
from flowlm.denoisers import Denoiser
from flowlm.interpolants import Cosine, DecodingErrorSchedule, IdentitySchedule, Interpolant, Linear, nu_of_t, t_of_nu
from flowlm.oracles import ExactFlowMap, ExactTwoTimeDenoiser, FactorizedCategorical, FiniteSequences
from flowlm.samplers import EulerSampler, HeunSampler, SamplerOutput, TorchdiffeqSampler, argmax_decode
from flowlm.flowmaps import FlowMapSampler
from flowlm.states import OneHotSpace

F64 = torch.float64


class Counting(Denoiser):
    """A denoiser wrapper that counts evaluations (the NFE oracle)."""

    def __init__(self, den):
        self.den, self.vocab_size, self.interpolant, self.calls = den, den.vocab_size, den.interpolant, 0

    def logits(self, x, t, *, tau=None):
        self.calls += 1
        return self.den(x, t)


def flow_of(interp, schedule=None, V=4):
    return Flow(interp, schedule if schedule is not None else IdentitySchedule(), V)


def factorized(seed=0, L=3, V=4, interp=None):
    gen = torch.Generator().manual_seed(seed)
    p = torch.softmax(1.5 * torch.randn(L, V, generator=gen, dtype=F64), -1)
    return FactorizedCategorical(p, interp or Linear()), gen


def probs_of(den, x, t):
    return torch.softmax(den(x, torch.full((x.shape[0],), float(t), dtype=x.dtype)), -1)


@pytest.mark.parametrize("name", ["linear", "cosine", "quadratic", "sqrt"])
def test_log_snr_time_inverts(name):
    """t(ν(t)) = t for the closed forms and for the table + secant inversion of custom interpolants."""
    interp = {"linear": Linear(), "cosine": Cosine(),
              "quadratic": Interpolant.from_functions(lambda t: 1 - t**2, lambda t: 1 - (1 - t) ** 2),
              "sqrt": Interpolant.from_functions(lambda t: torch.sqrt(1 - t), lambda t: t)}[name]
    t = torch.cat([torch.linspace(0, 1, 2001, dtype=F64), torch.rand(500, dtype=F64) ** 0.2])
    nu = nu_of_t(interp, t)
    back = t_of_nu(interp, nu)
    assert back.dtype == F64 and back.shape == t.shape
    torch.testing.assert_close(back, t, rtol=0, atol=1e-13)
    assert t_of_nu(interp, torch.tensor([math.inf, 60.0], dtype=F64)).tolist() == pytest.approx([1.0, 1.0])


def test_euler_step_to_one_is_the_denoiser_for_linear():
    """x + (1 − t)·b_t(x) = x + (1 − t)(D − x)/(1 − t) = D: why the last Euler step returns D."""
    den, gen = factorized()
    x = 3 * torch.randn(5, 3, 4, generator=gen, dtype=F64)
    t = torch.rand(5, generator=gen, dtype=F64) * 0.99
    D = torch.softmax(den(x, t), -1)
    step = x + (1 - t)[:, None, None] * Linear().velocity_from_denoiser(x, t, D)
    torch.testing.assert_close(step, D, rtol=0, atol=1e-12)


@pytest.mark.parametrize("schedule", [IdentitySchedule(), DecodingErrorSchedule(4, Linear())], ids=["identity", "decoding"])
def test_euler_sampler_follows_its_grid_and_ends_with_the_denoiser(schedule):
    den, gen = factorized(1)
    x0 = torch.randn(6, 3, 4, generator=gen, dtype=F64)
    N = 5
    out = EulerSampler(N)(den, flow_of(Linear(), schedule), x0, return_trajectory=True)
    assert isinstance(out, SamplerOutput) and out.nfe == N
    grid = schedule.grid(N, dtype=F64)
    torch.testing.assert_close(out.times, grid[:-1])
    assert len(out.trajectory) == N and torch.equal(out.trajectory[0], x0)
    for i in range(N - 1):  # x_{i+1} = x_i + h·(D − x_i)/(1 − t_i) (Linear)
        x, t, h = out.trajectory[i], grid[i], grid[i + 1] - grid[i]
        want = x + h * (probs_of(den, x, t) - x) / (1 - t)
        torch.testing.assert_close(out.trajectory[i + 1], want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.probs, probs_of(den, out.trajectory[-1], grid[-2]))
    assert torch.equal(out.tokens, out.probs.argmax(-1))


def test_one_step_is_the_prior_and_nfe_counts():
    den, gen = factorized(2)
    x0 = torch.randn(3, 3, 4, generator=gen, dtype=F64)
    counted = Counting(den)
    out = EulerSampler(1)(counted, flow_of(Linear()), x0)
    torch.testing.assert_close(out.probs, den.marginals.expand(3, 3, 4))  # D_0 = p, whatever x0
    assert out.nfe == counted.calls == 1
    for N in (2, 7):
        for sampler, nfe in ((EulerSampler(N), N), (HeunSampler(N), 2 * N - 1),
                             (TorchdiffeqSampler("rk4", n_steps=N), 4 * (N - 1) + 1)):
            counted = Counting(factorized(2, interp=Cosine())[0])
            out = sampler(counted, flow_of(Cosine()), x0)
            assert out.nfe == counted.calls == nfe, (sampler, out.nfe, counted.calls)
    counted = Counting(den)
    out = TorchdiffeqSampler("dopri5", rtol=1e-5, atol=1e-5)(counted, flow_of(Linear()), x0)
    assert out.nfe == counted.calls > 6


def convergence_slope(sampler_cls, den, interp, x0, t_end, Ns):
    exact = ExactFlowMap(den, interp, rtol=1e-11, atol=1e-11)(
        x0, torch.zeros(x0.shape[0], dtype=F64), torch.full((x0.shape[0],), t_end, dtype=F64)
    )
    errs = []
    for N in Ns:
        times = torch.linspace(0.0, t_end, N + 1, dtype=F64)
        x, _ = sampler_cls(N).integrate(den, flow_of(interp), times, x0, OneHotSpace(4))
        errs.append(float((x - exact).abs().max()))
    slope = -np.polyfit(np.log(Ns), np.log(errs), 1)[0]
    return slope, errs


@pytest.mark.parametrize(
    "case", ["factorized-linear", "finite-cosine", "factorized-custom"],
)
def test_interior_orders_are_the_declared_ones(case):
    """The integration up to t_{N-1} converges with the declared ``interior_order`` (Euler 1, Heun 2)."""
    interp = {"linear": Linear(), "cosine": Cosine(),
              "custom": Interpolant.from_functions(lambda t: 1 - t**2, lambda t: 1 - (1 - t) ** 2)}[case.split("-")[1]]
    gen = torch.Generator().manual_seed(11)
    if case.startswith("finite"):
        den = FiniteSequences(torch.randint(0, 4, (5, 3), generator=gen), None, 4, interp)
    else:
        den, gen = factorized(3, interp=interp)
    x0 = torch.randn(4, 3, 4, generator=gen, dtype=F64)
    Ns = [12, 24, 48]  # [0, 0.6]: past it the posterior sharpens and the asymptotic regime needs more steps
    p_euler, e_euler = convergence_slope(EulerSampler, den, interp, x0, 0.6, Ns)
    p_heun, e_heun = convergence_slope(HeunSampler, den, interp, x0, 0.6, Ns)
    assert abs(p_euler - EulerSampler.interior_order) < 0.15, (p_euler, e_euler)
    assert abs(p_heun - HeunSampler.interior_order) < 0.25, (p_heun, e_heun)
    assert e_heun[-1] < e_euler[-1] / 10


def test_samplers_approach_the_exact_one_step_map():
    law = FiniteSequences(torch.tensor([[0, 1], [1, 1], [2, 0], [0, 0]]), torch.tensor([0.4, 0.3, 0.2, 0.1]), 3, Linear())
    x0 = torch.randn(64, 2, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    exact = ExactFlowMap(law, rtol=1e-8, atol=1e-8)(x0, torch.zeros(64, dtype=F64), torch.ones(64, dtype=F64))
    flow = flow_of(Linear(), V=3)
    ode = TorchdiffeqSampler("dopri5", rtol=1e-8, atol=1e-8)(law, flow, x0)
    torch.testing.assert_close(ode.probs, exact, rtol=0, atol=1e-6)
    for sampler in (EulerSampler(128), HeunSampler(64)):
        out = sampler(law, flow, x0)
        agree = (out.tokens == exact.argmax(-1)).all(-1).double().mean()
        assert agree >= 0.9, (sampler, agree)
        # whatever the discretization, the samples are sequences of the law
        assert (law.log_prob(out.tokens) > -math.inf).all()


def test_torchdiffeq_sampler_on_the_tau_grid_matches_the_exact_flow():
    den, gen = factorized(4, interp=Cosine())
    x0 = torch.randn(3, 3, 4, generator=gen, dtype=F64)
    schedule = DecodingErrorSchedule(4, Cosine())
    out = TorchdiffeqSampler("dopri8", rtol=1e-10, atol=1e-10, n_steps=4)(
        den, Flow(Cosine(), schedule), x0, return_trajectory=True
    )
    grid = schedule.grid(4, dtype=F64)
    torch.testing.assert_close(out.times, grid[:-1])
    exact = ExactFlowMap(den, Cosine(), rtol=1e-10, atol=1e-10)
    for i in (1, 3):
        want = exact(x0, torch.zeros(3, dtype=F64), grid[i].expand(3))
        torch.testing.assert_close(out.trajectory[i], want, rtol=0, atol=1e-7)


class InvertibleProjection:
    """A projected state space h = x @ E with a square invertible E (so an oracle can read h)."""

    def __init__(self, E):
        self.E, self.vocab_size = E, E.shape[0]

    def one_hot(self, tokens):
        return torch.nn.functional.one_hot(tokens, self.vocab_size).to(self.E) @ self.E

    def embed(self, probs):
        return probs @ self.E

    def noise(self, batch, length, *, device=None, dtype=torch.float32, generator=None):
        return torch.randn(batch, length, self.vocab_size, generator=generator, dtype=dtype) @ self.E.to(dtype)


@pytest.mark.parametrize("sampler", [EulerSampler(6), HeunSampler(6), TorchdiffeqSampler("dopri5", 1e-9, 1e-9, n_steps=6)],
                         ids=["euler", "heun", "dopri5"])
def test_samplers_commute_with_a_projection(sampler):
    den, gen = factorized(6)
    E = torch.randn(4, 4, generator=gen, dtype=F64) + 3 * torch.eye(4, dtype=F64)
    E_inv = torch.linalg.inv(E)

    class ProjectedDen(Denoiser):
        vocab_size, interpolant = 4, Linear()

        def logits(self, h, t, *, tau=None):
            return den(h @ E_inv, t)

    x0 = torch.randn(5, 3, 4, generator=gen, dtype=F64)
    plain = sampler(den, flow_of(Linear()), x0, return_trajectory=True)
    proj = sampler(ProjectedDen(), flow_of(Linear()), x0 @ E, space=InvertibleProjection(E), return_trajectory=True)
    torch.testing.assert_close(proj.probs, plain.probs, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(proj.trajectory[-1], plain.trajectory[-1] @ E, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_states_keep_their_dtype(dtype):
    den, gen = factorized(8)
    x0 = torch.randn(4, 3, 4, generator=gen).to(dtype)
    den = factorized(8, interp=Cosine())[0]
    flow = Flow.decoding_error(Cosine(), 4)
    for sampler in (EulerSampler(64), HeunSampler(32), TorchdiffeqSampler()):
        ref = sampler(den, flow, x0.double())  # the same sampler in float64
        out = sampler(den, flow, x0, return_trajectory=True)
        assert out.probs.dtype == dtype and all(x.dtype == dtype for x in out.trajectory)
        assert out.times.dtype == torch.float32  # a bf16 grid would collapse near t = 1
        assert torch.isfinite(out.probs).all()
        torch.testing.assert_close(out.probs.float().sum(-1), torch.ones(4, 3), rtol=0, atol=1e-2)
        if dtype == torch.float32 and not isinstance(sampler, TorchdiffeqSampler):
            torch.testing.assert_close(out.probs.double(), ref.probs, rtol=0, atol=1e-2)


def test_argmax_decode():
    probs = torch.tensor([[[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]])
    assert argmax_decode(probs).tolist() == [[1, 0]]
    with pytest.raises((ValueError, TypeError)):
        argmax_decode(torch.ones(3))


def test_bad_inputs_raise_clear_errors():
    den, _ = factorized()
    x0 = torch.zeros(2, 3, 4, dtype=F64)
    run = lambda x, **kw: EulerSampler(3)(den, flow_of(Linear()), x, **kw)  # noqa: E731
    with pytest.raises((ValueError, TypeError)):
        run(torch.zeros(3, 4, dtype=F64))
    with pytest.raises(ValueError, match="vocabulary is 4"):
        EulerSampler(3)(den, Flow.identity(Linear()), torch.zeros(2, 3, 5, dtype=F64))
    with pytest.raises(ValueError, match="vocabulary is 4"):
        run(torch.zeros(2, 3, 5, dtype=F64))
    with pytest.raises(ValueError, match="vocabulary 4 but the flow has 5"):
        EulerSampler(3)(den, flow_of(Linear(), V=5), x0)
    with pytest.raises(ValueError, match="NaN"):
        run(torch.full((2, 3, 4), math.nan, dtype=F64))
    with pytest.raises(ValueError, match="state space vocabulary"):
        run(x0, space=InvertibleProjection(torch.eye(5, dtype=F64)))
    with pytest.raises(ValueError, match="positive integer"):
        EulerSampler(0)
    with pytest.raises(ValueError, match="unknown torchdiffeq method"):
        TorchdiffeqSampler("rk45")
    with pytest.raises(ValueError, match="needs n_steps"):
        TorchdiffeqSampler("rk4")
    with pytest.raises(ValueError, match="strictly increasing"):
        HeunSampler(2).integrate(den, flow_of(Linear()), torch.tensor([0.0, 0.5, 0.4], dtype=F64), x0, OneHotSpace(4))
    with pytest.raises(ValueError, match="strictly increasing"):
        EulerSampler(2).integrate(den, flow_of(Linear()), torch.tensor([0.0, 1.0], dtype=F64), x0, OneHotSpace(4))
    # components of another flow, missing arguments, wrong model kinds: clear errors, no fallback
    with pytest.raises(ValueError, match="built for the interpolant"):
        EulerSampler(3)(den, flow_of(Cosine()), x0)
    with pytest.raises(TypeError, match="Flow"):
        EulerSampler(3)(den, Linear(), x0)
    with pytest.raises(TypeError, match="TwoTimeDenoiser"):
        FlowMapSampler(2)(den, flow_of(Linear()), x0)
    with pytest.raises(TypeError, match="Denoiser"):
        EulerSampler(3)(lambda x, t: x, flow_of(Linear()), x0)
    with pytest.raises(TypeError, match="interpolant"):
        FactorizedCategorical(torch.full((3, 4), 0.25, dtype=F64))
    with pytest.raises(TypeError, match="flowlm.Prompt"):
        run(x0, prompt=object())


@pytest.mark.parametrize("interp", [Linear(), Cosine()], ids=["linear", "cosine"])
def test_full_samplers_have_the_declared_order_on_the_tau_grid(interp):
    """DESIGN §1: the whole FLM sampler is first order in the τ step whatever its interior method
    (the final D step dominates); the test reads ``order`` and measures it against the exact X_{0,1}."""
    gen = torch.Generator().manual_seed(3)
    den = FactorizedCategorical(torch.softmax(1.5 * torch.randn(3, 4, generator=gen, dtype=F64), -1), interp)
    flow = Flow.decoding_error(interp, 4)
    x0 = torch.randn(64, 3, 4, generator=gen, dtype=F64)
    exact = ExactFlowMap(den, rtol=1e-11, atol=1e-11)(x0, torch.zeros(64, dtype=F64), torch.ones(64, dtype=F64))
    Ns = [8, 16, 32, 64]
    for sampler_cls in (EulerSampler, HeunSampler):
        errs = [float((sampler_cls(N)(den, flow, x0).probs - exact).abs().mean()) for N in Ns]
        slope = -np.polyfit(np.log(Ns), np.log(errs), 1)[0]
        assert abs(slope - sampler_cls.order) < 0.15, (sampler_cls, slope, errs)
    assert TorchdiffeqSampler("rk4", n_steps=4).order == 1 and TorchdiffeqSampler("rk4", n_steps=4).interior_order == 4
    assert TorchdiffeqSampler().order is None and TorchdiffeqSampler().interior_order is None  # adaptive, to t(ρ_max)


def test_flow_map_sampler_is_exact_for_the_exact_map():
    """``FlowMapSampler.order`` is inf: with the exact δ the N-step result does not depend on N."""
    law = FiniteSequences(torch.tensor([[0, 1], [1, 1], [2, 0]]), torch.tensor([0.5, 0.3, 0.2]), 3, Cosine())
    flow = Flow.decoding_error(Cosine(), 3)
    x0 = torch.randn(16, 2, 3, generator=torch.Generator().manual_seed(9), dtype=F64)
    two = ExactTwoTimeDenoiser(law, rtol=1e-9, atol=1e-9)
    one = FlowMapSampler(1)(two, flow, x0)
    three = FlowMapSampler(3)(two, flow, x0, return_trajectory=True)
    assert FlowMapSampler.order == math.inf and three.nfe == 3 and len(three.trajectory) == 3
    torch.testing.assert_close(three.probs, one.probs, rtol=0, atol=1e-6)
    assert three.times.dtype == torch.float64
    bf = FlowMapSampler(64)(two, flow, x0[:2].to(torch.bfloat16), return_trajectory=True)
    assert bf.times.dtype == torch.float32 and bool((bf.times.diff() > 0).all())  # no duplicate times in bf16

"""The three distillers at the exact oracle, and the mechanics of their losses.

At the exact flow map every target equals the exact two-time denoiser δ and every residual
vanishes (DESIGN §3); a perturbed map gives clearly positive residuals. The exact oracle is
integrated by torchdiffeq, which has no forward-mode rule, so these checks use the
finite-difference JVP backend (its agreement with forward mode is tested in test_flowmaps).
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from torch import nn

from flowlm.flowmaps import (
    DISTILLERS,
    EulerianDistiller,
    ExactJVP,
    FiniteDifferenceJVP,
    LagrangianDistiller,
    SemigroupDistiller,
    TimePairs,
    TimePairSampler,
    residual_report,
)
from flowlm import Flow
from flowlm.denoisers import TwoTimeDenoiser
from flowlm.flowmaps.two_time import FlowMap
from flowlm.interpolants import Cosine, Interpolant, Linear
from flowlm.nets.mlp import MLPDenoiser, TwoTimeMLP
from flowlm.oracles import ExactTwoTimeDenoiser, FactorizedCategorical, FiniteSequences

F64 = torch.float64
FD = FiniteDifferenceJVP(1e-3)


def make_interpolant(name: str) -> Interpolant:
    if name == "linear":
        return Linear()
    if name == "cosine":
        return Cosine()
    return Interpolant.from_functions(lambda t: 1 - t**2, lambda t: t * (2 - t), name="quadratic")


class Perturbed(TwoTimeDenoiser):
    """A perturbed map: the exact δ mixed with the uniform law by ε = 0.3·(t − s) (still on the simplex)."""

    def __init__(self, exact) -> None:
        self.exact, self.vocab_size, self.interpolant = exact, exact.vocab_size, exact.interpolant

    def logits(self, x, s, t, *, tau_s=None, tau_t=None):
        eps = (0.3 * (t - s))[:, None, None]
        return ((1 - eps) * self.exact.probs(x, s, t) + eps / self.vocab_size).log()


def oracle_case(name: str, V: int, L: int, seed: int, finite: bool):
    it = make_interpolant(name)
    g = torch.Generator().manual_seed(seed)
    if finite:  # correlated tokens
        K = 4
        law = FiniteSequences(torch.randint(0, V, (K, L), generator=g), torch.rand(K, dtype=F64, generator=g) + 0.2, V, it)
    else:
        law = FactorizedCategorical(torch.softmax(2 * torch.randn(L, V, dtype=F64, generator=g), -1), it)
    exact = ExactTwoTimeDenoiser(law, it, rtol=1e-8, atol=1e-8)
    return it, law, exact, g


def three(flow, teacher, jvp=FD, **eulerian):
    """The three distillers as the residual checks use them (the paper's Eulerian form, cap policy)."""
    return {
        "semigroup": SemigroupDistiller(flow, teacher=teacher),
        "lagrangian": LagrangianDistiller(flow, teacher=teacher, jvp=jvp),
        "eulerian": EulerianDistiller(flow, teacher=teacher, jvp=jvp, **(eulerian or dict(step=None, boundary="cap"))),
    }


@pytest.mark.parametrize("name", ["linear", "cosine", "quadratic"])
@settings(max_examples=1, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: ODE solves
@given(V=st.integers(2, 4), L=st.integers(1, 3), seed=st.integers(0, 10**6), finite=st.booleans(), data=st.data())
def test_residuals_vanish_at_the_oracle_and_not_for_a_perturbed_map(name, V, L, seed, finite, data):
    """residual = mean Σ_v (δ − δ̄)² over the rows, so ≈ 0 means every target equals the exact δ."""
    it, law, exact, g = oracle_case(name, V, L, seed, finite)
    s = data.draw(st.floats(0.0, 0.6))
    t = data.draw(st.floats(s + 0.05, 0.97))
    S = torch.tensor([0.0, s], dtype=F64)  # a boundary row (0, 1) and a drawn pair
    T = torch.tensor([1.0, t], dtype=F64)
    x = torch.randn(2, L, V, dtype=F64, generator=g)
    flow = Flow.identity(it, V)
    pairs = TimePairs.off(flow, S, T)
    exact_res = residual_report(exact, three(flow, law), x, pairs)
    bad_res = residual_report(Perturbed(exact), three(flow, law), x, pairs)
    for key in ("semigroup", "lagrangian", "eulerian"):
        assert exact_res[key] < 1e-8, (key, exact_res)
        assert bad_res[key] > 1e-5 and bad_res[key] > 100 * exact_res[key], (key, exact_res, bad_res)


@pytest.mark.parametrize("name", ["linear", "cosine", "quadratic"])
def test_each_target_equals_the_exact_delta_at_the_oracle(name):
    it, law, exact, g = oracle_case(name, 3, 2, 7, finite=True)
    S = torch.tensor([0.0, 0.0, 0.3], dtype=F64)
    T = torch.tensor([1.0, 0.4, 0.995], dtype=F64)
    x = torch.randn(3, 2, 3, dtype=F64, generator=g)
    # the target does not depend on the schedule; differences in τ resolve t only where τ(t) < 1 in
    # float64 (V = 3: t ≲ 0.9 under the decoding-error schedule), so that flow gets an earlier end time
    for flow, T in ((Flow.identity(it, 3), T), (Flow.decoding_error(it, 3), torch.tensor([1.0, 0.4, 0.7], dtype=F64))):
        rows = TimePairs.off(flow, S, T)
        fm = FlowMap(exact, flow)
        for d in three(flow, law, step=0.05).values():
            with torch.no_grad():
                tgt = d.target(fm, x, rows)
            # (the Eulerian default, a bounded step along the residual, needs no cap: t = 1 included)
            torch.testing.assert_close(tgt.probs, exact.probs(x, S, T), atol=2e-5, rtol=0, msg=f"{d.name} target")
    # the paper's Eulerian target with the "cap" policy: student and target both at min(τ_t, tau_max)
    flow, T = Flow.identity(it, 3), torch.tensor([1.0, 0.4, 0.995], dtype=F64)
    rows = TimePairs.off(flow, S, T)
    d = EulerianDistiller(flow, teacher=law, jvp=FD, step=None, boundary="cap")
    with torch.no_grad():
        tgt = d.target(FlowMap(exact, flow), x, rows)
    s_st, t_st, _, _ = d.student_times(rows)
    assert float(t_st.max()) == pytest.approx(0.99)
    torch.testing.assert_close(tgt.probs, exact.probs(x, s_st, t_st), atol=2e-5, rtol=0, msg="eulerian (cap) target")


def test_residual_report_from_tokens_with_drawn_pairs_and_the_diagonal_entry():
    it, law, exact, g = oracle_case("linear", 3, 2, 0, finite=True)
    tokens = law.sample(6, generator=g)
    flow = Flow.identity(it, 3)
    pairs = TimePairSampler(flow, diagonal_fraction=0.34)
    rep = residual_report(exact, three(flow, law), tokens.long(), pairs, generator=g)
    # integer tokens are noised in float32 here: the exact residuals are at float32 precision
    assert set(rep) >= {"semigroup", "lagrangian", "eulerian", "diagonal"}
    assert max(rep.values()) < 1e-6, rep
    # it reports the distillers it is given, as configured, and builds none of its own
    only = residual_report(exact, EulerianDistiller(flow, teacher=law, jvp=FD), tokens.long(), pairs, generator=g)
    assert set(only) == {"eulerian", "diagonal"}
    with pytest.raises(ValueError, match="same Flow"):
        residual_report(exact, {"a": SemigroupDistiller(flow), "b": SemigroupDistiller(Flow.decoding_error(it, 3))},
                        tokens.long(), pairs)


# --------------------------------------------------------------------------- loss mechanics
def small_setup(seed: int = 0):
    torch.manual_seed(seed)
    V, L = 4, 3
    it = Linear()
    seqs = torch.tensor([[0, 1, 2], [1, 2, 3], [2, 3, 0], [3, 0, 1]])
    law = FiniteSequences(seqs, None, V, it)
    flow = Flow.identity(it, V)
    student = TwoTimeMLP(V, L, flow, hidden=32, depth=2)
    return flow, law, student, seqs


@pytest.mark.parametrize("name", list(DISTILLERS))
@pytest.mark.parametrize("teacher_kind", ["oracle", "self"])
def test_loss_is_finite_differentiable_and_counts_jvps(name, teacher_kind):
    flow, law, student, seqs = small_setup()
    teacher = law if teacher_kind == "oracle" else None
    d = DISTILLERS[name](flow, teacher=teacher)
    tokens = seqs[torch.randint(0, 4, (64,))]
    loss, metrics = d.loss(student, tokens, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in student.parameters()]
    assert all(gr is not None for gr in grads) and any(float(gr.abs().sum()) > 0 for gr in grads)
    assert metrics["n_jvp"] == (0.0 if name == "semigroup" else 1.0)
    assert metrics["diagonal_rows"] + metrics["off_diagonal_rows"] == 64
    # tensor metrics (no host sync per step); a logger converts them when it writes
    assert all(torch.is_tensor(v) and v.ndim == 0 and not v.requires_grad for v in metrics.values())


def test_the_off_diagonal_target_is_a_stop_gradient():
    """The gradient equals that of CE against a detached target recomputed from the same draw."""
    flow, law, student, seqs = small_setup()
    tokens = seqs[torch.randint(0, 4, (32,))]
    pairs = TimePairSampler(flow, diagonal_fraction=0.0, boundary_fraction=0.0)
    d = SemigroupDistiller(flow, teacher=law, pairs=pairs)
    loss, _ = d.loss(student, tokens, generator=torch.Generator().manual_seed(5))
    g1 = torch.autograd.grad(loss, list(student.parameters()))
    # redo the same draws by hand
    gen = torch.Generator().manual_seed(5)
    p = pairs(32, generator=gen)
    x = flow.noisy(tokens, tau=p.tau_s, generator=gen).xt
    with torch.no_grad():
        target = d.target(FlowMap(student, flow), x, p).probs
    manual = -(target * torch.log_softmax(student(x, p.s, p.t), -1)).sum(-1).mean()
    g2 = torch.autograd.grad(manual, list(student.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_teacher_is_frozen_in_eval_mode_and_student_untouched():
    flow, law, student, seqs = small_setup()
    teacher = MLPDenoiser(4, 3, flow, hidden=16, depth=1)
    teacher.train()
    d = LagrangianDistiller(flow, teacher=teacher)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    student.train()
    d.loss(student, seqs[torch.randint(0, 4, (16,))])
    assert student.training
    # a teacher, pairs or student of another flow is refused (no silent mixing of schedules)
    other = Flow.decoding_error(Linear(), 4)
    with pytest.raises(ValueError, match="built for"):
        LagrangianDistiller(other, teacher=MLPDenoiser(4, 3, flow, hidden=8, depth=1))
    with pytest.raises(ValueError, match="TimePairSampler"):
        SemigroupDistiller(other, pairs=TimePairSampler(flow))
    with pytest.raises(ValueError, match="built for"):
        SemigroupDistiller(other).loss(student, seqs)


def test_self_distillation_diagonal_target_is_the_data_one_hot():
    """With teacher=None and only diagonal rows, the loss is the FLM cross-entropy to the tokens."""
    flow, law, student, seqs = small_setup()
    pairs = TimePairSampler(flow, diagonal_fraction=1.0, boundary_fraction=0.0)
    d = SemigroupDistiller(flow, teacher=None, pairs=pairs)
    tokens = seqs[torch.randint(0, 4, (16,))]
    loss, _ = d.loss(student, tokens, generator=torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(2)
    p = pairs(16, generator=gen)
    x = flow.noisy(tokens, tau=p.tau_s, generator=gen).xt
    ce = nn.functional.cross_entropy(student(x, p.t, p.t).flatten(0, 1), tokens.flatten())
    torch.testing.assert_close(loss, ce)


def test_eulerian_boundary_policies():
    flow, law, student, seqs = small_setup()
    S = torch.tensor([0.0, 0.2, 0.5])
    T = torch.tensor([1.0, 0.995, 0.7])
    rows = TimePairs.off(flow, S, T, u=S)
    x = torch.randn(3, 3, 4)
    fm = FlowMap(student, flow)
    cap = EulerianDistiller(flow, teacher=law, step=None, boundary="cap", tau_max=0.99)
    assert torch.equal(cap.student_times(rows)[1], torch.tensor([0.99, 0.99, 0.7]))
    drop = EulerianDistiller(flow, teacher=law, step=None, boundary="drop", tau_max=0.99)
    with torch.no_grad():
        tgt = drop.target(fm, x, rows)
    assert torch.equal(tgt.weight, torch.tensor([0.0, 0.0, 1.0]))
    assert bool(torch.isfinite(tgt.probs).all())
    hold = EulerianDistiller(flow, teacher=law, step=None, boundary="hold", tau_max=0.99)
    assert torch.equal(hold.student_times(rows)[1], T)
    with pytest.raises(ValueError, match="tau_max"):
        EulerianDistiller(flow, tau_max=1.0)
    for bad in (0.0, -0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="step"):
            EulerianDistiller(flow, step=bad)
    # tau_max is model time: under the decoding-error schedule it caps at t(0.99), not at t = 0.99
    dec = Flow.decoding_error(Linear(), 4)
    t_cap = EulerianDistiller(dec, step=None, boundary="cap").student_times(TimePairs.off(dec, S, T))[1]
    torch.testing.assert_close(t_cap[0], dec.t_of_tau(torch.tensor(0.99)))


def test_eulerian_step_is_the_paper_target_shortened_by_eta_over_mu():
    """δ̄_step − δ̂ = min(1, η/μ)·(δ̄_paper − δ̂) for t < 1 (same residual, row weight min(1, η/μ));
    at t = 1 (μ = ∞) the step target is δ̂ + η·(∂_s + b_s·∇_x)δ̂: finite, no cap."""
    flow, law, student, seqs = small_setup()
    it = flow.interpolant
    student = student.double()
    S = torch.tensor([0.0, 0.2, 0.5, 0.6, 0.0, 0.3], dtype=F64)
    T = torch.tensor([0.02, 0.9, 0.7, 0.61, 1.0, 1.0], dtype=F64)
    rows = TimePairs.off(flow, S, T, u=S)
    fm = FlowMap(student, flow)
    x = torch.randn(6, 3, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    eta = 0.05
    step = EulerianDistiller(flow, teacher=law, step=eta)
    paper = EulerianDistiller(flow, teacher=law, step=None, tau_max=0.99)
    with torch.no_grad():
        tgt_step = step.target(fm, x, rows).probs
        tgt_paper = paper.target(fm, x, rows).probs
        current = student.probs(x, S, T)
    mu = (T - S) * (1 - S) / (1 - T)  # Linear: μ = (t − s)(1 − s)/(1 − t)
    finite = T < 1
    assert bool((mu[finite] < eta).any()) and bool((mu[finite] > eta).any())  # both regimes present
    weight = (eta / mu[finite]).clamp(max=1.0)[:, None, None]
    torch.testing.assert_close(tgt_step[finite] - current[finite], weight * (tgt_paper[finite] - current[finite]))
    # at t = 1: δ̂ + η·transport, transport from the exact JVP of δ̂_{s,1} along (1, b_s)
    b = it.velocity_from_denoiser(x, S, law.probs(x, S))
    _, transport = torch.func.jvp(lambda ss, xx: student.probs(xx, ss, T), (S, x), (torch.ones_like(S), b))
    torch.testing.assert_close(tgt_step[~finite], (current + eta * transport)[~finite])
    assert bool(torch.isfinite(tgt_step).all())
    with pytest.raises(ValueError, match="projection"):
        LagrangianDistiller(flow, projection="softmax")


@pytest.mark.parametrize("projection", ["clip", "sparsemax", "mse"])
def test_projection_options_run_for_both_jvp_distillers(projection):
    flow, law, student, seqs = small_setup()
    tokens = seqs[torch.randint(0, 4, (32,))]
    for cls in (LagrangianDistiller, EulerianDistiller):
        for jvp in (ExactJVP(), FiniteDifferenceJVP()):
            loss, m = cls(flow, teacher=law, projection=projection, jvp=jvp).loss(student, tokens)
            assert torch.isfinite(loss) and m["n_jvp"] == 1.0


@pytest.mark.slow
def test_comparison_harness_records_every_run_and_writes_its_files(tmp_path):
    from flowlm.experiments import DistillerComparison, all_sequences, compare_distillers, total_variation

    # TV helper against a hand count: 3 draws of sequence 0 and 1 of sequence 5 vs a point mass on 0
    p = torch.zeros(8, dtype=F64)
    p[0] = 1.0
    toks = torch.tensor([[0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 0, 1]])
    assert total_variation(toks, p, 2) == pytest.approx(0.25)
    assert all_sequences(2, 3)[5].tolist() == [1, 0, 1]

    flow, law, student, seqs = small_setup()
    result = compare_distillers(
        law, law, lambda: TwoTimeMLP(4, 3, flow, hidden=16, depth=1), flow,
        steps=4, batch_size=16, n_samples=256, residual_batch=32, sample_steps=(1, 2), out_dir=tmp_path, name="cmp",
    )
    assert isinstance(result, DistillerComparison)
    assert [r.name for r in result.runs] == ["semigroup", "lagrangian", "eulerian", "teacher_euler", "exact_samples"]
    assert [r.name for r in result.trained] == ["semigroup", "lagrangian", "eulerian"]
    for r in result.trained:
        assert len(r.losses) == 4 and r.peak_memory_mb > 0 and r.step_time_ms > 0
        assert r.jvp_per_step == (0.0 if r.name == "semigroup" else 1.0)
        assert set(r.residuals) >= {"semigroup", "lagrangian", "eulerian"}
        assert all(0.0 <= r.tv[k] <= 1.0 for k in (1, 2))
        assert all(0.0 <= r.tv_ema[k] <= 1.0 for k in (1, 2))
    # argmax D̂_0 is one fixed sequence of law probability 1/4 (4 equally likely sequences, uniform marginals tie)
    assert result.run("teacher_euler").tv[1] >= 0.75 - 1e-9
    with pytest.raises(KeyError, match="no run named 'euler'"):
        result.run("euler")
    for ext in ("json", "csv", "png"):
        assert (tmp_path / f"cmp.{ext}").stat().st_size > 0
    saved = json.loads((tmp_path / "cmp.json").read_text())
    assert saved["config"]["sample_steps"] == [1, 2] and saved["runs"][0]["tv"].keys() == {"1", "2"}
    assert saved == json.loads(json.dumps(result.to_dict()))
    # an EMA with decay 0 is the online weights: its samples are the online samples; None turns it off
    one = {"semigroup": SemigroupDistiller(flow, teacher=law)}
    kw = dict(distillers=one, steps=3, batch_size=16, n_samples=256, residual_batch=32, sample_steps=(1, 2))
    r0 = compare_distillers(law, law, lambda: TwoTimeMLP(4, 3, flow, hidden=16, depth=1), flow, ema_decay=0.0, **kw)
    assert r0.runs[0].tv_ema == r0.runs[0].tv
    r_off = compare_distillers(law, law, lambda: TwoTimeMLP(4, 3, flow, hidden=16, depth=1), flow, ema_decay=None, **kw)
    assert r_off.runs[0].tv_ema == {} and r_off.runs[0].tv == r0.runs[0].tv

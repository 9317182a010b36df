"""Prompts and infilling (issue 13): per-token times, clean positions as hard constraints, and
prompted sampling giving the exact conditional law with exact oracles.

Monte-Carlo bounds: the empirical law of n samples on K outcomes has
``E[TV] ≤ ½ Σ_k sqrt(p_k(1 − p_k)/n)`` (Jensen per outcome) and TV changes by at most 1/n when one
sample changes, so by McDiarmid ``P(TV − E[TV] ≥ δ) ≤ exp(−2nδ²)``; ``δ = sqrt(log(10⁶)/(2n))``
makes a false failure a one-in-a-million event for the seeded draw. Euler's discretization bias
at 64 steps is added as a separate, stated slack.
"""

from __future__ import annotations

import math

import pytest
import torch

from flowlm import Flow, Prompt
from flowlm.flowmaps import FlowMap, FlowMapSampler
from flowlm.interpolants import Cosine, Linear
from flowlm.models import FLM, FMLM
from flowlm.nets import DiTConfig, MLPDenoiser, NetDenoiser, TwoTimeMLP
from flowlm.oracles import ExactFlowMap, ExactTwoTimeDenoiser, FactorizedCategorical, FiniteSequences
from flowlm.prompt import per_token_times, random_clean_mask
from flowlm.samplers import EulerSampler, HeunSampler, TorchdiffeqSampler
from flowlm.states import OneHotSpace

V, L = 3, 3
F64 = torch.float64


def all_sequences(V: int, L: int) -> torch.Tensor:
    return torch.cartesian_prod(*[torch.arange(V)] * L).reshape(-1, L)


def random_law(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    seqs = all_sequences(V, L)
    w = torch.rand(seqs.shape[0], generator=g, dtype=F64) ** 2  # correlated, uneven law on all 27 sequences
    return seqs, w / w.sum()


def conditional_law(seqs: torch.Tensor, w: torch.Tensor, prompt: Prompt) -> torch.Tensor:
    """p(x | x_M = c) by enumeration: the law restricted to the agreeing sequences, renormalized."""
    m, c = prompt.mask[0], prompt.tokens[0]
    keep = (seqs[:, m] == c[m]).all(-1)
    p = torch.where(keep, w, torch.zeros_like(w))
    return p / p.sum()


def empirical(tokens: torch.Tensor, K: int) -> torch.Tensor:
    codes = (tokens * (V ** torch.arange(L - 1, -1, -1))).sum(-1)
    return torch.bincount(codes, minlength=K).to(F64) / tokens.shape[0]


def tv_bound(p: torch.Tensor, n: int, delta: float = 1e-6) -> float:
    return 0.5 * float(torch.sqrt(p * (1 - p) / n).sum()) + math.sqrt(math.log(1 / delta) / (2 * n))


PROMPTS = {
    "prefix": Prompt.prefix([2], L),
    "suffix": Prompt.suffix([0, 1], L),
    "infill": Prompt.infill([1], 1, [2]),
}


# --------------------------------------------------------------------------- the Prompt object
def test_prompt_constructors():
    p = Prompt.prefix(torch.tensor([4, 5]), 5)
    assert p.tokens.tolist() == [[4, 5, 0, 0, 0]] and p.mask.tolist() == [[True, True, False, False, False]]
    s = Prompt.suffix([7], 3)
    assert s.tokens.tolist() == [[0, 0, 7]] and s.mask.tolist() == [[False, False, True]]
    i = Prompt.infill([[1], [2]], 2, [3])  # batch 2 left, batch-1 right broadcast
    assert i.tokens.tolist() == [[1, 0, 0, 3], [2, 0, 0, 3]]
    assert i.mask.tolist() == [[True, False, False, True]] * 2
    sp = Prompt.spans(6, {1: [9], 4: [8, 7]})
    assert sp.mask.tolist() == [[False, True, False, False, True, True]]
    assert Prompt.prefix([1], 3).validate(5, 4, 3).tokens.shape == (4, 3)  # batch 1 expands


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: Prompt(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool)), TypeError, "integer"),
        (lambda: Prompt(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3)), TypeError, "boolean"),
        (lambda: Prompt(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.bool)), ValueError, "shape"),
        (lambda: Prompt(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.bool)), ValueError, "batch, length"),
        (lambda: Prompt.prefix([1, 2, 3, 4], 3), ValueError, "does not fit"),
        (lambda: Prompt.infill([1], 0, [2]), ValueError, "gap"),
        (lambda: Prompt.prefix([-1], 3), ValueError, ">= 0"),
        (lambda: Prompt.spans(4, {0: [1, 2], 1: [3]}), ValueError, "overlaps"),
        (lambda: Prompt.prefix([7], 3).validate(5, 1, 3), ValueError, "token ids"),
        (lambda: Prompt.prefix([1], 5).validate(5, 1, 3), ValueError, "longer"),
        (lambda: Prompt.prefix([[1], [2]], 3).validate(5, 3, 3), ValueError, "batch"),
    ],
)
def test_prompt_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_random_clean_mask():
    g = torch.Generator().manual_seed(0)
    assert not random_clean_mask(64, 8, 0.0).any()
    m = random_clean_mask(4000, 8, 0.5, generator=g)
    conditioned = m.any(1)
    # a conditioned row holds nothing only when its window is the whole sequence: P(a = 0, b = L) = 1/L²
    assert abs(conditioned.float().mean().item() - 0.5 * (1 - 1 / 64)) < 0.03  # 4000 rows: sd ≈ 0.008
    assert not m.all(1).any()  # at least one free position
    # the free positions form one contiguous window: prefixes, suffixes and infills all occur
    prefix = m[:, 0] & ~m[:, -1]
    suffix = ~m[:, 0] & m[:, -1]
    infill = m[:, 0] & m[:, -1]
    assert prefix.any() and suffix.any() and infill.any()
    free = (~m).int()
    assert ((free[:, 1:] - free[:, :-1]).clamp(min=0).sum(1) <= 1).all()


# --------------------------------------------------------------------------- oracles with per-token times
@pytest.mark.parametrize("interp", [Linear(), Cosine()], ids=["linear", "cosine"])
def test_oracles_per_token_times_equal_per_sequence(interp):
    g = torch.Generator().manual_seed(1)
    seqs, w = random_law()
    x = torch.randn(5, L, V, dtype=F64, generator=g)
    t = torch.rand(5, dtype=F64, generator=g)
    for den in (FiniteSequences(seqs, w, V, interp), FactorizedCategorical(torch.rand(L, V, dtype=F64).softmax(-1), interp)):
        a = den.probs(x, t)
        b = den.probs(x, t[:, None].expand(5, L).contiguous())
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("interp", [Linear(), Cosine()], ids=["linear", "cosine"])
def test_clean_token_is_a_hard_constraint(interp):
    """With t = 1 at a clean position, FiniteSequences' D equals the posterior computed by
    enumeration over the sequences agreeing with the clean token (Gaussian evidence on the rest)."""
    g = torch.Generator().manual_seed(2)
    seqs, w = random_law()
    den = FiniteSequences(seqs, w, V, interp)
    prompt = Prompt.infill([1], 1, [2])
    t_row = torch.tensor([0.3, 0.7], dtype=F64)
    x = prompt.validate(V, 2, L).hold(torch.randn(2, L, V, dtype=F64, generator=g), torch.eye(V, dtype=F64)[prompt.tokens.expand(2, L)])
    t = per_token_times(prompt.mask.expand(2, L), t_row)
    got = den.probs(x, t)
    a, b = interp.alpha(t_row), interp.beta(t_row)
    keep = (seqs[:, 0] == 1) & (seqs[:, 2] == 2)
    for i in range(2):
        # log p(x_t^1 | x1^1 = e_v) = β x_v / α² + const; the clean positions are fixed
        logpost = torch.where(keep, w.log() + b[i] / a[i] ** 2 * x[i, 1, seqs[:, 1]], torch.full_like(w, -math.inf))
        post = logpost.softmax(0)
        want = torch.zeros(V, dtype=F64).index_add_(0, seqs[:, 1], post)
        torch.testing.assert_close(got[i, 1], want, atol=1e-12, rtol=0)
        assert got[i, 0, 1] == 1 and got[i, 2, 2] == 1
    fact = FactorizedCategorical(torch.rand(L, V, dtype=F64, generator=g).softmax(-1), interp)
    pf = fact.probs(x, t)
    assert pf[:, 0, 1].eq(1).all() and pf[:, 2, 2].eq(1).all()
    torch.testing.assert_close(pf[:, 1], fact.probs(x, t_row)[:, 1], atol=1e-12, rtol=0)  # independence


def test_exact_flow_map_per_token_holds_clean_positions():
    seqs, w = random_law()
    den = FiniteSequences(seqs, w, V, Linear())
    fm = ExactFlowMap(den)
    prompt = Prompt.prefix([2], L).validate(V, 3, L)
    g = torch.Generator().manual_seed(3)
    x = prompt.hold(torch.randn(3, L, V, dtype=F64, generator=g), torch.eye(V, dtype=F64)[prompt.tokens])
    s = per_token_times(prompt.mask, torch.full((3,), 0.2, dtype=F64))
    t = per_token_times(prompt.mask, torch.full((3,), 0.6, dtype=F64))
    X, delta = fm.solve(x, s, t)
    torch.testing.assert_close(X[:, 0], x[:, 0])
    torch.testing.assert_close(delta.sum(-1), torch.ones(3, L, dtype=F64), atol=1e-8, rtol=0)
    with pytest.raises(NotImplementedError, match="one \\(s, t\\)"):
        fm.solve(x, torch.tensor([[1.0, 0.1, 0.2]] * 3, dtype=F64), torch.ones(3, L, dtype=F64))


# --------------------------------------------------------------------------- the main test: exact conditional law
@pytest.mark.parametrize(
    "interp, kind", [(Linear(), "infill"), (Cosine(), "infill"), (Linear(), "prefix"), (Cosine(), "suffix")],
    ids=["linear-infill", "cosine-infill", "linear-prefix", "cosine-suffix"],
)
def test_prompted_euler_gives_the_exact_conditional_law(interp, kind):
    seqs, w = random_law()
    den = FiniteSequences(seqs, w, V, interp)
    flow = Flow.decoding_error(interp, V)
    prompt = PROMPTS[kind]
    n = 4000
    x0 = torch.randn(n, L, V, dtype=F64, generator=torch.Generator().manual_seed(4))
    out = EulerSampler(64)(den, flow, x0, prompt=prompt)
    assert (out.tokens[:, prompt.mask[0]] == prompt.tokens[0, prompt.mask[0]]).all()
    law = conditional_law(seqs, w, prompt)
    tv = 0.5 * float((empirical(out.tokens, seqs.shape[0]) - law).abs().sum())
    # Euler's bias at 64 τ-steps: with n = 40000 draws the measured TV is <= 0.004 (at the noise level)
    # for all four cases (seed 9); 0.02 is a generous slack for it
    assert tv < tv_bound(law, n) + 0.02, (tv, tv_bound(law, n))
    # the unconditional law is far from it: the test can fail
    tv_uncond = 0.5 * float((w - law).abs().sum())
    assert tv_uncond > 0.3


@pytest.mark.parametrize("interp", [Linear(), Cosine()], ids=["linear", "cosine"])
def test_prompted_one_step_fmlm_gives_the_exact_conditional_law(interp):
    """One step of the exact two-time denoiser δ_{0,1} with an infill prompt: each draw costs one
    float64 ODE solve, so n = 600 (bound ≈ 0.16 for 3 outcomes; the unconditional law is > 0.3 away)."""
    seqs, w = random_law()
    den = FiniteSequences(seqs, w, V, interp)
    flow = Flow.decoding_error(interp, V)
    prompt = PROMPTS["infill"]
    n = 600
    x0 = torch.randn(n, L, V, dtype=F64, generator=torch.Generator().manual_seed(5))
    out = FlowMapSampler(1)(ExactTwoTimeDenoiser(den, rtol=1e-7, atol=1e-7), flow, x0, prompt=prompt)
    assert out.nfe == 1
    law = conditional_law(seqs, w, prompt)
    tv = 0.5 * float((empirical(out.tokens, seqs.shape[0]) - law).abs().sum())
    assert tv < tv_bound(law, n), (tv, tv_bound(law, n))
    assert (out.tokens[:, 0] == 1).all() and (out.tokens[:, 2] == 2).all()


def test_prompted_two_step_flow_map_and_other_samplers_hold_the_prompt():
    seqs, w = random_law()
    den = FiniteSequences(seqs, w, V, Linear())
    flow = Flow.decoding_error(Linear(), V)
    prompt = PROMPTS["prefix"]
    x0 = torch.randn(40, L, V, dtype=F64, generator=torch.Generator().manual_seed(6))
    outs = [
        FlowMapSampler(2)(ExactTwoTimeDenoiser(den, rtol=1e-7, atol=1e-7), flow, x0, prompt=prompt, return_trajectory=True),
        HeunSampler(8)(den, flow, x0, prompt=prompt, return_trajectory=True),
        TorchdiffeqSampler("rk4", n_steps=8)(den, flow, x0, prompt=prompt),
    ]
    for out in outs:
        assert (out.tokens[:, 0] == 2).all()
        assert (out.probs[:, 0, 2] == 1).all()
        for x in out.trajectory or []:
            assert (x[:, 0] == torch.eye(V, dtype=F64)[2]).all()  # the clean state at every step
    with pytest.raises(TypeError, match="flowlm.Prompt"):
        EulerSampler(4)(den, flow, x0, prompt=torch.zeros(40, L, dtype=torch.long))
    with pytest.raises(ValueError, match="length"):
        EulerSampler(4)(den, flow, x0, prompt=Prompt.prefix([1], 4))


# --------------------------------------------------------------------------- networks with per-token times
def test_networks_accept_per_token_times():
    flow = Flow.decoding_error(Linear(), 7)
    torch.manual_seed(0)
    cfg = DiTConfig(vocab_size=7, max_length=5, width=32, depth=1, heads=2, cond=16, dropout=0.0)
    model = FLM(cfg, flow, projected=False)
    with torch.no_grad():  # the head and adaLN start at zero: give every weight a value
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    den = model.denoiser
    x = torch.randn(2, 5, 7)
    t = torch.tensor([0.3, 0.8])
    torch.testing.assert_close(den(x, t), den(x, t[:, None].expand(2, 5).contiguous()), atol=1e-5, rtol=1e-5)
    tt = per_token_times(torch.tensor([[True, False, False, False, False]] * 2), t)
    assert not torch.allclose(den(x, t), den(x, tt))  # per-token conditioning reaches the network
    mlp = MLPDenoiser(3, L, Flow.identity(Linear(), 3), hidden=16, depth=1)
    xm, tm = torch.randn(2, L, 3), torch.tensor([0.2, 0.9])
    torch.testing.assert_close(mlp(xm, tm), mlp(xm, tm[:, None].expand(2, L).contiguous()), atol=1e-6, rtol=1e-6)
    two = TwoTimeMLP.from_denoiser(mlp)
    fm = FlowMap(two, Flow.identity(Linear(), 3))
    s_tok = per_token_times(torch.tensor([[True, False, False]] * 2), tm * 0.5)
    t_tok = per_token_times(torch.tensor([[True, False, False]] * 2), tm)
    xc = xm.clone()
    xc[:, 0] = torch.eye(3)[1]
    X = fm.X(xc, s_tok, t_tok)
    assert torch.isfinite(X).all() and torch.equal(X[:, 0], xc[:, 0])  # clean positions keep their state


@pytest.mark.parametrize("cls", [FLM, FMLM])
def test_model_sample_with_prompt(cls):
    torch.manual_seed(0)
    cfg = DiTConfig(vocab_size=11, max_length=6, width=32, depth=1, heads=2, cond=16, dropout=0.0)
    model = cls(cfg)
    prompt = Prompt.infill([3, 4], 2, [5, 6])
    out = model.sample(4, 6, 3, prompt=prompt, generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (4, 6)
    assert (out.tokens[:, [0, 1, 4, 5]] == torch.tensor([3, 4, 5, 6])).all()
    with pytest.raises(ValueError, match="at most 6"):
        model.sample(1, 6, 2, prompt=Prompt.prefix([1] * 7, 8))
    with pytest.raises(ValueError, match="length"):
        model.sample(1, 5, 2, prompt=prompt)


def test_prompted_sampler_on_projected_space():
    torch.manual_seed(0)
    cfg = DiTConfig(vocab_size=11, max_length=6, width=32, depth=1, heads=2, cond=16, dropout=0.0)
    model = FLM(cfg)  # projected (h = x @ E)
    prompt = Prompt.prefix([7, 8], 6)
    out = EulerSampler(3)(model.denoiser, model.flow, model.space.noise(2, 6), space=model.space, prompt=prompt,
                          return_trajectory=True)
    assert (out.tokens[:, :2] == torch.tensor([7, 8])).all()
    for h in out.trajectory:
        torch.testing.assert_close(h[:, :2], model.net.E[torch.tensor([7, 8])].expand(2, 2, -1))
    assert isinstance(OneHotSpace(3), OneHotSpace)


# --------------------------------------------------------------------------- training for conditioning
def test_flm_loss_with_clean_positions_matches_a_direct_computation(monkeypatch):
    """With a fixed clean mask, FLM.loss(condition_fraction>0) = CE of net(h, τ_tok) over the free
    positions only, where τ_tok = 1 and the state is the clean one-hot at the clean positions."""
    import flowlm.models.flm as flm_module
    from flowlm.interpolants import stratified_uniform

    torch.manual_seed(0)
    cfg = DiTConfig(vocab_size=7, max_length=5, width=32, depth=1, heads=2, cond=16, dropout=0.0)
    model = FLM(cfg, projected=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    tokens = torch.randint(0, 7, (4, 5), generator=torch.Generator().manual_seed(1))
    clean = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 1, 1], [1, 0, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    monkeypatch.setattr(flm_module, "random_clean_mask", lambda *a, **k: clean)
    loss, metrics = model.loss(tokens, generator=torch.Generator().manual_seed(2), condition_fraction=0.5)
    g = torch.Generator().manual_seed(2)
    tau = stratified_uniform(4, generator=g)
    tau_tok = torch.where(clean, 1.0, tau[:, None])
    t = model.flow.t_of_tau(tau_tok)
    x0 = torch.randn(4, 5, 7, generator=g)
    x1 = torch.nn.functional.one_hot(tokens, 7).float()
    xt = model.interpolant.alpha(t)[..., None] * x0 + model.interpolant.beta(t)[..., None] * x1
    xt = torch.where(clean[..., None], x1, xt)
    logits = model.net(xt @ model.net.E, tau_tok)
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none").view(4, 5)
    want = ce[~clean].mean()
    torch.testing.assert_close(loss, want, atol=1e-5, rtol=1e-5)
    assert metrics["clean_fraction"] == clean.float().mean()
    assert model.loss(tokens, generator=torch.Generator().manual_seed(2))[0] != loss  # the option changes the loss


def test_soft_cross_entropy_positions():
    from flowlm.flowmaps.projections import soft_cross_entropy, target_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, generator=g)
    target = torch.randn(2, 4, 3, generator=g).softmax(-1)
    keep = torch.tensor([[True, False, True, True], [False, False, False, True]])
    ce = -(target * logits.log_softmax(-1)).sum(-1)
    want = torch.stack([ce[0, keep[0]].mean(), ce[1, keep[1]].mean()])
    torch.testing.assert_close(soft_cross_entropy(logits, target, keep), want)
    torch.testing.assert_close(target_loss(logits, target, "clip", keep), want)
    torch.testing.assert_close(soft_cross_entropy(logits, target), ce.mean(-1))


def test_distiller_loss_ignores_clean_positions():
    """With every sequence conditioned and the student equal to the exact answer on the free positions
    only, changing the student's logits at clean positions does not change the loss."""
    from flowlm.flowmaps import SemigroupDistiller

    flow = Flow.decoding_error(Linear(), V)
    torch.manual_seed(0)
    teacher = MLPDenoiser(V, L, flow, hidden=16, depth=1)
    student = TwoTimeMLP.from_denoiser(teacher)
    tokens = torch.randint(0, V, (32, L), generator=torch.Generator().manual_seed(1))
    d = SemigroupDistiller(flow, teacher)
    loss, metrics = d.loss(student, tokens, generator=torch.Generator().manual_seed(3), condition_fraction=1.0)
    assert torch.isfinite(loss) and metrics["clean_fraction"] > 0
    plain, _ = d.loss(student, tokens, generator=torch.Generator().manual_seed(3))
    assert plain != loss


@pytest.mark.slow
def test_training_with_clean_positions_learns_the_conditional_law():
    """A tiny DiT FLM trained on a 6-sequence law with condition_fraction = 0.5 samples prompted
    sequences closer to the exact conditional law than the same model trained without it (clamp
    only). Measured (1000 draws, 32 Euler steps; prefix / suffix / infill): at 800 training steps
    TV 0.19 / 0.18 / 0.006 with the option against 0.34 / 0.28 / 0.53 without it; at 300 steps
    0.37 / 0.47 / 0.22 against 0.67 / 0.54 / 0.62. The test trains 500 steps."""
    seqs = torch.tensor([[0, 0, 0], [0, 1, 1], [1, 1, 2], [1, 2, 0], [2, 0, 1], [2, 2, 2]])
    w = torch.tensor([0.3, 0.1, 0.2, 0.15, 0.15, 0.1], dtype=F64)
    flow = Flow.decoding_error(Linear(), V)
    oracle = FiniteSequences(seqs, w, V, Linear())
    codes = (seqs * torch.tensor([9, 3, 1])).sum(-1)
    W = torch.zeros(27, dtype=F64).index_put_((codes,), w)
    prompts = [Prompt.prefix([1], L), Prompt.suffix([2], L), Prompt.infill([2], 1, [1])]

    def tvs(frac: float) -> list[float]:
        torch.manual_seed(0)
        model = FLM(DiTConfig(vocab_size=V, max_length=L, width=32, depth=2, heads=2, cond=16, dropout=0.0), flow,
                    projected=False)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(1)
        for _ in range(500):
            loss, _ = model.loss(oracle.sample(128, generator=g), generator=g, condition_fraction=frac)
            opt.zero_grad()
            loss.backward()
            opt.step()
        out = []
        for p in prompts:
            toks = model.sample(1000, L, 32, prompt=p, generator=torch.Generator().manual_seed(2)).tokens
            law = conditional_law(all_sequences(V, L), W, p)
            out.append(0.5 * float((empirical(toks, 27) - law).abs().sum()))
        return out

    conditioned, clamped = tvs(0.5), tvs(0.0)
    assert sum(conditioned) < sum(clamped) - 0.3, (conditioned, clamped)
    assert max(conditioned) < 0.35, conditioned

"""Exact oracles: closed-form denoisers against brute-force Bayes, and the exact flow map.

Values are checked in float64 against independent oracles written here from first principles
(full Gaussian likelihoods over every candidate sequence; a plain ODE in interpolation time).
"""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchdiffeq import odeint

from flowlm.interpolants import Cosine, Interpolant, Linear
from flowlm.oracles._validate import check_call
from flowlm.oracles import ExactFlowMap, ExactTwoTimeDenoiser, FactorizedCategorical, FiniteSequences

F64 = torch.float64


def custom_interpolant():
    # α' (1) = 0: exercises the non-linear, non-closed-form paths
    return Interpolant.from_functions(lambda t: (1 - t) ** 2, lambda t: t, name="quad-alpha")


INTERPOLANTS = {"linear": Linear, "cosine": Cosine, "custom": custom_interpolant}
interpolants = st.sampled_from(sorted(INTERPOLANTS)).map(lambda k: INTERPOLANTS[k]())


def random_probs(gen, L, V, sharp=1.0):
    return torch.softmax(sharp * torch.randn(L, V, generator=gen, dtype=F64), -1)


def gaussian_loglik(x, x1, a, b):
    """log N(x; β·x1, α² I), every term kept (x: [B, L, V], x1: [L, V])."""
    n = x[0].numel()
    sq = ((x - b[:, None, None] * x1) ** 2).sum((-1, -2))
    return -sq / (2 * a**2) - n * torch.log(a) - 0.5 * n * math.log(2 * math.pi)


def brute_force_denoiser(seqs, log_prior, x, t, interp, V):
    """E[x1 | x_t = x] by Bayes over an explicit list of sequences."""
    a, b = interp.alpha(t), interp.beta(t)
    onehots = torch.nn.functional.one_hot(seqs, V).to(F64)  # [K, L, V]
    logpost = torch.stack([gaussian_loglik(x, oh, a, b) for oh in onehots], -1) + log_prior  # [B, K]
    post = torch.softmax(logpost, -1)
    return torch.einsum("bk,klv->blv", post, onehots)


def noisy_state(gen, interp, t, x1, scale=1.0):
    noise = scale * torch.randn(x1.shape, generator=gen, dtype=F64)
    return interp.alpha(t)[:, None, None] * noise + interp.beta(t)[:, None, None] * x1


# ----------------------------------------------------------------------------------- denoisers


@given(V=st.integers(2, 4), L=st.integers(1, 3), interp=interpolants, seed=st.integers(0, 2**31 - 1),
       t_lo=st.floats(0.02, 0.9))
def test_factorized_matches_brute_force_bayes(V, L, interp, seed, t_lo):
    gen = torch.Generator().manual_seed(seed)
    p = random_probs(gen, L, V, sharp=2.0)
    den = FactorizedCategorical(p, interp)
    seqs = torch.tensor(list(itertools.product(range(V), repeat=L)))  # all V^L sequences
    log_prior = torch.log(p[torch.arange(L), seqs]).sum(-1)  # [K]
    B = 3
    t = t_lo + (0.97 - t_lo) * torch.rand(B, generator=gen, dtype=F64)
    x1 = torch.nn.functional.one_hot(den.sample(B, generator=gen), V).to(F64)
    x = noisy_state(gen, interp, t, x1)
    want = brute_force_denoiser(seqs, log_prior, x, t, interp, V)
    got = torch.softmax(den(x, t), -1)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@given(V=st.integers(2, 5), L=st.integers(1, 4), K=st.integers(1, 6), interp=interpolants,
       seed=st.integers(0, 2**31 - 1))
def test_finite_set_matches_brute_force_bayes(V, L, K, interp, seed):
    gen = torch.Generator().manual_seed(seed)
    seqs = torch.randint(0, V, (K, L), generator=gen)  # duplicates allowed
    w = torch.rand(K, generator=gen, dtype=F64) + 0.05
    den = FiniteSequences(seqs, w, V, interp)
    B = 4
    t = 0.02 + 0.95 * torch.rand(B, generator=gen, dtype=F64)
    x1 = torch.nn.functional.one_hot(den.sample(B, generator=gen), V).to(F64)
    x = noisy_state(gen, interp, t, x1)
    want = brute_force_denoiser(seqs, torch.log(w / w.sum()), x, t, interp, V)
    torch.testing.assert_close(torch.softmax(den(x, t), -1), want, rtol=1e-9, atol=1e-12)


def test_finite_set_over_all_sequences_is_the_factorized_law():
    gen = torch.Generator().manual_seed(3)
    V, L = 3, 3
    p = random_probs(gen, L, V)
    seqs = torch.tensor(list(itertools.product(range(V), repeat=L)))
    w = p[torch.arange(L), seqs].prod(-1)
    fac, fin = FactorizedCategorical(p, Cosine()), FiniteSequences(seqs, w, V, Cosine())
    x = 2 * torch.randn(5, L, V, generator=gen, dtype=F64)
    t = torch.tensor([0.0, 0.3, 0.6, 0.9, 0.99], dtype=F64)
    torch.testing.assert_close(torch.softmax(fin(x, t), -1), torch.softmax(fac(x, t), -1), rtol=1e-9, atol=1e-12)
    tokens = fac.sample(50, generator=gen)
    torch.testing.assert_close(fin.log_prob(tokens), fac.log_prob(tokens))


@given(V=st.integers(2, 6), L=st.integers(1, 4), interp=interpolants, seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from([torch.float32, torch.float64]), log_scale=st.floats(-3, 8))
def test_denoisers_are_finite_and_on_the_simplex(V, L, interp, seed, dtype, log_scale):
    gen = torch.Generator().manual_seed(seed)
    p = random_probs(gen, L, V, sharp=4.0)
    p[:, 0] = 0.0  # impossible tokens: log p = -inf must not leak out
    p = p / p.sum(-1, keepdim=True)
    seqs = torch.randint(0, V, (3, L), generator=gen)
    t = torch.tensor([0.0, 0.5, 1 - 1e-12, 1.0], dtype=dtype)
    x = (10**log_scale * torch.randn(4, L, V, generator=gen, dtype=F64)).to(dtype)
    for den in (FactorizedCategorical(p, interp), FiniteSequences(seqs, None, V, interp)):
        logits = den(x, t)
        assert logits.dtype == dtype and logits.shape == x.shape
        assert torch.isfinite(logits).all()
        probs = torch.softmax(logits, -1)
        assert (probs >= 0).all()
        torch.testing.assert_close(probs.sum(-1), torch.ones(4, L, dtype=dtype))


def test_prior_at_t0_and_argmax_limit_at_t1():
    gen = torch.Generator().manual_seed(0)
    p = random_probs(gen, 3, 5)
    den = FactorizedCategorical(p, Linear())
    x = torch.randn(2, 3, 5, generator=gen, dtype=F64)
    D0 = torch.softmax(den(x, torch.zeros(2, dtype=F64)), -1)
    torch.testing.assert_close(D0, p.expand(2, 3, 5))  # no information at t = 0
    D1 = torch.softmax(den(x, torch.ones(2, dtype=F64)), -1)
    torch.testing.assert_close(D1, torch.nn.functional.one_hot(x.argmax(-1), 5).to(F64))
    # the t = 1 logits are the limit of t → 1
    D_near = torch.softmax(den(x, torch.full((2,), 1 - 1e-6, dtype=F64)), -1)
    torch.testing.assert_close(D_near, D1)
    # ties at t = 1 are broken by the prior
    tie = torch.zeros(1, 3, 5, dtype=F64)
    torch.testing.assert_close(torch.softmax(den(tie, torch.ones(1, dtype=F64)), -1)[0], p)


def test_finite_set_at_t1_picks_the_best_matching_sequence():
    seqs = torch.tensor([[0, 1, 2], [0, 1, 1], [2, 2, 2]])
    den = FiniteSequences(seqs, torch.tensor([0.2, 0.5, 0.3]), 3, Linear())
    x = torch.nn.functional.one_hot(torch.tensor([[0, 1, 2], [2, 2, 1]]), 3).to(F64)
    D = torch.softmax(den(x, torch.ones(2, dtype=F64)), -1)
    want = torch.nn.functional.one_hot(torch.stack([seqs[0], seqs[2]]), 3).to(F64)
    torch.testing.assert_close(D, want)


def test_sampling_and_log_prob():
    gen = torch.Generator().manual_seed(1)
    p = random_probs(gen, 2, 3)
    den = FactorizedCategorical(p, Linear())
    n = 40000
    tokens = den.sample(n, generator=gen)
    assert tokens.shape == (n, 2) and tokens.dtype == torch.long
    freq = torch.stack([torch.bincount(tokens[:, l], minlength=3) for l in range(2)]).to(F64) / n
    assert ((freq - p).abs() <= 5 * (p * (1 - p) / n).sqrt() + 1e-12).all()
    some = torch.tensor([[0, 2], [1, 1]])
    torch.testing.assert_close(den.log_prob(some), torch.log(torch.stack([p[0, 0] * p[1, 2], p[0, 1] * p[1, 1]])))

    seqs = torch.tensor([[0, 1], [1, 0], [0, 1]])  # a duplicate adds its weight
    fin = FiniteSequences(seqs, torch.tensor([1.0, 2.0, 1.0]), 2, Linear())
    torch.testing.assert_close(fin.probs_of_sequences, torch.tensor([0.25, 0.5, 0.25], dtype=F64))
    lp = fin.log_prob(torch.tensor([[0, 1], [1, 0], [1, 1]]))
    torch.testing.assert_close(lp[:2], torch.log(torch.tensor([0.5, 0.5], dtype=F64)))
    assert lp[2] == -math.inf
    draws = fin.sample(20000, generator=gen)
    share = (draws == torch.tensor([1, 0])).all(-1).double().mean()
    assert abs(float(share) - 0.5) < 5 * math.sqrt(0.25 / 20000)


def test_bad_inputs_raise_clear_errors():
    p = torch.full((2, 3), 1 / 3, dtype=F64)
    den = FactorizedCategorical(p, Linear())
    x = torch.zeros(2, 2, 3, dtype=F64)
    t = torch.full((2,), 0.5, dtype=F64)
    with pytest.raises(ValueError, match="sum to 1"):
        FactorizedCategorical(2 * p, Linear())
    with pytest.raises(ValueError, match="negative"):
        FactorizedCategorical(torch.tensor([[1.5, -0.5]]), Linear())
    # shape errors: under the test suite's jaxtyping hook the annotation may fire first (a
    # TypeError); without it the oracle's own check does, with the message tested below
    with pytest.raises((ValueError, TypeError)):
        FactorizedCategorical(torch.ones(3) / 3, Linear())
    with pytest.raises((ValueError, TypeError)):
        den(x, torch.full((3,), 0.5, dtype=F64))
    with pytest.raises(ValueError, match="vocabulary size 4"):
        den(torch.zeros(2, 2, 4, dtype=F64), t)
    with pytest.raises(ValueError, match="sequence length 3"):
        den(torch.zeros(2, 3, 3, dtype=F64), t)
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        check_call("den", x, torch.full((3,), 0.5, dtype=F64), 3, 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        den(x, torch.tensor([0.5, 1.5], dtype=F64))
    with pytest.raises(ValueError, match="NaN"):
        den(x, torch.tensor([0.5, math.nan], dtype=F64))
    with pytest.raises(ValueError, match="NaN"):
        den(torch.full((2, 2, 3), math.nan, dtype=F64), t)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        FiniteSequences(torch.tensor([[0, 3]]), None, 3, Linear())
    with pytest.raises((ValueError, TypeError)):  # [K] vs [2]: annotation or own check
        FiniteSequences(torch.tensor([[0, 1]]), torch.ones(2), 3, Linear())
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        den.log_prob(torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="weights must be finite"):
        FiniteSequences(torch.tensor([[0, 1]]), torch.tensor([-1.0]), 3, Linear())
    with pytest.raises(ValueError, match="s <= t"):
        ExactFlowMap(den)(x, t, t - 0.1)


# ----------------------------------------------------------------------------------- flow map

FAST = dict(rtol=1e-9, atol=1e-9)


def small_problem(seed, interp, V=3, L=2, B=4, finite=False):
    gen = torch.Generator().manual_seed(seed)
    if finite:
        den = FiniteSequences(torch.randint(0, V, (4, L), generator=gen), torch.rand(4, generator=gen) + 0.1, V, interp)
    else:
        den = FactorizedCategorical(random_probs(gen, L, V), interp)
    return den, torch.randn(B, L, V, generator=gen, dtype=F64), gen


def test_flow_map_identity_and_diagonal_delta():
    den, x, _ = small_problem(0, Cosine())
    fm = ExactFlowMap(den, Cosine(), **FAST)
    s = torch.tensor([0.0, 0.3, 0.999, 1.0], dtype=F64)
    X, delta = fm.solve(x, s, s)
    assert torch.equal(X, x)  # X_{s,s} = id exactly
    torch.testing.assert_close(delta, torch.softmax(den(x, s), -1), rtol=1e-12, atol=1e-14)  # δ_{s,s} = D_s
    two = ExactTwoTimeDenoiser(den, Cosine(), **FAST)
    torch.testing.assert_close(torch.softmax(two(x, s, s), -1), delta, rtol=1e-12, atol=1e-14)
    # δ is integrated as an average, not recovered by dividing by β_t − α_tβ_s/α_s → 0: no cancellation
    s_in = s[:3]
    near = two.probs(x[:3], s_in, s_in + 1e-9)
    torch.testing.assert_close(near, torch.softmax(den(x[:3], s_in), -1), rtol=0, atol=1e-7)
    assert torch.isfinite(two(x[:3], s_in, s_in + 1e-9)).all()


@pytest.mark.parametrize("interp_name", sorted(INTERPOLANTS))
def test_flow_map_matches_a_plain_ode_in_interpolation_time(interp_name):
    """Independent oracle: torchdiffeq on dx/du = b_u(x) = (α'/α)x + αρ'D in u itself."""
    interp = INTERPOLANTS[interp_name]()
    den, x, _ = small_problem(1, interp, finite=interp_name == "cosine")
    s0, t0 = 0.1, 0.85

    def b(u, xx):
        D = torch.softmax(den(xx, u.expand(xx.shape[0])), -1)
        return interp.velocity_from_denoiser(xx, u.expand(xx.shape[0]), D)

    grid = torch.tensor([s0, t0], dtype=F64)
    want = odeint(b, x, grid, method="dopri8", rtol=1e-10, atol=1e-10, options={"step_t": grid[1:]})[-1]
    got = ExactFlowMap(den, interp, **FAST)(x, torch.full((4,), s0, dtype=F64), torch.full((4,), t0, dtype=F64))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-7)


def test_flow_map_of_a_point_mass_is_closed_form():
    """One-sequence law: D ≡ e, so y = x/α gains (ρ_t − ρ_s)e and δ_{s,t} = e exactly."""
    interp = custom_interpolant()
    e = torch.nn.functional.one_hot(torch.tensor([2, 0]), 3).to(F64)
    den = FactorizedCategorical(e, interp)
    x = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    s = torch.tensor([0.0, 0.2, 0.5], dtype=F64)
    t = torch.tensor([0.7, 1.0, 0.9], dtype=F64)
    X, delta = ExactFlowMap(den, interp, **FAST).solve(x, s, t)
    a_s, a_t, r_s, r_t = interp.alpha(s), interp.alpha(t), interp.rho(s), interp.rho(t)
    c_d = torch.where(t < 1, a_t * (r_t - r_s), torch.ones_like(t))  # α_t(ρ_t − ρ_s) → 1 at t = 1
    want = (a_t / a_s)[:, None, None] * x + c_d[:, None, None] * e
    torch.testing.assert_close(X, want, rtol=0, atol=1e-9)
    torch.testing.assert_close(delta, e.expand(3, 2, 3), rtol=0, atol=1e-9)


@settings(max_examples=6)
@given(interp=interpolants, seed=st.integers(0, 2**31 - 1), finite=st.booleans(),
       times=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3), end_at_one=st.booleans())
def test_flow_map_semigroup_and_delta_on_simplex(interp, seed, finite, times, end_at_one):
    s, u, t = sorted(times)
    if end_at_one:
        t = 1.0
    den, x, _ = small_problem(seed, interp, finite=finite, B=2)
    fm = ExactFlowMap(den, interp, **FAST)
    full = lambda v: torch.full((2,), v, dtype=F64)  # noqa: E731
    X_st, delta = fm.solve(x, full(s), full(t))
    X_ut = fm(fm(x, full(s), full(u)), full(u), full(t))
    torch.testing.assert_close(X_ut, X_st, rtol=0, atol=1e-6)
    assert delta.min() > -1e-9  # δ on the simplex
    torch.testing.assert_close(delta.sum(-1), torch.ones(2, x.shape[1], dtype=F64), rtol=0, atol=1e-9)
    if s < t:  # δ is the two-time denoiser of X: X = (α_t/α_s)x + (β_t − α_tβ_s/α_s)δ
        torch.testing.assert_close(interp.flow_map_from_delta(x, full(s), full(t), delta), X_st, rtol=0, atol=1e-8)
    if t == 1.0:
        torch.testing.assert_close(delta, X_st)  # δ_{s,1} = X_{s,1}


@pytest.mark.parametrize("finite", [False, True])
def test_one_step_flow_map_transports_noise_to_the_data_law(finite):
    """X_{0,1}(x0), x0 ~ N(0, I), is distributed as the data (exact transport)."""
    gen = torch.Generator().manual_seed(7)
    V, L, n = 3, 2, 3000
    if finite:
        law = FiniteSequences(torch.tensor([[0, 1], [1, 1], [2, 0]]), torch.tensor([0.5, 0.3, 0.2]), V, Linear())
    else:
        law = FactorizedCategorical(torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], dtype=F64), Linear())
    x0 = torch.randn(n, L, V, generator=gen, dtype=F64)
    fm = ExactFlowMap(law, rtol=1e-7, atol=1e-7)
    X = fm(x0, torch.zeros(n, dtype=F64), torch.ones(n, dtype=F64))
    torch.testing.assert_close(X, torch.nn.functional.one_hot(X.argmax(-1), V).to(F64))  # lands on one-hots
    tokens = X.argmax(-1)
    if finite:
        seqs, w = law.sequences, law.probs_of_sequences
        freq = (tokens[:, None, :] == seqs[None]).all(-1).double().mean(0)
        assert float(freq.sum()) == 1.0  # only sequences of the set come out
    else:
        w = law.marginals.reshape(-1)
        freq = torch.stack([torch.bincount(tokens[:, l], minlength=V) for l in range(L)]).double().reshape(-1) / n
    assert ((freq - w).abs() <= 4.5 * (w * (1 - w) / n).sqrt()).all(), (freq, w)


def test_oracles_refuse_another_interpolant_and_score_samples():
    """An oracle built for one path used on another is an error (no silent mixing); the library's
    total variation is 0 on the law's own probabilities and 1 on impossible sequences."""
    from flowlm import Flow
    from flowlm.oracles import total_variation

    law = FiniteSequences(torch.tensor([[0, 1], [1, 1]]), torch.tensor([0.75, 0.25]), 2, Linear())
    with pytest.raises(ValueError, match="built for"):
        ExactFlowMap(law, Cosine())
    with pytest.raises(ValueError, match="built for the interpolant"):
        Flow.identity(Cosine(), 2).check(law)
    exact = torch.tensor([[0, 1]] * 3 + [[1, 1]])
    assert total_variation(exact, law) == pytest.approx(0.0, abs=1e-12)
    assert total_variation(torch.tensor([[0, 0]] * 4), law) == pytest.approx(1.0)

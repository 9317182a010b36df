"""Same-backbone baselines (AR, MDLM): exact samplers, closed-form losses, warping, learning.

Monte-Carlo bounds. For ``n`` i.i.d. draws from a law ``p`` on ``K`` outcomes, the empirical TV has
``E[TV] ≤ ½ Σ_k √(p_k(1−p_k)/n)`` (Jensen per outcome), and TV moves by at most ``1/n`` when one draw
changes, so by McDiarmid ``P(TV − E[TV] ≥ δ) ≤ exp(−2nδ²)``; ``δ = √(log(1/10⁻⁶)/(2n))`` makes a
false failure a one-in-a-million event. ``tv_bound`` returns the sum.

Why the MDLM sampler is checked against its own exact law, not the data law: with a coarse step,
several tokens unmask in the same step, each from its own marginal given the current state, so one step
gives the product of the marginals. The exact law of the N-step sampler is computed here by
enumerating its Markov chain over partially masked sequences (``mdlm_chain_law``). For many steps the
law approaches the data: the unmasking pattern does not depend on the tokens, each token's unmasking
step is an independent draw, and whenever all ``L`` tokens unmask in distinct steps the sampler is an
exact any-order autoregressive draw; so ``TV(sampler, data) ≤ P(two tokens share a step)``, computed
in closed form by ``collision_probability``. The MDLM law here gives positive weight to all ``V^L``
sequences: after independent draws in one step a sequence outside a smaller set has no posterior.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flowlm.baselines import (
    FiniteSetAR,
    FiniteSetMasked,
    LogLinearMasking,
    ar_inputs,
    ar_loss,
    ar_sample,
    mask_tokens,
    mdlm_loss,
    mdlm_sample,
    sample_categorical,
    subs_log_probs,
    top_p_filter,
    warp_logits,
)
from flowlm.models import AR, MDLM
from flowlm.nets import DiT, DiTConfig
from flowlm.nets.attention import attention

# ---------------------------------------------------------------------------------------------- helpers


def tv_bound(p: np.ndarray, n: int, delta: float = 1e-6) -> float:
    return 0.5 * float(np.sqrt(p * (1 - p) / n).sum()) + math.sqrt(math.log(1 / delta) / (2 * n))


def empirical(tokens: torch.Tensor, V: int) -> np.ndarray:
    L = tokens.shape[1]
    idx = (tokens.long() * (V ** torch.arange(L - 1, -1, -1))).sum(1)
    return np.bincount(idx.numpy(), minlength=V**L) / tokens.shape[0]


def law_vector(seqs: torch.Tensor, w: torch.Tensor, V: int) -> np.ndarray:
    L = seqs.shape[1]
    p = np.zeros(V**L)
    for s, wk in zip(seqs.tolist(), (w / w.sum()).tolist()):
        p[sum(x * V ** (L - 1 - i) for i, x in enumerate(s))] += wk
    return p


def tv(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


def five_sequence_law():
    """5 sequences of length 4 over V = 5 with unequal weights (shared prefixes, so conditionals matter)."""
    seqs = torch.tensor([[0, 1, 2, 3], [0, 1, 4, 4], [0, 2, 2, 1], [3, 3, 0, 1], [4, 0, 1, 2]])
    w = torch.tensor([0.3, 0.1, 0.25, 0.2, 0.15], dtype=torch.float64)
    return seqs, w, 5


def full_support_law(V: int = 3, L: int = 4, seed: int = 0):
    """All V^L sequences with weights exp(2.5·N(0,1)): strongly correlated, full support."""
    g = torch.Generator().manual_seed(seed)
    seqs = torch.tensor(list(itertools.product(range(V), repeat=L)))
    w = torch.exp(2.5 * torch.randn(seqs.shape[0], generator=g, dtype=torch.float64))
    return seqs, w / w.sum(), V


def cyclic_law():
    """Every rotation of (0 1 2 3) (weight .15 each) and of (4 4 1 0) (weight .1 each), V = 5, L = 4.

    Each position has the same marginal. A bidirectional DiT whose only position signal is RoPE maps
    the all-[MASK] input to the same output at every position (equal inputs give equal values, and
    attention mixes only values), so MDLM's first step can only represent position-invariant
    marginals; this law makes the learning test independent of that limitation of the backbone.
    """
    a, b = [0, 1, 2, 3], [4, 4, 1, 0]
    seqs = torch.tensor([a[i:] + a[:i] for i in range(4)] + [b[i:] + b[:i] for i in range(4)])
    w = torch.tensor([0.15] * 4 + [0.1] * 4, dtype=torch.float64)
    return seqs, w, 5


class Tabulated:
    """A masked-diffusion denoiser evaluated once on every partially masked state, then read from a table
    (the same values; makes Monte-Carlo runs of many steps cheap)."""

    def __init__(self, den: FiniteSetMasked, L: int) -> None:
        V = den.vocab_size
        states = torch.tensor(list(itertools.product(range(V + 1), repeat=L)))
        self.table = den(states)  # [(V+1)^L, L, V]
        self.radix = (V + 1) ** torch.arange(L - 1, -1, -1)

    def __call__(self, xt: torch.Tensor) -> torch.Tensor:
        return self.table[(xt * self.radix).sum(-1)]


def np_warp(p: np.ndarray, temperature: float, top_p: float) -> np.ndarray:
    """Independent reference: p^(1/T) renormalized, then keep the most probable until the mass reaches top_p."""
    q = np.where(p > 0, p, 0.0) ** (1.0 / temperature)
    q = q / q.sum()
    order = sorted(range(len(q)), key=lambda i: (-q[i], i))
    keep, mass = [], 0.0
    for i in order:
        if mass >= top_p:
            break
        keep.append(i)
        mass += q[i]
    out = np.zeros_like(q)
    out[keep] = q[keep]
    return out / out.sum()


def mdlm_chain_law(oracle: FiniteSetMasked, L: int, steps: int, t_min: float = 1e-5) -> np.ndarray:
    """Exact output law of the N-step ancestral sampler, by enumerating its Markov chain (float64)."""
    V, m = oracle.vocab_size, oracle.mask_id
    times = np.linspace(1.0, t_min, steps + 1)
    dist = {(m,) * L: 1.0}
    for i in range(steps):
        stay = times[i + 1] / times[i] if i < steps - 1 else 0.0  # (1−α_s)/(1−α_t) = s/t (log-linear)
        new: dict[tuple, float] = {}
        for state, pr in dist.items():
            probs = oracle(torch.tensor([state]))[0].numpy()  # [L, V]
            options = [
                [(m, stay)] + [(v, (1 - stay) * probs[l, v]) for v in range(V)] if x == m else [(x, 1.0)]
                for l, x in enumerate(state)
            ]
            for combo in itertools.product(*options):
                q = pr * math.prod(c[1] for c in combo)
                if q > 0:
                    key = tuple(c[0] for c in combo)
                    new[key] = new.get(key, 0.0) + q
        dist = new
    out = np.zeros(V**L)
    for state, pr in dist.items():
        assert m not in state
        out[sum(x * V ** (L - 1 - i) for i, x in enumerate(state))] += pr
    return out


def collision_probability(L: int, steps: int, t_min: float = 1e-5) -> float:
    """P(two of L tokens unmask in the same step): each token unmasks in step i with probability
    b_i = t_i − t_{i+1} (the last step takes the rest, t_{N−1}); 1 − L!·e_L(b)."""
    t = np.linspace(1.0, t_min, steps + 1)
    b = np.append(t[:-2] - t[1:-1], t[-2]) if steps > 1 else np.array([1.0])
    e = np.zeros(L + 1)
    e[0] = 1.0
    for bi in b:  # elementary symmetric polynomials
        e[1:] = e[1:] + bi * e[:-1]
    return 1.0 - math.factorial(L) * e[L]


# ------------------------------------------------------------------------------------ categorical draws


def test_sample_categorical_frequencies_and_zeros():
    p = torch.tensor([0.5, 0.0, 0.3, 0.2], dtype=torch.float64)
    draws = sample_categorical(p.expand(40_000, 4), torch.Generator().manual_seed(0))
    freq = np.bincount(draws.numpy(), minlength=4) / 40_000
    assert freq[1] == 0.0
    assert tv(freq, p.numpy()) < tv_bound(p.numpy(), 40_000)


def test_temperature_zero_and_small_give_argmax():
    logits = torch.randn(64, 7, generator=torch.Generator().manual_seed(1))
    greedy = warp_logits(logits, temperature=0.0)
    assert torch.equal(greedy.argmax(-1), logits.argmax(-1)) and torch.all(greedy.sum(-1) == 1)
    draws = sample_categorical(warp_logits(logits, temperature=1e-4), torch.Generator().manual_seed(2))
    assert torch.equal(draws, logits.argmax(-1))  # gaps of random logits are far above 1e-4·log(...)
    p1 = warp_logits(logits, temperature=1.0)
    torch.testing.assert_close(p1, torch.softmax(logits.double(), -1))


@given(
    st.lists(st.floats(0.0, 1.0), min_size=2, max_size=8).filter(lambda x: sum(x) > 1e-3),
    st.floats(0.01, 1.0),
)
def test_top_p_keeps_smallest_set_with_mass_at_least_p(raw, top_p):
    p = torch.tensor(raw, dtype=torch.float64)
    p = p / p.sum()
    out = top_p_filter(p, top_p)
    kept = out > 0
    assert float(p[kept].sum()) >= top_p - 1e-12  # mass ≥ p
    assert float(p[kept].sum() - p[kept].min()) < top_p + 1e-12  # dropping its least probable member falls below p
    if (~kept).any():
        assert float(p[kept].min()) >= float(p[~kept].max())  # it is made of the most probable entries
    torch.testing.assert_close(out[kept], p[kept] / p[kept].sum())
    ref = np_warp(p.numpy(), 1.0, top_p)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)


def test_warp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(torch.ones(3), 0.0)
    with pytest.raises(ValueError, match="temperature"):
        warp_logits(torch.ones(3), temperature=-1.0)


# ------------------------------------------------------------------------------------------------- AR


def test_ar_oracle_conditionals_by_bayes():
    seqs, w, V = five_sequence_law()
    ar = FiniteSetAR(seqs, w, V)
    prefix = torch.tensor([[V, 0, 1]])
    p = ar(prefix).exp()[0].numpy()
    # sequences starting 0 1: #0 (w .3, next 2) and #1 (w .1, next 4)
    np.testing.assert_allclose(p, [0, 0, 0.75, 0, 0.25], atol=1e-15)
    with pytest.raises(ValueError, match="agrees"):
        ar(torch.tensor([[V, 1]]))


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.6, 0.8)])
def test_ar_sampler_exact_on_finite_set(temperature, top_p):
    seqs, w, V = five_sequence_law()
    ar = FiniteSetAR(seqs, w, V)
    L = seqs.shape[1]
    # exact law of the warped sampler: product of warped conditionals along the prefix tree (numpy reference)
    expected = np.zeros(V**L)

    def walk(prefix, prob):
        if len(prefix) == L:
            expected[sum(x * V ** (L - 1 - i) for i, x in enumerate(prefix))] += prob
            return
        cond = ar(torch.tensor([[V, *prefix]])).exp()[0].numpy()
        q = np_warp(cond, temperature, top_p)
        for v in range(V):
            if q[v] > 0:
                walk(prefix + [v], prob * q[v])

    walk([], 1.0)
    if temperature == 1.0 and top_p == 1.0:
        np.testing.assert_allclose(expected, law_vector(seqs, w, V), atol=1e-12)
    else:
        assert tv(expected, law_vector(seqs, w, V)) > 0.1  # warping changes the law (so the check discriminates)
    n = 20_000
    out = ar_sample(ar, n, L, ar.bos_id, temperature=temperature, top_p=top_p, generator=torch.Generator().manual_seed(0))
    assert out.nfe == L and out.tokens.shape == (n, L) and out.probs.shape == (n, L, V)
    assert tv(empirical(out.tokens, V), expected) < tv_bound(expected, n)


def test_ar_loss_closed_form():
    """With the exact conditionals, the per-sequence AR loss is −log p(x)/L (the chain rule)."""
    seqs, w, V = five_sequence_law()
    ar = FiniteSetAR(seqs, w, V)
    for k in range(seqs.shape[0]):
        loss = ar_loss(ar.teacher_forced(seqs[k:k + 1]), seqs[k:k + 1])
        assert abs(float(loss) + math.log(float(w[k] / w.sum())) / 4) < 1e-12
    # the batch mean is the mean of the per-sequence values
    loss = ar_loss(ar.teacher_forced(seqs), seqs)
    assert abs(float(loss) + float(torch.log(w / w.sum()).mean()) / 4) < 1e-12


def test_ar_inputs_shift():
    tokens = torch.tensor([[3, 1, 2]])
    assert ar_inputs(tokens, 9).tolist() == [[9, 3, 1]]


# ----------------------------------------------------------------------------------------------- MDLM


def test_masked_oracle_posterior_by_bayes():
    seqs, w, V = five_sequence_law()
    den = FiniteSetMasked(seqs, w, V)
    m = den.mask_id
    p = den(torch.tensor([[0, m, 2, m]]))[0].numpy()
    # consistent: #0 (w .3: 0 1 2 3) and #2 (w .25: 0 2 2 1)
    np.testing.assert_allclose(p[1], [0, 0.3 / 0.55, 0.25 / 0.55, 0, 0], atol=1e-15)
    np.testing.assert_allclose(p[3], [0, 0.25 / 0.55, 0, 0.3 / 0.55, 0], atol=1e-15)
    np.testing.assert_allclose(p[0], [1, 0, 0, 0, 0])  # SUBS: unmasked tokens are copied
    with pytest.raises(ValueError, match="agrees"):
        den(torch.tensor([[1, m, m, m]]))


def test_schedule_and_times():
    sch = LogLinearMasking(1e-3)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(sch.alpha(t), torch.tensor([1.0, 1 - 0.999 / 2, 1e-3], dtype=torch.float64))
    # −α'/(1−α) = (1−ε)/((1−ε)t) = 1/t
    torch.testing.assert_close(sch.weight(t[1:]), 1 / t[1:])
    ts = sch.sample_times(1000, generator=torch.Generator().manual_seed(0))
    assert float(ts.min()) >= 1e-3 and float(ts.max()) <= 1.0
    strata = ((ts.double() - 1e-3) / (1 - 1e-3) * 1000).floor().long().clamp(max=999)
    assert sorted(strata.tolist()) == list(range(1000))  # antithetic: one draw per stratum
    tokens = torch.zeros(20_000, 4, dtype=torch.long)
    xt = mask_tokens(tokens, torch.full((20_000,), 0.5), sch, 7, torch.Generator().manual_seed(1))
    frac = float((xt == 7).double().mean())
    assert abs(frac - 0.999 * 0.5) < 4 * math.sqrt(0.25 / 80_000)


@pytest.mark.parametrize("steps", [1, 3])
def test_mdlm_sampler_exact_law_of_its_chain(steps):
    seqs, w, V = full_support_law()
    den = FiniteSetMasked(seqs, w, V)
    L = seqs.shape[1]
    expected = mdlm_chain_law(den, L, steps)
    assert abs(expected.sum() - 1) < 1e-12
    data = law_vector(seqs, w, V)
    n = 20_000
    bound = tv_bound(expected, n)
    if steps == 1:  # one step draws every token from its marginal: the product of the marginals
        marg = den(torch.full((1, L), V))[0].numpy()  # [L, V]
        prod = np.array([math.prod(marg[l, x] for l, x in enumerate(s)) for s in seqs.tolist()])
        np.testing.assert_allclose(expected, prod, atol=1e-12)
    assert tv(expected, data) > 2 * bound  # the check tells the chain's law from the data law
    out = mdlm_sample(den, n, L, V, steps, generator=torch.Generator().manual_seed(steps))
    assert (out.tokens < V).all() and out.nfe <= steps
    assert tv(empirical(out.tokens, V), expected) < bound


def test_mdlm_sampler_many_steps_reaches_the_law():
    seqs, w, V = full_support_law()
    den = FiniteSetMasked(seqs, w, V)
    L, steps, n = seqs.shape[1], 512, 20_000
    coll = collision_probability(L, steps)
    assert 0 < coll < 0.02
    assert abs(collision_probability(L, 1) - 1.0) < 1e-12 and abs(collision_probability(2, 2) - 0.5) < 1e-5
    data = law_vector(seqs, w, V)
    out = mdlm_sample(Tabulated(den, L), n, L, V, steps, generator=torch.Generator().manual_seed(5))
    assert tv(empirical(out.tokens, V), data) < tv_bound(data, n) + coll
    one_step = mdlm_chain_law(den, L, 1)
    assert tv(one_step, data) > 2 * (tv_bound(data, n) + coll)  # the bound is tight enough to see the 1-step error


def test_mdlm_sampler_caches_and_counts_nfe_honestly():
    seqs, w, V = full_support_law()
    inner = FiniteSetMasked(seqs, w, V)
    calls, states = [], []

    def den(xt):
        calls.append(1)
        states.append(xt.clone())
        return inner(xt)

    out = mdlm_sample(den, 1, 4, V, 1000, generator=torch.Generator().manual_seed(0))
    assert out.nfe == len(calls) <= 4  # L = 4 tokens: at most one call per distinct state before the last unmasking
    assert all(not torch.equal(a, b) for a, b in zip(states, states[1:]))  # never called twice on the same state


def mdlm_loss_closed_form(den: FiniteSetMasked, seqs, w, eps: float) -> float:
    """E_t E_x E_mask[(1/L)Σ_masked (1/t)(−log p(x^ℓ|x_t))] by enumeration of masks and exact Gauss–Legendre in t."""
    L = seqs.shape[1]
    V = den.vocab_size
    wn = (w / w.sum()).numpy()
    # c[k] = Σ_x p(x) Σ_{M: |M| = k} Σ_{ℓ∈M} −log p(x^ℓ | x outside M)
    c = np.zeros(L + 1)
    for M in itertools.chain.from_iterable(itertools.combinations(range(L), k) for k in range(1, L + 1)):
        xt = seqs.clone()
        xt[:, list(M)] = V
        logp = den(xt).log()  # [K, L, V]
        nll = -logp.gather(-1, seqs[..., None]).squeeze(-1)[:, list(M)].sum(1).numpy()  # [K]
        c[len(M)] += float((wn * nll).sum())
    nodes, weights = np.polynomial.legendre.leggauss(8)  # exact for the degree ≤ L−1 integrand
    t = eps + (1 - eps) * (nodes + 1) / 2
    a = (1 - eps) * t  # mask probability
    integrand = sum(c[k] * a**k * (1 - a) ** (L - k) for k in range(1, L + 1)) / t / L
    return float((weights * integrand).sum() / 2)  # ∫_ε^1 · dt/(1−ε), dt = (1−ε)/2 dnode


def test_mdlm_loss_matches_closed_form():
    seqs, w, V = full_support_law()
    den = FiniteSetMasked(seqs, w, V)
    sch = LogLinearMasking(1e-3)
    expected = mdlm_loss_closed_form(den, seqs, w, 1e-3)
    g = torch.Generator().manual_seed(0)
    per_seq = []
    for _ in range(40):
        idx = sample_categorical((w / w.sum()).expand(2048, -1), g)
        tokens = seqs[idx]
        t = sch.sample_times(2048, generator=g)
        xt = mask_tokens(tokens, t, sch, V, g)
        logp = den(xt).log()
        # per-sequence values (mdlm_loss of a single row), and the batch value is their mean
        rows = torch.stack([mdlm_loss(logp[i:i + 1], tokens[i:i + 1], xt[i:i + 1], t[i:i + 1], sch, V) for i in range(0, 2048, 64)])
        batch = mdlm_loss(logp, tokens, xt, t, sch, V)
        masked = xt == V
        nll = -logp.gather(-1, tokens[..., None]).squeeze(-1)
        vals = torch.where(masked, nll / t.double()[:, None], torch.zeros_like(nll)).mean(1)
        torch.testing.assert_close(batch, vals.mean())
        torch.testing.assert_close(rows, vals[::64])
        per_seq.append(vals)
    vals = torch.cat(per_seq)
    se = float(vals.std()) / math.sqrt(vals.numel())  # i.i.d. bound; stratified t only lowers the variance
    assert abs(float(vals.mean()) - expected) < 5 * se, (float(vals.mean()), expected, se)
    # with ε → 0 and the exact posterior the NELBO is tight: averaged over the unmasking orders it is the
    # chain rule of every order, so it equals the entropy per token (an independent check of the 1/t weight)
    H = -float((w * w.log()).sum()) / 4
    assert abs(mdlm_loss_closed_form(den, seqs, w, 1e-12) - H) < 1e-9


def test_mdlm_loss_constant_network_closed_form():
    """A network with the same p = π at every masked position: E[loss] = (1−ε)·E_x[mean_ℓ −log π(x^ℓ)]."""
    seqs, w, V = five_sequence_law()
    pi = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25], dtype=torch.float64)
    sch = LogLinearMasking(1e-3)
    expected = (1 - 1e-3) * float((w / w.sum() * (-pi.log()[seqs]).mean(1)).sum())
    g = torch.Generator().manual_seed(3)
    vals = []
    for _ in range(20):
        tokens = seqs[sample_categorical((w / w.sum()).expand(4096, -1), g)]
        t = sch.sample_times(4096, generator=g)
        xt = mask_tokens(tokens, t, sch, V, g)
        logits = torch.cat((pi.log().expand(4096, 4, V), torch.zeros(4096, 4, 1, dtype=torch.float64)), -1)
        vals.append(mdlm_loss(subs_log_probs(logits, xt, V), tokens, xt, t, sch, V))
    vals = torch.stack(vals)
    assert abs(float(vals.mean()) - expected) < 5 * float(vals.std()) / math.sqrt(20) + 1e-3


def test_subs_log_probs():
    logits = torch.randn(2, 3, 5)
    xt = torch.tensor([[4, 1, 4], [0, 4, 3]])
    lp = subs_log_probs(logits, xt, 4)
    torch.testing.assert_close(lp[0, 0], torch.log_softmax(logits[0, 0, :4], -1))
    assert lp[0, 1, 1] == 0 and torch.isinf(lp[0, 1, [0, 2, 3]]).all()
    with pytest.raises(ValueError, match="last logit"):
        subs_log_probs(logits, xt, 2)


# --------------------------------------------------------------------------------------- models on a DiT

TINY = DiTConfig(vocab_size=5, max_length=4, width=32, depth=2, heads=2, cond=16, dropout=0.0)


def test_causal_attention_masks_the_future_and_kernels_agree():
    torch.manual_seed(0)
    cfg = DiTConfig(vocab_size=7, max_length=6, width=32, depth=2, heads=2, cond=16, dropout=0.0,
                    attn_softcap=None, causal=True, attention="math")
    net = DiT(cfg)
    for p in net.parameters():  # make every layer matter (the default init zeroes the adaLN gates and head)
        torch.nn.init.normal_(p, std=0.2)
    h = torch.randn(2, 6, 32)
    tau = torch.rand(2)
    out = net(h, tau)
    h2 = h.clone()
    h2[:, 4:] = torch.randn(2, 2, 32)
    out2 = net(h2, tau)
    torch.testing.assert_close(out[:, :4], out2[:, :4])  # positions < 4 do not see positions ≥ 4
    assert (out[:, 4:] - out2[:, 4:]).abs().max() > 1e-3
    sdpa = DiT(cfg.replace(attention="sdpa"))
    sdpa.load_state_dict(net.state_dict())
    torch.testing.assert_close(sdpa(h, tau), out, atol=1e-5, rtol=1e-5)
    bidir = DiT(cfg.replace(causal=False))
    bidir.load_state_dict(net.state_dict())
    assert (bidir(h2, tau)[:, :4] - bidir(h, tau)[:, :4]).abs().max() > 1e-3  # the default stays bidirectional
    assert DiTConfig(vocab_size=3, max_length=2).causal is False
    q, k, v = torch.randn(3, 2, 2, 6, 8).unbind(0)
    torch.testing.assert_close(attention(q, k, v, 50.0, "flex", causal=True), attention(q, k, v, 50.0, "math", causal=True))
    assert "causal" not in DiTConfig(vocab_size=3, max_length=2).to_dict()  # old saved configs compare equal
    assert DiTConfig.from_dict(cfg.to_dict()) == cfg


def _randomize(model):
    g = torch.Generator().manual_seed(0)
    for p in model.parameters():
        with torch.no_grad():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


def test_ar_model_loss_equals_plain_next_token_ce():
    model = _randomize(AR(TINY))
    assert model.kind == "ar" and model.net.config.vocab_size == 6 and model.net.config.causal
    tokens = torch.randint(0, 5, (6, 4), generator=torch.Generator().manual_seed(1))
    logits = model.logits(ar_inputs(tokens, model.bos_id))
    torch.testing.assert_close(model.loss(tokens), ar_loss(logits, tokens))
    mask = torch.rand(6, 4, generator=torch.Generator().manual_seed(2)) < 0.7
    torch.testing.assert_close(model.loss(tokens, mask), ar_loss(logits, tokens, mask))
    # next_logits at each prefix equals the teacher-forced logits (causal: later inputs do not matter)
    for l in range(4):
        torch.testing.assert_close(model.next_logits(ar_inputs(tokens, model.bos_id)[:, :l + 1]), logits[:, l],
                                   atol=1e-5, rtol=1e-5)


def test_mdlm_model_loss_equals_plain_subs_loss_and_gradient():
    model = _randomize(MDLM(TINY))
    assert model.kind == "mdlm" and model.net.config.vocab_size == 6 and not model.net.config.causal
    tokens = torch.randint(0, 5, (16, 4), generator=torch.Generator().manual_seed(1))
    loss = model.loss(tokens, generator=torch.Generator().manual_seed(7))
    grads = torch.autograd.grad(loss, model.net.head.weight)[0]
    g = torch.Generator().manual_seed(7)  # the same draws as inside model.loss
    t = model.schedule.sample_times(16, generator=g)
    xt = mask_tokens(tokens, t, model.schedule, model.mask_id, g)
    assert (xt == model.mask_id).any()
    full = torch.cat((model.logits(xt), torch.zeros(16, 4, 1)), -1)  # the mask logit is dropped by SUBS anyway
    ref = mdlm_loss(subs_log_probs(full, xt, model.mask_id), tokens, xt, t, model.schedule, model.mask_id)
    torch.testing.assert_close(loss, ref)
    ref_grads = torch.autograd.grad(ref, model.net.head.weight)[0]
    torch.testing.assert_close(grads, ref_grads, atol=1e-6, rtol=1e-4)
    assert grads[5].abs().max() == 0  # the mask row of the head is never trained
    # with a padding mask: positions outside it are never masked and the mean runs over the counted tokens
    keep = torch.rand(16, 4, generator=torch.Generator().manual_seed(3)) < 0.6
    loss_m = model.loss(tokens, keep, generator=torch.Generator().manual_seed(7))
    xt_m = torch.where(keep, xt, tokens)
    lp = subs_log_probs(torch.cat((model.logits(xt_m), torch.zeros(16, 4, 1)), -1), xt_m, model.mask_id)
    nll = -lp.gather(-1, tokens[..., None]).squeeze(-1)
    ref_m = torch.where(xt_m == model.mask_id, nll / t[:, None], torch.zeros_like(nll)).sum() / keep.sum()
    torch.testing.assert_close(loss_m, ref_m)
    probs = model.denoiser(xt)
    torch.testing.assert_close(probs.sum(-1), torch.ones(16, 4))
    unmasked = xt != model.mask_id
    assert torch.equal(probs[unmasked].argmax(-1), xt[unmasked]) and (probs[unmasked].max(-1).values == 1).all()


def test_models_refuse_bad_input():
    with pytest.raises(ValueError, match="steps"):
        AR(TINY).sample(2, 4, steps=2)
    with pytest.raises(ValueError, match="max_length"):
        MDLM(TINY).sample(2, 5)
    with pytest.raises(ValueError, match="two_time"):
        MDLM(TINY.replace(two_time=True))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ar", "mdlm"])
def test_tiny_model_learns_toy_law(kind):
    """Train a 2-block DiT for 300 steps on the cyclic law: its loss approaches the loss of the exact model
    (AR: H/L; MDLM: the NELBO of the exact posterior, both minimal in expectation), and its samples approach
    the law (MDLM at 64 steps: up to the sampler's own error, at most the collision probability)."""
    torch.manual_seed(0)
    seqs, w, V = cyclic_law()
    cfg = DiTConfig(vocab_size=V, max_length=4, width=48, depth=2, heads=2, cond=16, dropout=0.0)
    model = AR(cfg) if kind == "ar" else MDLM(cfg)
    if kind == "ar":
        optimum = -float((w * w.log()).sum()) / 4
    else:
        optimum = mdlm_loss_closed_form(FiniteSetMasked(seqs, w, V), seqs, w, model.schedule.eps)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(300):
        tokens = seqs[sample_categorical((w / w.sum()).expand(128, -1), g)]
        loss = model.loss(tokens, generator=g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    first, last = np.mean(losses[:5]), np.mean(losses[-50:])
    assert last < 0.5 * first and 0.9 * optimum < last < 1.25 * optimum, (first, last, optimum)
    steps = None if kind == "ar" else 64
    out = model.sample(1000, 4, steps=steps, generator=torch.Generator().manual_seed(1))
    sampler_error = 0.0 if kind == "ar" else collision_probability(4, 64)
    # 1000 draws on 8 outcomes: MC noise about 0.04; learning error allowed: the rest of 0.1
    assert tv(empirical(out.tokens, V), law_vector(seqs, w, V)) < 0.1 + sampler_error

"""Networks: DiT conditioning and initialization, attention kernels, RoPE, the projected space, wrappers."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, strategies as st

from flowlm import Flow
from flowlm.denoisers import Denoiser, TwoTimeDenoiser
from flowlm.interpolants import Cosine, Linear
from flowlm.models import FLM, FMLM
from flowlm.nets import (
    DiT,
    DiTConfig,
    NetDenoiser,
    NetTwoTimeDenoiser,
    ProjectedSpace,
    RotaryEmbedding,
    SelfAttention,
    sinusoidal_embedding,
)
from flowlm.states import OneHotSpace

SMALL = dict(max_length=12, width=32, depth=2, heads=4, cond=16, dropout=0.0)


def _randomize(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> None:
    """Give every parameter (including the zero-initialized ones) non-trivial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


# --------------------------------------------------------------------------- config & initialization
def test_config_round_trip_and_validation():
    cfg = DiTConfig(vocab_size=11, two_time=True, attn_softcap=None, **SMALL)
    assert DiTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="divisible by heads"):
        DiTConfig(vocab_size=11, max_length=8, width=30, heads=4)
    with pytest.raises(ValueError, match="cannot apply attn_softcap"):
        DiTConfig(vocab_size=11, max_length=8, attention="sdpa")
    with pytest.raises(ValueError, match="unknown keys"):
        DiTConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_default_config_is_the_paper_dit():
    cfg = DiTConfig(vocab_size=30522, max_length=128)
    assert (cfg.depth, cfg.width, cfg.heads, cfg.mlp_ratio, cfg.cond, cfg.time_features) == (12, 768, 12, 4, 128, 256)
    assert (cfg.dropout, cfg.attn_softcap, cfg.out_softcap) == (0.1, 50.0, 30.0)
    net = DiT(cfg.replace(depth=1))  # one block is enough to check the block layout
    assert net.E.shape == (30522, 768)
    block = net.blocks[0]
    assert block.mlp[0].out_features == 4 * 768 and block.mlp[1].approximate == "tanh"


def test_parameter_names_shapes_and_order_are_the_authors():
    """REFERENCE §1: the authors' state-dict keys, in their registration order (their EMA list is positional).

    Disagreement with REFERENCE §1 (December 2026): its table lists the output layer as norm_final,
    adaLN_modulation, linear, but the authors' code registers norm_final, linear, adaLN_modulation
    (their DDiTFinalLayer), which is the order of their EMA list; this test and the parity tests in
    tests/test_hub.py follow the code."""
    V, D, C, depth = 11, 32, 16, 2
    for two_time in (False, True):
        net = DiT(DiTConfig(vocab_size=V, two_time=two_time, **{**SMALL, "cond": C, "depth": depth}))
        want = [("vocab_embed.embedding", (V, D)),
                ("sigma_map.mlp.0.weight", (C, 256)), ("sigma_map.mlp.0.bias", (C,)),
                ("sigma_map.mlp.2.weight", (C, C)), ("sigma_map.mlp.2.bias", (C,))]
        if two_time:
            want += [(k.replace("sigma_map", "sigma_map_prime"), s) for k, s in want[1:5]]
        for i in range(depth):
            b = f"blocks.{i}."
            want += [(b + "norm1.weight", (D,)), (b + "attn_qkv.weight", (3 * D, D)), (b + "attn_out.weight", (D, D)),
                     (b + "norm2.weight", (D,)), (b + "mlp.0.weight", (4 * D, D)), (b + "mlp.0.bias", (4 * D,)),
                     (b + "mlp.2.weight", (D, 4 * D)), (b + "mlp.2.bias", (D,)),
                     (b + "adaLN_modulation.weight", (6 * D, C)), (b + "adaLN_modulation.bias", (6 * D,))]
        want += [("output_layer.norm_final.weight", (D,)), ("output_layer.linear.weight", (V, D)),
                 ("output_layer.linear.bias", (V,)), ("output_layer.adaLN_modulation.weight", (2 * D, C)),
                 ("output_layer.adaLN_modulation.bias", (2 * D,))]
        got = [(k, tuple(p.shape)) for k, p in net.named_parameters()]
        assert got == want
        assert list(net.state_dict()) == [k for k, _ in want]  # no buffers are saved (RoPE tables are rebuilt)
        assert len(want) == 1 + 4 * (1 + two_time) + 10 * depth + 5  # 130 / 134 for 12 blocks


def test_old_flowlm_configs_are_refused_with_what_changed():
    old = {**DiTConfig(vocab_size=11, **SMALL).to_dict(), "time_dim": 16}
    del old["cond"], old["time_features"]
    with pytest.raises(ValueError, match="older flowlm.*time_dim.*cond"):
        DiTConfig.from_dict(old)
    from flowlm.presets import ConfigError, RunConfig, preset

    run = {k.split(".")[-1]: v for k, v in preset("tiny").to_flat().items() if not k.startswith(("distill.", "sample."))}
    run["time_dim"] = run.pop("cond")  # a run folder of the first release: flat keys, time_dim
    with pytest.raises(ConfigError, match="older flowlm.*LayerNorms without weights"):
        RunConfig.from_dict(run)


def test_zero_initialized_head_gives_uniform_denoiser_and_log_v_loss():
    torch.manual_seed(0)
    model = FLM(DiTConfig(vocab_size=13, **SMALL))
    h = model.space.noise(3, 12)
    logits = model.net(h, torch.rand(3))
    assert torch.equal(logits, torch.zeros_like(logits))
    loss, _ = model.loss(torch.randint(0, 13, (4, 12)))
    assert loss.item() == pytest.approx(math.log(13), abs=1e-6)


def test_input_is_x_times_E_without_bias():
    """The network sees a V-wide state only through x @ E: adding a vector of E's left null space changes nothing."""
    torch.manual_seed(1)
    V = 40  # > d = 32, so E (V×d) has a non-trivial left null space
    net = DiT(DiTConfig(vocab_size=V, **SMALL)).double()
    _randomize(net)
    flow = Flow.identity(Linear(), V)
    x = torch.randn(2, 12, V, dtype=torch.float64)
    t = torch.rand(2, dtype=torch.float64)
    wide = NetDenoiser(net, flow, OneHotSpace(V))
    torch.testing.assert_close(wide(x, t), NetDenoiser(net, flow, ProjectedSpace(net))(x @ net.E, t), rtol=0, atol=1e-12)
    null = torch.linalg.svd(net.E.detach().T, full_matrices=True).Vh[-1]  # [V], null @ E = 0
    assert (null @ net.E).abs().max() < 1e-12
    torch.testing.assert_close(wide(x + 5.0 * null, t), wide(x, t), rtol=1e-9, atol=1e-9)
    # and no input bias: the zero state enters as h = 0
    torch.testing.assert_close(wide(torch.zeros_like(x), t), net(torch.zeros(2, 12, 32, dtype=torch.float64), t))


def test_output_logits_are_soft_capped():
    torch.manual_seed(2)
    capped = DiT(DiTConfig(vocab_size=7, **SMALL))
    _randomize(capped, scale=3.0)
    with torch.no_grad():
        capped.head.weight.mul_(100.0)
    raw = DiT(DiTConfig(vocab_size=7, out_softcap=None, **SMALL))
    raw.load_state_dict(capped.state_dict())
    h, tau = torch.randn(2, 12, 32), torch.rand(2)
    z = raw(h, tau)
    assert z.abs().max() > 60  # the cap is actually exercised
    out = capped(h, tau)
    assert out.abs().max() <= 30.0
    torch.testing.assert_close(out, 30.0 * torch.tanh(z / 30.0))


# --------------------------------------------------------------------------- time conditioning
def test_sinusoidal_embedding_is_the_authors():
    """256 features, cos half first, ω_i = 1e4^(-i/128), τ unscaled (REFERENCE §1), written element by element."""
    tau = torch.tensor([0.0, 0.25, 1.0, 0.7], dtype=torch.float64)
    emb = sinusoidal_embedding(tau, 256)
    assert emb.shape == (4, 256)
    for b in range(4):
        for i in (0, 1, 64, 127):
            w = math.exp(-math.log(10_000.0) * i / 128)
            assert float(emb[b, i]) == pytest.approx(math.cos(float(tau[b]) * w), abs=1e-14)
            assert float(emb[b, 128 + i]) == pytest.approx(math.sin(float(tau[b]) * w), abs=1e-14)
    # per-token times [B, L] give per-token features
    tt = torch.rand(2, 3, dtype=torch.float64)
    torch.testing.assert_close(sinusoidal_embedding(tt, 256)[1, 2], sinusoidal_embedding(tt[1, 2:3], 256)[0])


def test_per_token_times_equal_per_sequence_times_when_constant():
    torch.manual_seed(16)
    net = DiT(DiTConfig(vocab_size=9, two_time=True, **SMALL)).double()
    _randomize(net)
    h = torch.randn(2, 12, 32, dtype=torch.float64)
    s, t = torch.tensor([0.2, 0.7], dtype=torch.float64), torch.tensor([0.5, 0.9], dtype=torch.float64)
    want = net(h, s, t)
    torch.testing.assert_close(net(h, s[:, None].expand(2, 12), t[:, None].expand(2, 12)), want)
    s_tok = s[:, None].repeat(1, 12)
    s_tok[0, 3] = 1.0  # one token at another time changes the output
    assert (net(h, s_tok, t[:, None].expand(2, 12)) - want).abs().max() > 1e-6


def test_single_and_two_time_argument_checks():
    one = DiT(DiTConfig(vocab_size=5, **SMALL))
    two = DiT(DiTConfig(vocab_size=5, two_time=True, **SMALL))
    h, tau = torch.randn(2, 12, 32), torch.rand(2)
    with pytest.raises(ValueError, match="single-time"):
        one(h, tau, tau)
    with pytest.raises(ValueError, match="pass tau_t"):
        two(h, tau)
    with pytest.raises(ValueError, match=r"\[B, L, 32\]"):
        one(torch.randn(2, 12, 5), tau)


def test_two_time_net_depends_on_the_second_time():
    torch.manual_seed(3)
    net = DiT(DiTConfig(vocab_size=6, two_time=True, **SMALL))
    _randomize(net)
    h, tau = torch.randn(2, 12, 32), torch.rand(2)
    a = net(h, tau, torch.zeros(2))
    b = net(h, tau, torch.ones(2))
    assert (a - b).abs().max() > 1e-3


def test_from_teacher_student_equals_teacher_at_step_zero():
    torch.manual_seed(4)
    flm = FLM(DiTConfig(vocab_size=10, **SMALL), Flow.decoding_error(Linear(), 10))
    _randomize(flm.net)  # a "trained" teacher: non-zero head and adaLN
    student = FMLM.from_teacher(flm)
    assert student.net.config.two_time and not flm.net.config.two_time
    assert student.net is not flm.net and student.net.E.data_ptr() != flm.net.E.data_ptr()
    x = student.space.noise(3, 12, dtype=torch.float32)
    s = torch.tensor([0.0, 0.3, 0.7])
    t = torch.tensor([1.0, 0.5, 0.9])
    delta = student.delta(x, s, t)
    teacher = flm.denoiser(x, s)
    assert teacher.abs().max() > 1e-2  # not the trivial zero output
    torch.testing.assert_close(delta, teacher, rtol=0, atol=1e-6)
    assert isinstance(student.delta, NetTwoTimeDenoiser)
    # the copy is deep: training the student leaves the teacher alone
    with torch.no_grad():
        student.net.head.weight.add_(1.0)
    torch.testing.assert_close(flm.denoiser(x, s), teacher)


# --------------------------------------------------------------------------- attention kernels
def _reference_attention(x, attn: SelfAttention, rope_base: float = 10_000.0):
    """Float64 oracle written independently: complex-number RoPE, explicit per-head loops."""
    B, L, W = x.shape
    H = attn.heads
    Dh = W // H
    assert attn.qkv.bias is None and attn.proj.bias is None  # the authors' projections have no bias
    qkv = x @ attn.qkv.weight.T.double()
    q, k, v = qkv.split(W, dim=-1)
    half = Dh // 2
    omega = rope_base ** (-torch.arange(half, dtype=torch.float64) * 2 / Dh)
    rot = torch.polar(torch.ones(L, half, dtype=torch.float64), torch.arange(L, dtype=torch.float64)[:, None] * omega)
    out = torch.zeros(B, L, W, dtype=torch.float64)
    for hd in range(H):
        sl = slice(hd * Dh, (hd + 1) * Dh)

        def rope(a):
            c = torch.complex(a[..., :half], a[..., half:]) * rot  # pair (i, i + Dh/2) as one complex number
            return torch.cat((c.real, c.imag), dim=-1)

        qh, kh, vh = rope(q[..., sl]), rope(k[..., sl]), v[..., sl]
        s = torch.einsum("bld,bmd->blm", qh, kh) / math.sqrt(Dh)
        if attn.cap:
            s = attn.cap * torch.tanh(s / attn.cap)
        out[..., sl] = torch.einsum("blm,bmd->bld", s.softmax(-1), vh)
    return out @ attn.proj.weight.T.double()


@pytest.mark.parametrize("cap", [None, 5.0])
def test_math_attention_matches_independent_oracle(cap):
    torch.manual_seed(5)
    attn = SelfAttention(16, 2, cap=cap, kind="math").double()
    with torch.no_grad():
        attn.qkv.weight.mul_(8.0)  # large logits: the cap changes the result a lot
    rope = RotaryEmbedding(8, 10)
    x = torch.randn(2, 10, 16, dtype=torch.float64)
    cos, sin = rope(10, torch.float64)
    torch.testing.assert_close(attn(x, cos, sin), _reference_attention(x, attn), rtol=1e-10, atol=1e-10)


def test_cap_is_applied():
    torch.manual_seed(6)
    capped = SelfAttention(16, 2, cap=2.0, kind="math").double()
    free = SelfAttention(16, 2, cap=None, kind="math").double()
    free.load_state_dict(capped.state_dict())
    with torch.no_grad():
        capped.qkv.weight.mul_(8.0)
        free.qkv.weight.mul_(8.0)
    cos, sin = RotaryEmbedding(8, 10)(10, torch.float64)
    x = torch.randn(2, 10, 16, dtype=torch.float64)
    assert (capped(x, cos, sin) - free(x, cos, sin)).abs().max() > 1e-2


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_fast_paths_agree_with_the_math_path():
    """sdpa (no cap: fused kernels cannot cap) and flex (cap as score_mod) compute the math path's function."""
    torch.manual_seed(7)
    cos, sin = RotaryEmbedding(8, 16)(16, torch.float32)
    x = torch.randn(3, 16, 32)
    m_free = SelfAttention(32, 4, cap=None, kind="math")
    sdpa = SelfAttention(32, 4, cap=None, kind="sdpa")
    sdpa.load_state_dict(m_free.state_dict())
    torch.testing.assert_close(sdpa(x, cos, sin), m_free(x, cos, sin), rtol=1e-5, atol=1e-5)
    m_cap = SelfAttention(32, 4, cap=3.0, kind="math")
    with torch.no_grad():
        m_cap.qkv.weight.mul_(6.0)
    flex = SelfAttention(32, 4, cap=3.0, kind="flex")
    flex.load_state_dict(m_cap.state_dict())
    with torch.no_grad():  # eager flex on CPU is forward-only (no backward kernel)
        torch.testing.assert_close(flex(x, cos, sin), m_cap(x, cos, sin), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="cannot apply the attention soft-cap"):
        SelfAttention(32, 4, cap=3.0, kind="sdpa")


def test_forward_mode_jvp_through_the_dit_matches_finite_differences():
    """torch.func.jvp runs through the network (auto attention takes the plain-math path)."""
    torch.manual_seed(8)
    net = DiT(DiTConfig(vocab_size=7, two_time=True, **SMALL)).double()
    _randomize(net)
    h = torch.randn(2, 12, 32, dtype=torch.float64)
    tau_s = torch.tensor([0.2, 0.6], dtype=torch.float64)
    tau_t = torch.tensor([0.5, 0.9], dtype=torch.float64)
    dh = torch.randn_like(h)

    def f(hh, tt):
        return net(hh, tau_s, tt)

    _, tangent = torch.func.jvp(f, (h, tau_t), (dh, torch.ones_like(tau_t)))
    eps = 1e-7  # small: the time embedding has frequencies up to 1000, so O(eps²) truncation matters
    fd = (f(h + eps * dh, tau_t + eps) - f(h - eps * dh, tau_t - eps)) / (2 * eps)
    torch.testing.assert_close(tangent, fd, rtol=1e-4, atol=1e-5)
    assert tangent.abs().max() > 1e-3


# --------------------------------------------------------------------------- RoPE
@given(shift=st.integers(0, 20), seed=st.integers(0, 2**16))
def test_rope_scores_depend_only_on_position_offset(shift, seed):
    g = torch.Generator().manual_seed(seed)
    rope = RotaryEmbedding(8, 64)
    cos, sin = rope(64, torch.float64)
    from flowlm.nets.rope import apply_rotary

    q = torch.randn(8, generator=g, dtype=torch.float64)
    k = torch.randn(8, generator=g, dtype=torch.float64)
    qs = apply_rotary(q.expand(1, 1, 64, 8), cos, sin)[0, 0]  # q placed at every position
    ks = apply_rotary(k.expand(1, 1, 64, 8), cos, sin)[0, 0]
    l, m = 3, 10
    a = qs[l] @ ks[m]
    b = qs[l + shift] @ ks[m + shift]
    assert float(a) == pytest.approx(float(b), abs=1e-9)


# --------------------------------------------------------------------------- projected space
def test_projected_space_one_hot_and_embed_are_products_with_E():
    torch.manual_seed(9)
    net = DiT(DiTConfig(vocab_size=20, **SMALL)).double()
    space = ProjectedSpace(net)
    tokens = torch.randint(0, 20, (3, 12))
    x1 = torch.nn.functional.one_hot(tokens, 20).double()
    torch.testing.assert_close(space.one_hot(tokens), x1 @ net.E, rtol=0, atol=0)
    probs = torch.rand(3, 12, 20, dtype=torch.float64).softmax(-1)
    torch.testing.assert_close(space.embed(probs), probs @ net.E)
    with pytest.raises(ValueError, match="token ids must lie"):
        space.one_hot(torch.tensor([[20]]))


@pytest.mark.parametrize("V,d", [(64, 16), (8, 16)])
def test_projected_noise_has_the_law_of_x0_E(V, d):
    """Moments: mean 0, covariance EᵀE (Cholesky path for V > d, direct z @ E for V <= d)."""
    torch.manual_seed(10)
    net = DiT(DiTConfig(vocab_size=V, max_length=4, width=d, depth=1, heads=2, cond=8, dropout=0.0)).double()
    with torch.no_grad():
        net.E.copy_(torch.randn(V, d, dtype=torch.float64) * torch.linspace(0.2, 2.0, d, dtype=torch.float64))
    space = ProjectedSpace(net)
    g = torch.Generator().manual_seed(0)
    h = space.noise(5000, 4, generator=g).reshape(-1, d)  # 20000 draws
    gram = (net.E.T @ net.E).detach()
    h = h.detach()
    cov = h.T @ h / h.shape[0]
    rel = (cov - gram).norm() / gram.norm()
    assert rel < 0.04, rel
    assert (h.mean(0).abs() / gram.diagonal().sqrt()).max() < 0.04
    if V > d:
        F = space.noise_factor().detach()
        torch.testing.assert_close(F.T @ F, gram, rtol=1e-5, atol=1e-5 * float(gram.diagonal().mean()))


def test_projected_noise_gradient_is_unbiased():
    """E_z[∂/∂E f(noise)] = ∂/∂E E[f(x0 E)] for f(h) = Σ_j c_j h_j²: the analytic value is 2·E·diag(c)."""
    torch.manual_seed(11)
    net = DiT(DiTConfig(vocab_size=40, max_length=4, width=8, depth=1, heads=2, cond=8, dropout=0.0)).double()
    space = ProjectedSpace(net)
    c = torch.linspace(0.5, 2.0, 8, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    h = space.noise(50000, 4, generator=g)  # [N, 4, d]
    f = (h.pow(2) * c).sum(-1).mean()
    (grad,) = torch.autograd.grad(f, net.E)
    want = 2 * net.E.detach() * c
    assert ((grad - want).norm() / want.norm()) < 0.02


def test_projected_sampler_matches_the_v_wide_sampler():
    """Euler on h = x @ E gives the same probabilities as Euler on the V-wide state with the same noise."""
    from flowlm.samplers import EulerSampler

    torch.manual_seed(12)
    V = 24
    net = DiT(DiTConfig(vocab_size=V, **SMALL)).double()
    _randomize(net, scale=0.5)
    flow = Flow.decoding_error(Linear(), V)
    x0 = torch.randn(3, 12, V, dtype=torch.float64)
    wide = EulerSampler(8)(NetDenoiser(net, flow, OneHotSpace(V)), flow, x0)
    space = ProjectedSpace(net)
    proj = EulerSampler(8)(NetDenoiser(net, flow, space), flow, x0 @ net.E, space=space)
    assert wide.probs.std() > 1e-3  # non-trivial output
    torch.testing.assert_close(proj.probs, wide.probs, rtol=1e-9, atol=1e-11)
    assert torch.equal(proj.tokens, wide.tokens)


class _LogitsOnly(Denoiser):
    """A denoiser with only ``logits``: the samplers take the base class's softmax-of-logits path."""

    def __init__(self, den) -> None:
        self.den, self.vocab_size, self.flow = den, den.vocab_size, den.flow

    def logits(self, x, t, *, tau=None):
        return self.den(x, t, tau=tau)


class _TwoLogitsOnly(TwoTimeDenoiser):
    def __init__(self, delta) -> None:
        self.delta, self.vocab_size, self.flow = delta, delta.vocab_size, delta.flow

    def logits(self, x, s, t, *, tau_s=None, tau_t=None):
        return self.delta(x, s, t, tau_s=tau_s, tau_t=tau_t)


@pytest.mark.parametrize("cap", [30.0, 2.0, None])
def test_chunked_probs_equal_the_softmax_of_the_logits(cap):
    torch.manual_seed(14)
    V, B, L = 24, 3, 12
    net = DiT(DiTConfig(vocab_size=V, out_softcap=cap, **SMALL)).double()
    _randomize(net, scale=0.5)
    h, tau = torch.randn(B, L, 32, dtype=torch.float64), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    probs = torch.softmax(net(h, tau), dim=-1)  # [B, L, V]
    features = net(h, tau, return_features=True)
    for rows in (1, 5, 7, None):  # chunks of one row, uneven chunks, one chunk
        torch.testing.assert_close(net.probs_from_features(features, chunk_rows=rows), probs)
        torch.testing.assert_close(net.probs_from_features(features, project=net.E, chunk_rows=rows), probs @ net.E)
    # the wrappers: same values as softmax(den(x, t)) and space.embed of it, on both spaces
    flow, space = Flow.decoding_error(Linear(), V), ProjectedSpace(net)
    t = torch.tensor([0.2, 0.6, 0.95], dtype=torch.float64)
    for den, x in ((NetDenoiser(net, flow, space), h), (NetDenoiser(net, flow, OneHotSpace(V)), torch.randn(B, L, V, dtype=torch.float64))):
        ref = torch.softmax(den(x, t), dim=-1)
        torch.testing.assert_close(den.probs(x, t), ref)
        torch.testing.assert_close(den.probs(x, t, space=den.space), den.space.embed(ref))
        # a caller that holds τ passes it on: same values, no t → τ conversion
        torch.testing.assert_close(den.probs(x, t, tau=flow.tau_of_t(t)), ref)
    two = DiT(DiTConfig(vocab_size=V, two_time=True, out_softcap=cap, **SMALL)).double()
    _randomize(two, scale=0.5)
    delta, s = NetTwoTimeDenoiser(two, flow, ProjectedSpace(two)), torch.tensor([0.0, 0.3, 0.5], dtype=torch.float64)
    ref = torch.softmax(delta(h, s, t), dim=-1)
    torch.testing.assert_close(delta.probs(h, s, t), ref)
    torch.testing.assert_close(delta.probs(h, s, t, space=delta.space), ref @ two.E)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        delta.probs(h, s, torch.tensor([0.3, 1.5, 0.2], dtype=torch.float64))


def test_samplers_give_the_same_samples_with_and_without_chunked_probs():
    from flowlm.flowmaps import FlowMapSampler
    from flowlm.samplers import EulerSampler, HeunSampler

    torch.manual_seed(15)
    V = 24
    flow = Flow.decoding_error(Linear(), V)
    net = DiT(DiTConfig(vocab_size=V, **SMALL)).double()
    _randomize(net, scale=0.5)
    space = ProjectedSpace(net)
    den = NetDenoiser(net, flow, space)
    x0 = space.noise(3, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for sampler in (EulerSampler(4), HeunSampler(3)):
        fast, plain = sampler(den, flow, x0, space=space), sampler(_LogitsOnly(den), flow, x0, space=space)
        assert fast.probs.std() > 1e-3
        torch.testing.assert_close(fast.probs, plain.probs, rtol=1e-9, atol=1e-11)
        assert fast.nfe == plain.nfe
    two = DiT(DiTConfig(vocab_size=V, two_time=True, **SMALL)).double()
    _randomize(two, scale=0.5)
    two_space = ProjectedSpace(two)
    delta = NetTwoTimeDenoiser(two, flow, two_space)
    x0 = two_space.noise(3, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for gamma in (0.0, 0.5):
        run = [FlowMapSampler(3, gamma=gamma)(d, flow, x0, space=two_space, generator=torch.Generator().manual_seed(2))
               for d in (delta, _TwoLogitsOnly(delta))]
        torch.testing.assert_close(run[0].probs, run[1].probs, rtol=1e-9, atol=1e-11)
        assert run[0].nfe == run[1].nfe


# --------------------------------------------------------------------------- wrappers
def test_wrappers_convert_t_to_tau_and_check_shapes():
    torch.manual_seed(13)
    net = DiT(DiTConfig(vocab_size=9, **SMALL))
    _randomize(net)
    flow = Flow.decoding_error(Linear(), 9)
    sched = flow.schedule
    den = NetDenoiser(net, flow, ProjectedSpace(net))
    h, t = torch.randn(2, 12, 32), torch.tensor([0.3, 0.8])
    torch.testing.assert_close(den(h, t), net(h, sched.tau_of_t(t)))
    with pytest.raises(Exception):  # jaxtyping: t must be [B] with B = x.shape[0]
        den(h, torch.rand(3))
    with pytest.raises(ValueError, match="projected space"):
        den(torch.randn(2, 12, 9), t)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        den(h, torch.tensor([0.3, 1.5]))
    two = DiT(DiTConfig(vocab_size=9, two_time=True, **SMALL))
    _randomize(two)
    delta = NetTwoTimeDenoiser(two, flow, ProjectedSpace(two))
    s = torch.tensor([0.1, 0.2])
    torch.testing.assert_close(delta(h, s, t), two(h, sched.tau_of_t(s), sched.tau_of_t(t)))
    with pytest.raises(Exception):
        delta(h, s, torch.rand(2, 1))
    # a network on another vocabulary or flow is refused
    with pytest.raises(ValueError, match="vocabulary 9 but the flow has 10"):
        NetDenoiser(net, Flow.decoding_error(Linear(), 10))
    with pytest.raises(ValueError, match="built for"):
        from flowlm.samplers import EulerSampler

        EulerSampler(2)(den, Flow.decoding_error(Cosine(), 9), h)


# --------------------------------------------------------------------------- chunked output loss
@pytest.mark.parametrize("cap,masked,chunk", [(30.0, False, 5), (2.0, True, 3), (None, True, 64), (30.0, True, None)])
def test_chunked_head_cross_entropy_matches_the_plain_loss(cap, masked, chunk):
    from flowlm.denoisers import softcap
    from flowlm.nets import linear_softcap_cross_entropy

    g = torch.Generator().manual_seed(0)
    B, L, d, V = 3, 7, 5, 11
    f = torch.randn(B, L, d, dtype=torch.float64, generator=g, requires_grad=True)
    W = (3 * torch.randn(V, d, dtype=torch.float64, generator=g)).requires_grad_()
    b = torch.randn(V, dtype=torch.float64, generator=g, requires_grad=True)
    tokens = torch.randint(0, V, (B, L), generator=g)
    mask = torch.rand(B, L, generator=g) < 0.6 if masked else None
    ce = torch.nn.functional.cross_entropy(softcap(f @ W.T + b, cap).flatten(0, 1), tokens.flatten(), reduction="none")
    want = ce.mean() if mask is None else (ce * mask.flatten()).sum() / mask.sum()  # float64 reference
    got = linear_softcap_cross_entropy(f, W, b, tokens, mask, cap=cap, chunk_rows=chunk)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for gw, gg in zip(torch.autograd.grad(want, (f, W, b)), torch.autograd.grad(got, (f, W, b))):
        torch.testing.assert_close(gg, gw, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(linear_softcap_cross_entropy(f, W, b, tokens, mask, cap=cap, chunk_rows=chunk), want.detach())


def test_flm_loss_equals_the_plain_computation_on_the_same_draws():
    from flowlm.denoisers import flm_loss
    from flowlm.interpolants import stratified_uniform

    torch.manual_seed(14)
    model = FLM(DiTConfig(vocab_size=17, **SMALL))
    _randomize(model.net)
    tokens = torch.randint(0, 17, (4, 12))
    loss, _ = model.loss(tokens, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    tau = stratified_uniform(4, generator=g)
    path = model.flow.noisy(tokens, tau=tau, space=model.space, generator=g)
    assert torch.equal(path.tau, tau)  # the network receives the drawn τ
    want = flm_loss(model.net(path.xt, tau), tokens)
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    (g1,) = torch.autograd.grad(loss, model.net.head.weight)
    (g2,) = torch.autograd.grad(want, model.net.head.weight)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6)

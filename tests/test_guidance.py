"""Guidance: autoguidance identities (η = 1 is the model, η = 0 the weak model, NFE counts both),
the dropout weak model, reward guidance through the exact flow map, and the authors' γ-sampler."""

from __future__ import annotations

import pytest
import torch

from flowlm import Flow
from flowlm.flowmaps import FlowMapSampler
from flowlm.guidance import (
    AutoGuidedDenoiser,
    AutoGuidedTwoTimeDenoiser,
    DropoutDenoiser,
    DropoutTwoTimeDenoiser,
    autoguided,
    check_guidance_weight,
    sample_guided,
)
from flowlm.interpolants import Cosine, Linear
from flowlm.oracles import ExactTwoTimeDenoiser, FactorizedCategorical
from flowlm.samplers import EulerSampler, HeunSampler
from flowlm.samplers.base import drift

F64 = torch.float64
P = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], dtype=F64)
P_WEAK = 0.5 * P + 0.5 / 3  # a smoothed law: the "weak" oracle


def _laws(interpolant=None):
    it = interpolant or Linear()
    return FactorizedCategorical(P, it), FactorizedCategorical(P_WEAK, it)


def _state(B=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 2, 3, dtype=F64, generator=g), torch.rand(B, dtype=F64, generator=g) * 0.9


# ----------------------------------------------------------------------------- autoguidance identities
def test_weight_one_is_the_model_and_zero_the_weak_model_bitwise():
    strong, weak = _laws()
    x, t = _state()
    for form in ("probs", "logits"):
        assert torch.equal(AutoGuidedDenoiser(strong, weak, 1.0, form).probs(x, t), strong.probs(x, t))
        assert torch.equal(AutoGuidedDenoiser(strong, weak, 0.0, form).probs(x, t), weak.probs(x, t))
        assert AutoGuidedDenoiser(strong, weak, 1.0, form).calls_per_eval == 1


def test_probability_and_logit_forms_follow_their_formulas():
    strong, weak = _laws()
    x, t = _state()
    p, pw = strong.probs(x, t), weak.probs(x, t)
    g = AutoGuidedDenoiser(strong, weak, 3.0)
    guided = g.probs(x, t)
    torch.testing.assert_close(guided, pw + 3.0 * (p - pw), rtol=0, atol=1e-14)
    torch.testing.assert_close(guided.sum(-1), torch.ones(5, 2, dtype=F64))  # rows still sum to 1
    assert bool((guided < 0).any())  # η > 1 leaves the simplex here (documented)
    lg = AutoGuidedDenoiser(strong, weak, 3.0, "logits").probs(x, t)
    lw, ls = weak.logits(x, t), strong.logits(x, t)
    torch.testing.assert_close(lg, torch.softmax(lw + 3.0 * (ls - lw), -1), rtol=0, atol=1e-14)
    assert bool((lg >= 0).all())


def test_guidance_in_velocity_form_is_the_same_update():
    """b_η = b_weak + η(b − b_weak): the velocity is affine in D (Cosine, one step of the Euler drift)."""
    strong, weak = _laws(Cosine())
    flow = Flow.identity(Cosine(), 3)
    x, _ = _state()
    t = torch.tensor(0.4, dtype=F64)
    tt = t.expand(5)
    b = drift(flow, x, t, strong.probs(x, tt))
    bw = drift(flow, x, t, weak.probs(x, tt))
    bg = drift(flow, x, t, AutoGuidedDenoiser(strong, weak, 2.5).probs(x, tt))
    torch.testing.assert_close(bg, bw + 2.5 * (b - bw), rtol=1e-12, atol=1e-12)


def test_samplers_count_both_calls_and_weight_one_reproduces_the_plain_sampler():
    strong, weak = _laws()
    flow = Flow.identity(Linear(), 3)
    x0 = torch.randn(64, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    plain = EulerSampler(8)(strong, flow, x0)
    same = EulerSampler(8)(AutoGuidedDenoiser(strong, weak, 1.0), flow, x0)
    assert torch.equal(same.probs, plain.probs) and same.nfe == plain.nfe == 8
    guided = EulerSampler(8)(AutoGuidedDenoiser(strong, weak, 2.0), flow, x0)
    assert guided.nfe == 16 and bool(torch.isfinite(guided.probs).all())
    assert HeunSampler(4)(AutoGuidedDenoiser(strong, weak, 2.0, "logits"), flow, x0).nfe == 2 * 7


def test_two_time_autoguidance_identities_with_exact_flow_maps():
    strong, weak = _laws()
    flow = Flow.identity(Linear(), 3)
    d, dw = ExactTwoTimeDenoiser(strong, rtol=1e-8, atol=1e-8), ExactTwoTimeDenoiser(weak, rtol=1e-8, atol=1e-8)
    x0 = torch.randn(16, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    plain = FlowMapSampler(2)(d, flow, x0)
    one = FlowMapSampler(2)(AutoGuidedTwoTimeDenoiser(d, dw, 1.0), flow, x0)
    assert torch.equal(one.probs, plain.probs) and one.nfe == 2
    assert torch.equal(FlowMapSampler(2)(AutoGuidedTwoTimeDenoiser(d, dw, 0.0), flow, x0).probs,
                       FlowMapSampler(2)(dw, flow, x0).probs)
    g = AutoGuidedTwoTimeDenoiser(d, dw, 2.0)
    assert FlowMapSampler(2)(g, flow, x0).nfe == 4
    x, t = _state(4)
    s = t * 0.5
    torch.testing.assert_close(g.probs(x, s, t), dw.probs(x, s, t) + 2.0 * (d.probs(x, s, t) - dw.probs(x, s, t)))


def test_bad_weights_and_pairs_are_clear_errors():
    strong, weak = _laws()
    with pytest.raises(ValueError, match=">= 0"):
        AutoGuidedDenoiser(strong, weak, -0.5)
    with pytest.raises(ValueError, match=">= 0"):
        AutoGuidedDenoiser(strong, weak, float("nan"))
    with pytest.raises(TypeError, match="number"):
        check_guidance_weight("2")
    with pytest.raises(ValueError, match="form"):
        AutoGuidedDenoiser(strong, weak, 2.0, form="velocity")
    with pytest.raises(ValueError, match="vocabulary"):
        AutoGuidedDenoiser(strong, FactorizedCategorical(torch.full((2, 4), 0.25, dtype=F64), Linear()), 2.0)


# ----------------------------------------------------------------------------- the dropout weak model
def _tiny(kind="flm", dropout=0.3, seed=0):
    from flowlm.models import FLM, FMLM
    from flowlm.nets import DiTConfig

    torch.manual_seed(seed)
    cfg = DiTConfig(vocab_size=7, max_length=4, width=32, depth=2, heads=2, cond=16, dropout=dropout,
                    two_time=kind == "fmlm")
    model = (FLM if kind == "flm" else FMLM)(cfg)
    with torch.no_grad():  # leave the zero-initialized head and adaLN so that dropout shows
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def test_dropout_weak_model_fixed_seed_is_one_network_and_restores_the_mode():
    model = _tiny()
    den = model.model_fn
    h = model.space.noise(3, 4, generator=torch.Generator().manual_seed(0))
    t = torch.full((3,), 0.5)
    with torch.no_grad():
        weak = DropoutDenoiser(den, seed=7)
        a, b = weak.probs(h, t), weak.probs(h, t)
        plain = den.probs(h, t)
        fresh = DropoutDenoiser(den)
        c, d = fresh.probs(h, t), fresh.probs(h, t)
    assert torch.equal(a, b)  # the same masks at every call
    assert not torch.allclose(a, plain, atol=1e-4)  # dropout is on
    assert not torch.allclose(c, d, atol=1e-4)  # seed=None: fresh masks
    assert not model.net.training  # mode restored
    with pytest.raises(ValueError, match="no active dropout"):
        DropoutDenoiser(_tiny(dropout=0.0).model_fn)
    with pytest.raises(TypeError, match="network-backed"):
        DropoutDenoiser(_laws()[0])


def test_seeded_dropout_leaves_the_global_rng_alone():
    model = _tiny()
    h = model.space.noise(2, 4, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with torch.no_grad():
        DropoutDenoiser(model.model_fn, seed=5).probs(h, torch.full((2,), 0.5))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("kind", ["flm", "fmlm"])
def test_model_guidance_weight_one_equals_model_sample_and_nfe_doubles(kind):
    model = _tiny(kind)
    steps = 3
    ref = model.sample(4, 4, steps, generator=torch.Generator().manual_seed(0))
    out = sample_guided(model, 4, 4, steps, weight=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.probs, ref.probs) and out.nfe == ref.nfe == steps
    g = sample_guided(model, 4, 4, steps, weight=3.0, seed=1, generator=torch.Generator().manual_seed(0))
    assert g.nfe == 2 * steps
    assert not model.net.training
    other = _tiny(kind, seed=1)  # "an earlier checkpoint": another model of the same kind
    w = sample_guided(model, 4, 4, steps, weight=0.0, weak=other, generator=torch.Generator().manual_seed(0))
    from flowlm.nets import NetDenoiser, NetTwoTimeDenoiser
    from flowlm.states import OneHotSpace

    wide = OneHotSpace(7)  # two networks share the V-wide state, not h = x @ E
    own = (NetTwoTimeDenoiser if kind == "fmlm" else NetDenoiser)(other.net, other.flow, wide)
    x0 = wide.noise(4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(w.probs, other.default_sampler(steps, 0.0)(own, other.flow, x0, space=wide).probs)
    fn = autoguided(model, 2.0)
    assert isinstance(fn.weak, DropoutTwoTimeDenoiser if kind == "fmlm" else DropoutDenoiser)
    with pytest.raises(ValueError, match="same kind"):
        autoguided(model, 2.0, _tiny("fmlm" if kind == "flm" else "flm"))


# ----------------------------------------------------------------------------- the command line
TEXT = "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n" * 20
FAST = ["--preset", "tiny", "--device", "cpu", "--set", "n_samples=1", "--set", "sample_steps=2"]


@pytest.fixture(scope="module")
def flm_run(tmp_path_factory):
    from flowlm.cli.main import main

    root = tmp_path_factory.mktemp("guide")
    corpus = root / "sonnet.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLOWLM_CACHE", str(root / "cache"))
        for name, rate in (("flm", "0.2"), ("nodrop", "0.0")):
            assert main(["train", *FAST, "--set", f"dropout={rate}", "--data", str(corpus), "--out-dir",
                         str(root / name), "--steps", "4"]) == 0
    return root / "flm"


def _sample(capsys, *argv):
    from flowlm.cli.main import main

    code = main(["sample", *[str(a) for a in argv]])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_guidance(flm_run, tmp_path, capsys):
    base = ["--checkpoint", flm_run, "--steps", 2, "--n", 2, "--seed", 3]
    code, plain, err = _sample(capsys, *base)
    assert code == 0 and "NFE 2" in err
    code, one, err = _sample(capsys, *base, "--guidance", 1)
    assert code == 0 and one == plain and "guidance 1" in err and "NFE 2" in err  # η = 1: the plain model
    code, out, err = _sample(capsys, *base, "--guidance", 3)
    assert code == 0 and "NFE 4" in err and "----------" in out  # both models per step
    for weak in ("online", flm_run):
        code, _, err = _sample(capsys, *base, "--guidance", 2, "--weak", weak, "--guidance-form", "logits")
        assert code == 0 and "NFE 4" in err, err
    code, _, err = _sample(capsys, *base, "--guidance", -1)
    assert code != 0 and ">= 0" in err
    code, _, err = _sample(capsys, *base, "--guidance", 2, "--weak", tmp_path / "missing")
    assert code != 0 and "--weak" in err
    code, _, err = _sample(capsys, "--checkpoint", flm_run.parent / "nodrop", "--steps", 2, "--guidance", 2)
    assert code != 0 and "no active dropout" in err and "Traceback" not in err



def test_cli_guidance_on_an_fmlm(flm_run, tmp_path, capsys):
    from flowlm.cli.main import main

    student = tmp_path / "fmlm"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLOWLM_CACHE", str(flm_run.parent / "cache"))
        assert main(["distill", "--teacher", str(flm_run), "--steps", "2", "--out-dir", str(student), "--device", "cpu"]) == 0
    capsys.readouterr()
    base = ["--checkpoint", student, "--steps", 2, "--n", 2, "--gamma", 0.5]
    code, plain, err = _sample(capsys, *base)
    assert code == 0 and "NFE 3" in err  # re-noising: 2N − 1 calls
    code, one, err = _sample(capsys, *base, "--guidance", 1)
    assert code == 0 and one == plain
    code, _, err = _sample(capsys, *base, "--guidance", 4)
    assert code == 0 and "NFE 6" in err and "FMLM" in err
    code, _, err = _sample(capsys, *base, "--guidance", 4, "--weak", flm_run)
    assert code != 0 and "same kind" in err


def test_cli_guidance_on_mdlm_and_ar(flm_run, capsys):
    from flowlm.cli.main import main

    root = flm_run.parent
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLOWLM_CACHE", str(root / "cache"))
        for kind in ("mdlm", "ar"):
            assert main(["train", *FAST, "--set", "dropout=0.2", "--data", str(root / "sonnet.txt"), "--out-dir",
                         str(root / kind), "--steps", "2", "--model", kind]) == 0
    capsys.readouterr()
    code, _, err = _sample(capsys, "--checkpoint", root / "mdlm", "--steps", 4, "--n", 2, "--guidance", 3)
    assert code == 0, err
    code, _, err = _sample(capsys, "--checkpoint", root / "mdlm", "--steps", 4, "--n", 2, "--guidance", 3,
                           "--guidance-form", "probs")
    assert code != 0 and "logit form only" in err
    code, _, err = _sample(capsys, "--checkpoint", root / "ar", "--n", 2, "--guidance", 3)
    assert code != 0 and "--temperature" in err


# ----------------------------------------------------------------------------- the authors' γ-sampler
def _exact_two_time(interpolant):
    law = FactorizedCategorical(torch.tensor([[0.7, 0.2, 0.1]], dtype=F64), interpolant)
    return law, ExactTwoTimeDenoiser(law, rtol=1e-7, atol=1e-7), Flow.identity(interpolant, 3)


@pytest.mark.parametrize("interpolant", [Linear(), Cosine()])
def test_authors_gamma_zero_is_the_deterministic_map(interpolant):
    _, two, flow = _exact_two_time(interpolant)
    x0 = torch.randn(32, 1, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    det = FlowMapSampler(3, gamma=0.0)(two, flow, x0)
    ours = FlowMapSampler(3, gamma=0.0, kind="authors")(two, flow, x0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ours.probs, det.probs) and ours.nfe == det.nfe == 3


def test_authors_rule_on_linear_is_reference_section_5_literally():
    """The interpolant-general rule, on Linear, equals REFERENCE §5 written out with σ = 1 − t."""
    from flowlm.nets.mlp import TwoTimeMLP

    torch.manual_seed(0)
    flow = Flow.identity(Linear(), 4)
    net = TwoTimeMLP(4, 3, flow, hidden=16, depth=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5 * torch.randn_like(p))  # the t embedder is zero-initialized: make δ̂ depend on t
    gamma, N, B = 0.6, 4, 5
    x0 = torch.randn(B, 3, 4, generator=torch.Generator().manual_seed(3))
    out = FlowMapSampler(N, gamma, kind="authors")(net, flow, x0, generator=torch.Generator().manual_seed(9))
    assert out.nfe == N
    g = torch.Generator().manual_seed(9)
    grid = torch.linspace(0, 1, N + 1)
    z = x0
    with torch.no_grad():
        for i in range(N - 1):
            ti, sigma = grid[i], 1 - grid[i + 1]
            sig_t = sigma * (1 - gamma**2) ** 0.5
            t_t = 1 - sig_t
            d = net.probs(z, ti.expand(B), t_t.expand(B))
            z_t = ((1 - t_t) / (1 - ti)) * z + ((t_t - ti) / (1 - ti)) * d
            z = z_t + (sig_t - sigma) * d + gamma * sigma * torch.randn(z.shape, generator=g)
        ref = net.probs(z, grid[N - 1].expand(B), torch.ones(B))
    torch.testing.assert_close(out.probs, ref, rtol=1e-5, atol=1e-6)


def test_authors_time_keeps_the_noise_share_on_any_interpolant():
    from flowlm.flowmaps.sampler import authors_gamma_time

    t = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    for it in (Linear(), Cosine()):
        for gamma in (0.3, 0.8):
            tt = authors_gamma_time(it, t, gamma)
            torch.testing.assert_close(it.alpha(tt), (1 - gamma**2) ** 0.5 * it.alpha(t), rtol=0, atol=1e-12)
            assert bool((tt >= t).all())
    assert torch.equal(authors_gamma_time(Cosine(), t, 1.0), torch.ones_like(t))
    with pytest.raises(ValueError, match="kind"):
        FlowMapSampler(2, 0.5, kind="consistency")


@pytest.mark.parametrize("interpolant", [Linear(), Cosine()])
def test_authors_gamma_one_keeps_the_marginal(interpolant):
    """γ = 1 with the exact map: x_{t_1} = β·(exact data sample) + α·ξ, the path's marginal."""
    from flowlm.oracles import total_variation

    law, two, flow = _exact_two_time(interpolant)
    n = 3000
    x0 = torch.randn(n, 1, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    out = FlowMapSampler(2, gamma=1.0, kind="authors")(two, flow, x0, return_trajectory=True,
                                                       generator=torch.Generator().manual_seed(1))
    assert out.nfe == 2
    x1, t1 = out.trajectory[1], out.times[1].to(F64)
    a, b = float(interpolant.alpha(t1)), float(interpolant.beta(t1))
    assert total_variation(out.tokens, law) < 0.03  # MC noise ≈ 0.01
    assert float(x1.square().sum(-1).mean()) == pytest.approx(b * b + 3 * a * a, abs=0.05)
    torch.testing.assert_close(x1.mean(0)[0], b * law.marginals[0], rtol=0, atol=0.05)


# ----------------------------------------------------------------------------- rewards and reward guidance
from flowlm.denoisers import TwoTimeDenoiser  # noqa: E402
from flowlm.guidance import RewardGuidedSampler, WordSetReward, evaluate_reward  # noqa: E402

P_R = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.4, 0.3, 0.2, 0.1]], dtype=F64)  # token 3: expected count 0.35


class DiagonalStudent(TwoTimeDenoiser):
    """δ̂(x, s, t) = D_s(x): an FMLM at initialization (smooth in x, unlike the exact map)."""

    def __init__(self, law):
        self.law, self.vocab_size, self.interpolant = law, law.vocab_size, law.interpolant

    def logits(self, x, s, t, *, tau_s=None, tau_t=None):
        return self.law.logits(x, s)


def _count(tokens, token=3):
    return (tokens == token).double().sum(-1)


def test_word_set_reward_formulas_and_checks():
    p = torch.softmax(torch.randn(3, 4, 6, dtype=F64, generator=torch.Generator().manual_seed(0)), -1)
    m = p[..., 1] + p[..., 4]
    torch.testing.assert_close(WordSetReward([4, 1, 1], 6)(p), m.sum(-1))
    torch.testing.assert_close(WordSetReward([1, 4], 6, "log_prob")(p), torch.log(1 - (1 - m).prod(-1)))

    class Words:
        vocab_size = 6

        def encode(self, text):
            return {"king": [2], " queen": [5], "crown": [1, 3]}.get(text, [0, 0])

    r = WordSetReward.from_words(Words(), ["king", "queen", "crown"])
    assert r.token_ids == [2, 5] and r.skipped == ["crown"]
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        WordSetReward([6], 6)
    with pytest.raises(ValueError, match="one scalar per sequence"):
        evaluate_reward(lambda q: q.sum(-1), p)  # [B, L]: not reduced over positions
    with pytest.raises(TypeError, match="floating tensor"):
        evaluate_reward(lambda q: 1.0, p)


@pytest.mark.parametrize("interpolant", [Linear(), Cosine()])
def test_euclidean_reward_guidance_raises_the_reward_with_the_exact_map(interpolant):
    """Exact flow map, 400 seeded samples: unguided at the same NFE has the law's expected count (0.35);
    guided (η = 1, normalized, 3 guided steps + the output step) is far above (measured ≈ 0.8–1.1; SE ≈ 0.05)."""
    law = FactorizedCategorical(P_R, interpolant)
    two = ExactTwoTimeDenoiser(law, rtol=1e-7, atol=1e-7)
    flow = Flow.identity(interpolant, 4)
    x0 = torch.randn(400, 2, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    guided = RewardGuidedSampler(4, WordSetReward([3], 4), step_size=1.0)(two, flow, x0)
    plain = FlowMapSampler(guided.nfe)(two, flow, x0)  # equal NFE: 2 calls per guided step + 1
    assert guided.nfe == plain.nfe == 7
    assert float(_count(plain.tokens).mean()) == pytest.approx(0.35, abs=0.1)
    assert float(_count(guided.tokens).mean()) > float(_count(plain.tokens).mean()) + 0.3


def test_jacobian_reward_guidance_raises_the_reward_through_a_smooth_map():
    """The Jacobian variant differentiates r(δ̂_{t,1}(x)) in x; the exact δ_{t,1} is a vertex of the simplex
    (piecewise constant, zero gradient), so this uses a smooth two-time denoiser (an FMLM at initialization)."""
    law = FactorizedCategorical(P_R, Linear())
    two = DiagonalStudent(law)
    flow = Flow.identity(Linear(), 4)
    x0 = torch.randn(400, 2, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    base = float(_count(FlowMapSampler(4)(two, flow, x0).tokens).mean())
    for K, eta in ((1, 1.0), (2, 1.5)):
        out = RewardGuidedSampler(4, WordSetReward([3], 4, "log_prob"), variant="jacobian", ascent_steps=K,
                                  step_size=eta)(two, flow, x0)
        assert out.nfe == 3 * (K + 1) + 1
        assert float(_count(out.tokens).mean()) > base + 0.3  # measured base 0.31, guided ≥ 0.8


def test_reward_guidance_without_a_push_is_the_flow_map_sampler_and_knobs_are_checked():
    law = FactorizedCategorical(P_R, Linear())
    two = DiagonalStudent(law)
    flow = Flow.identity(Linear(), 4)
    x0 = torch.randn(16, 2, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    plain = FlowMapSampler(4)(two, flow, x0)
    for sampler in (RewardGuidedSampler(4, WordSetReward([3], 4), step_size=0.0),
                    RewardGuidedSampler(4, WordSetReward([3], 4), guided_steps=0),
                    RewardGuidedSampler(4, WordSetReward([3], 4), variant="jacobian", step_size=0.0)):
        assert torch.equal(sampler(two, flow, x0).probs, plain.probs)
    assert RewardGuidedSampler(4, WordSetReward([3], 4), guided_steps=1)(two, flow, x0).nfe == 5  # 1 guided + 3
    with pytest.raises(ValueError, match="n_steps >= 2"):
        RewardGuidedSampler(1, WordSetReward([3], 4))
    with pytest.raises(ValueError, match="guided_steps"):
        RewardGuidedSampler(3, WordSetReward([3], 4), guided_steps=3)
    with pytest.raises(ValueError, match="variant"):
        RewardGuidedSampler(3, WordSetReward([3], 4), variant="riemannian")
    with pytest.raises(ValueError, match="one scalar per sequence"):
        RewardGuidedSampler(3, lambda q: q[..., 3])(two, flow, x0)


def test_bag_of_tokens_classifier_learns_and_guides():
    """A classifier trained on samples of two laws (class 1: token 3 frequent) scores them apart and,
    as a reward through the exact flow map, raises the share of token 3 over unguided sampling."""
    from flowlm.guidance import BagOfTokensClassifier

    pos_law = FactorizedCategorical(torch.tensor([[0.1, 0.1, 0.1, 0.7]] * 2, dtype=F64), Linear())
    g = torch.Generator().manual_seed(0)
    clf = BagOfTokensClassifier(4).fit(pos_law.sample(300, g), FactorizedCategorical(P_R, Linear()).sample(300, g))
    assert float(clf.weight[3]) > float(clf.weight[:3].max())
    onehot = torch.nn.functional.one_hot(torch.tensor([[3, 3], [0, 1]]), 4).double()
    r = clf(onehot)
    assert r.shape == (2,) and float(r[0]) > float(r[1]) and bool((r <= 0).all())  # log-probabilities
    law = FactorizedCategorical(P_R, Linear())
    two = ExactTwoTimeDenoiser(law, rtol=1e-7, atol=1e-7)
    flow = Flow.identity(Linear(), 4)
    x0 = torch.randn(300, 2, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    guided = RewardGuidedSampler(3, clf, step_size=1.0)(two, flow, x0)
    plain = FlowMapSampler(guided.nfe)(two, flow, x0)
    assert float(_count(guided.tokens).mean()) > float(_count(plain.tokens).mean()) + 0.2


def test_guided_denoisers_nest_and_count_every_call():
    """A guided denoiser used as the model of another counts 2 + 1 calls; logits at η ∈ {0, 1} are the models'."""
    strong, weak = _laws()
    x, t = _state()
    inner = AutoGuidedDenoiser(strong, weak, 2.0)
    outer = AutoGuidedDenoiser(inner, weak, 1.5)
    assert inner.calls_per_eval == 2 and outer.calls_per_eval == 3
    assert AutoGuidedDenoiser(inner, weak, 1.0).calls_per_eval == 2
    assert torch.equal(AutoGuidedDenoiser(strong, weak, 0.0).logits(x, t), weak.logits(x, t))
    assert torch.equal(AutoGuidedDenoiser(strong, weak, 1.0).logits(x, t), strong.logits(x, t))
    flow = Flow.identity(Linear(), 3)
    assert EulerSampler(4)(outer, flow, torch.randn(3, 2, 3, dtype=F64)).nfe == 12


# ----------------------------------------------------------------------------- MDLM autoguidance (logit form)
def _tiny_mdlm(seed: int = 0, dropout: float = 0.3):
    from flowlm.models import MDLM
    from flowlm.nets import DiTConfig

    torch.manual_seed(seed)
    model = MDLM(DiTConfig(vocab_size=5, max_length=4, width=32, depth=2, heads=2, cond=16, dropout=dropout))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_mdlm_autoguidance_is_the_logit_formula_with_subs():
    from flowlm.guidance import mdlm_autoguided
    from flowlm.guidance.autoguidance import _dropout_on

    model = _tiny_mdlm()
    m = model.mask_id
    xt = torch.tensor([[m, 2, m, m], [1, m, m, 0]])
    with torch.no_grad():
        assert torch.equal(mdlm_autoguided(model, 1.0)(xt), model.denoiser(xt))  # η = 1: the model
        logp = torch.log_softmax(model.logits(xt).double(), -1)
        with _dropout_on(model.net, 7, xt.device):
            logp_w = torch.log_softmax(model.logits(xt).double(), -1)
        got = mdlm_autoguided(model, 4.0, seed=7)(xt)
        want = torch.softmax(logp_w + 4.0 * (logp - logp_w), -1).float()
        masked = xt == m
        assert torch.allclose(got[masked], want[masked], atol=1e-6)
        assert torch.equal(got[~masked], torch.nn.functional.one_hot(xt[~masked], 5).float())  # SUBS carry-over
        weak_only = mdlm_autoguided(model, 0.0, seed=7)(xt)  # η = 0: the weak (dropout) model
        assert torch.allclose(weak_only[masked], torch.softmax(logp_w, -1).float()[masked], atol=1e-6)
    assert not model.net.training


def test_mdlm_guided_sampling_counts_both_calls_and_refuses_the_probability_form():
    from flowlm.guidance import mdlm_autoguided, sample_guided

    model = _tiny_mdlm()
    ref = model.sample(3, 4, steps=4, generator=torch.Generator().manual_seed(0))
    same = sample_guided(model, 3, 4, 4, weight=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(same.tokens, ref.tokens) and same.nfe == ref.nfe
    guided = sample_guided(model, 3, 4, 4, weight=5.0, seed=1, generator=torch.Generator().manual_seed(0))
    assert guided.nfe % 2 == 0 and guided.nfe >= 2
    with pytest.raises(ValueError, match="logit form only"):
        sample_guided(model, 3, 4, 4, weight=2.0, form="probs")
    with pytest.raises(ValueError, match="no active dropout"):
        mdlm_autoguided(_tiny_mdlm(dropout=0.0), 2.0)
    with pytest.raises(ValueError, match=">= 0|η|weight"):
        mdlm_autoguided(model, -1.0)

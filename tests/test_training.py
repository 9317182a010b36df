"""Training loop: batch sources, warm-up, EMA, exact resume, accumulation, NaN stop, objectives, learning."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from flowlm.denoisers import flm_loss
from flowlm.interpolants import Linear
from flowlm.models import FLM, FMLM
from flowlm.nets import DiTConfig, NetDenoiser
from flowlm.oracles import FactorizedCategorical
from flowlm.states import OneHotSpace
from flowlm.training import (
    EMA,
    DistillationObjective,
    FLMObjective,
    NonFiniteLossError,
    TensorBatchSource,
    TrainConfig,
    load_checkpoint,
    train,
)

TINY = dict(max_length=8, width=32, depth=2, heads=4, cond=16)


def _model(seed: int = 0, vocab: int = 8, dropout: float = 0.0) -> FLM:
    torch.manual_seed(seed)
    return FLM(DiTConfig(vocab_size=vocab, dropout=dropout, **TINY))


def _data(n: int = 64, vocab: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (n, 8), generator=torch.Generator().manual_seed(seed))


class FixedTimeCE:
    """A deterministic objective (no random draws): CE of the net at τ = 0.5 on a scaled clean state."""

    def __call__(self, model, tokens):
        logits = model.net(0.5 * model.space.one_hot(tokens), torch.full((tokens.shape[0],), 0.5))
        return flm_loss(logits, tokens), {"extra": torch.tensor(1.0)}


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- batch source
def test_tensor_batch_source_epochs_and_shards():
    data = torch.arange(24).repeat_interleave(2).view(24, 2)  # row i = [i, i]
    src = TensorBatchSource(data, batch_size=6, seed=3)
    epoch = torch.cat([src.get(k)[:, 0] for k in range(4)])  # 4 steps × 6 = one epoch
    assert sorted(epoch.tolist()) == list(range(24))  # every row exactly once
    assert torch.equal(src.get(5), TensorBatchSource(data, 6, seed=3).get(5))  # depends only on (seed, step)
    assert not torch.equal(src.get(4), src.get(0))  # next epoch reshuffled
    for k in (0, 3, 7):  # rank shards concatenate to the global batch
        assert torch.equal(torch.cat([src.get(k, r, 3) for r in range(3)]), src.get(k))
    with pytest.raises(ValueError, match="not divisible by world size"):
        src.get(0, 0, 4)


# --------------------------------------------------------------------------- EMA
def test_ema_follows_the_float64_recursion():
    lin = torch.nn.Linear(2, 1)
    ema = EMA(lin, decay=0.9)
    want = lin.weight.detach().double().clone()
    for n in range(30):
        with torch.no_grad():
            lin.weight.copy_(torch.full_like(lin.weight, float(n) * 0.1 - 1.0))
        ema.update(lin)
        d = min(0.9, (1 + n) / (10 + n))
        want = d * want + (1 - d) * lin.weight.detach().double()
    torch.testing.assert_close(ema.shadow["weight"].double(), want, rtol=1e-6, atol=1e-6)
    live = lin.weight.detach().clone()
    with ema.swapped(lin):
        torch.testing.assert_close(lin.weight.detach(), ema.shadow["weight"])
    torch.testing.assert_close(lin.weight.detach(), live)


# --------------------------------------------------------------------------- the loop
def test_warmup_lr_and_metrics_file(tmp_path):
    cfg = TrainConfig(steps=6, batch_size=8, lr=1e-3, warmup_steps=4, log_every=1, out_dir=str(tmp_path), progress=False)
    res = train(_model(), FixedTimeCE(), TensorBatchSource(_data(), 8), cfg, resume=False)
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in records] == list(range(1, 7))
    assert [r["lr"] for r in records] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert all({"loss", "grad_norm", "tokens_per_s", "extra"} <= set(r) for r in records)
    assert [r["loss"] for r in records] == pytest.approx(res.losses)
    assert res.losses[0] == pytest.approx(math.log(8), abs=1e-6)  # zero-initialized head
    assert res.losses[-1] < res.losses[0]


def test_resume_continues_exactly(tmp_path):
    """N steps in one go == k steps, stop, fresh process state, resume to N: identical losses and weights."""
    data = _data()
    cfg = dict(batch_size=8, warmup_steps=3, grad_accum=2, ema_decay=0.9, progress=False, ckpt_every=100)
    full_model = _model(dropout=0.1)  # dropout and the FLM draws exercise the RNG handling
    full = train(full_model, FLMObjective(), TensorBatchSource(data, 8),
                 TrainConfig(steps=6, out_dir=str(tmp_path / "a"), **cfg))
    first = train(_model(dropout=0.1), FLMObjective(), TensorBatchSource(data, 8),
                  TrainConfig(steps=3, out_dir=str(tmp_path / "b"), **cfg))
    torch.manual_seed(12345)  # unrelated global RNG use between the runs must not matter
    torch.rand(100)
    resumed_model = _model(seed=99, dropout=0.1)  # different init: everything comes from the checkpoint
    second = train(resumed_model, FLMObjective(), TensorBatchSource(data, 8),
                   TrainConfig(steps=6, out_dir=str(tmp_path / "b"), **cfg))
    assert second.start_step == 3
    assert first.losses + second.losses == full.losses
    for k, v in _params(full_model).items():
        assert torch.equal(v, _params(resumed_model)[k]), k
    for k, v in full.ema.shadow.items():
        assert torch.equal(v, second.ema.shadow[k]), k


def test_gradient_accumulation_equals_the_large_batch():
    data = _data()
    a, b = _model(), _model()
    cfg = dict(steps=3, batch_size=8, warmup_steps=0, progress=False)
    train(a, FixedTimeCE(), TensorBatchSource(data, 8), TrainConfig(grad_accum=1, **cfg))
    train(b, FixedTimeCE(), TensorBatchSource(data, 8), TrainConfig(grad_accum=4, **cfg))
    moved = False
    for k, v in _params(a).items():
        torch.testing.assert_close(_params(b)[k], v, rtol=1e-5, atol=1e-6)
        moved |= not torch.equal(v, _params(_model())[k])
    assert moved


@pytest.mark.slow
def test_compiled_training_matches_eager_and_checkpoints_plain_weights(tmp_path):
    """compile=True: the same losses and weights as eager (to float32 kernel-fusion rounding), and a
    checkpoint whose weights load into an uncompiled model (no torch.compile name prefixes)."""
    data = _data()
    cfg = dict(steps=3, batch_size=8, warmup_steps=0, progress=False, ckpt_every=100)
    eager, compiled = _model(), _model()
    res_e = train(eager, FixedTimeCE(), TensorBatchSource(data, 8), TrainConfig(compile=False, **cfg))
    res_c = train(compiled, FixedTimeCE(), TensorBatchSource(data, 8),
                  TrainConfig(compile=True, out_dir=str(tmp_path), **cfg))
    assert res_c.losses == pytest.approx(res_e.losses, rel=1e-5, abs=1e-6)
    assert res_c.losses[-1] < res_c.losses[0]
    for k, v in _params(eager).items():
        torch.testing.assert_close(_params(compiled)[k], v, rtol=1e-4, atol=1e-5)
    ck = load_checkpoint(res_c.checkpoint)
    assert not any("_orig_mod" in k for k in ck.model), sorted(ck.model)[:3]
    fresh = _model(seed=7)
    fresh.load_state_dict(ck.model)
    for k, v in _params(compiled).items():
        assert torch.equal(_params(fresh)[k], v), k


class NaNAt:
    def __init__(self, step_call: int) -> None:
        self.calls, self.bad = 0, step_call

    def __call__(self, model, tokens):
        self.calls += 1
        loss, m = FixedTimeCE()(model, tokens)
        return (loss * float("nan") if self.calls == self.bad else loss), m


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = _model()
    cfg = TrainConfig(steps=10, batch_size=8, warmup_steps=0, ckpt_every=2, out_dir=str(tmp_path), progress=False)
    snapshots = {}

    class Recording(NaNAt):
        def __call__(self, m, tokens):
            snapshots[self.calls] = _params(m)  # weights before step `calls` (0-based) is applied
            return super().__call__(m, tokens)

    with pytest.raises(NonFiniteLossError, match=r"step 5: loss = nan.*last good checkpoint \(step 4\)"):
        train(model, Recording(5), TensorBatchSource(_data(), 8), cfg)
    ck = load_checkpoint(tmp_path / "checkpoint.safetensors", expected_config=model.config)
    assert ck.step == 4
    for k, v in snapshots[4].items():  # the checkpoint holds the weights after 4 good steps
        assert torch.equal(ck.model[k], v), k
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_train_validates_its_inputs():
    with pytest.raises(ValueError, match="batch source yields batches of 8"):
        train(_model(), FixedTimeCE(), TensorBatchSource(_data(), 8), TrainConfig(steps=1, batch_size=4, progress=False))
    with pytest.raises(ValueError, match="divisible by world_size × grad_accum"):
        train(_model(), FixedTimeCE(), TensorBatchSource(_data(), 6), TrainConfig(steps=1, batch_size=6, grad_accum=4, progress=False))
    with pytest.raises(ValueError, match="bf16=True needs a CUDA device"):
        train(_model(), FixedTimeCE(), TensorBatchSource(_data(), 8),
              TrainConfig(steps=1, batch_size=8, bf16=True, device="cpu", progress=False))
    with pytest.raises(ValueError, match="invalid TrainConfig"):
        TrainConfig(steps=1, batch_size=0)


def test_distillation_objective_passes_student_and_space():
    calls = []

    class FakeDistiller:
        def loss(self, student, tokens, space=None, generator=None):
            calls.append((student, tokens, space))
            return student(space.noise(tokens.shape[0], tokens.shape[1]), torch.zeros(2), torch.ones(2)).pow(2).mean(), {}

    student = FMLM.from_teacher(_model())
    tokens = _data(2)
    loss, _ = DistillationObjective(FakeDistiller())(student, tokens)
    assert calls[0][0] is student.delta and calls[0][2] is student.space and torch.equal(calls[0][1], tokens)
    assert loss.requires_grad


def test_sampling_entry_points():
    model = _model(vocab=11)
    out = model.sample(3, 8, n_steps=4, generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (3, 8) and out.probs.shape == (3, 8, 11) and out.nfe == 4
    assert int(out.tokens.min()) >= 0 and int(out.tokens.max()) < 11
    torch.testing.assert_close(out.probs.sum(-1), torch.ones(3, 8))
    student = FMLM.from_teacher(model)
    fm = student.sample(2, 8, n_steps=2, generator=torch.Generator().manual_seed(0))
    assert fm.tokens.shape == (2, 8) and fm.nfe == 2
    # one signature, and a kind to branch on (never the class name)
    assert (model.kind, student.kind) == ("flm", "fmlm") and student.flow is model.flow
    from flowlm.samplers import HeunSampler

    assert model.sample(2, 8, sampler=HeunSampler(3)).nfe == 5
    with pytest.raises(ValueError, match="gamma"):
        model.sample(2, 8, 4, gamma=0.5)
    assert student.sample(2, 8, 3, gamma=1.0, generator=torch.Generator().manual_seed(0)).nfe == 3


# --------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_tiny_dit_reaches_the_oracle_cross_entropy():
    """A tiny DiT trained on a factorized law gets close to the exact denoiser's FLM loss,
    both evaluated on the same (tokens, τ, t, noise) draws."""
    V, L = 8, 8
    p = torch.tensor([0.30, 0.22, 0.15, 0.11, 0.08, 0.06, 0.05, 0.03], dtype=torch.float64)
    law = FactorizedCategorical(p.expand(L, V).clone(), Linear())  # the same law at every position
    data = law.sample(4096, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = FLM(DiTConfig(vocab_size=V, max_length=L, width=48, depth=2, heads=4, cond=32, dropout=0.0))
    cfg = TrainConfig(steps=300, batch_size=64, lr=3e-3, warmup_steps=20, ema_decay=0.99, progress=False)
    res = train(model, FLMObjective(), TensorBatchSource(data, 64), cfg)

    g = torch.Generator().manual_seed(1)
    tokens = law.sample(2048, generator=g)
    tau = (torch.arange(2048, dtype=torch.float64) + 0.5) / 2048
    path = model.flow.noisy(tokens, tau=tau, generator=g, dtype=torch.float64)  # V-wide one-hot space
    xt, t = path.xt, path.t
    oracle_ce = float(flm_loss(law(xt, t), tokens))
    uniform_ce = math.log(V)
    with torch.no_grad(), res.ema.swapped(model):
        model.eval()
        den = NetDenoiser(model.net, model.flow, OneHotSpace(V))  # V-wide evaluation of the projected-trained net
        model_ce = float(flm_loss(den(xt.float(), t.float(), tau=tau.float()), tokens))
    gap = model_ce - oracle_ce
    print(f"model CE {model_ce:.4f}  oracle CE {oracle_ce:.4f}  uniform {uniform_ce:.4f}  train loss {sum(res.losses[-20:]) / 20:.4f}")
    assert gap > -0.02  # the oracle is optimal (up to Monte-Carlo noise)
    assert gap < 0.05 * (uniform_ce - oracle_ce), (model_ce, oracle_ce, uniform_ce)


# --------------------------------------------------------------------------- periodic validation, progress, memory
def test_eval_every_logs_validation_at_its_steps_without_changing_training(tmp_path):
    held_out = _data(16, seed=9)
    seen = []

    def evaluate(model):
        seen.append(model.training)
        with torch.no_grad():
            return float(FixedTimeCE()(model, held_out)[0])

    cfg = TrainConfig(steps=7, batch_size=8, warmup_steps=0, log_every=1, eval_every=3, out_dir=str(tmp_path),
                      progress=False)
    res = train(_model(), FixedTimeCE(), TensorBatchSource(_data(), 8), cfg, resume=False, evaluate=evaluate)
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    val = [r for r in records if r.get("split") == "val"]
    assert [r["step"] for r in val] == [3, 6] and sorted(res.val_losses) == [3, 6] and len(seen) == 2
    assert [r["val_loss"] for r in val] == pytest.approx([res.val_losses[3], res.val_losses[6]])
    assert all(r["ema"] is False for r in val)
    assert [r["step"] for r in records if "split" not in r] == list(range(1, 8))  # training records unchanged
    # the same run without evaluation has the same losses (evaluation does not move the RNG of training)
    plain = train(_model(), FixedTimeCE(), TensorBatchSource(_data(), 8), cfg.replace(out_dir=None), resume=False)
    assert plain.losses == res.losses
    # the validation loss after 6 steps is the held-out loss of the weights after 6 steps
    six = _model()
    train(six, FixedTimeCE(), TensorBatchSource(_data(), 8), cfg.replace(steps=6, out_dir=None), resume=False)
    with torch.no_grad():
        assert res.val_losses[6] == pytest.approx(float(FixedTimeCE()(six, held_out)[0]), rel=1e-6)
    with pytest.raises(ValueError, match="eval_every must be >= 0"):
        TrainConfig(steps=1, batch_size=8, eval_every=-1)


def test_progress_off_a_terminal_prints_plain_periodic_lines():
    import io

    from flowlm.training.progress import PlainProgress, Progress, progress_bar

    buf = io.StringIO()  # not a terminal
    p = Progress(40, enabled=True, interactive=None, file=buf)
    for k in range(40):
        p.step(100)
        if (k + 1) % 10 == 0:
            p.log({"step": k + 1, "loss": 2.5, "tokens_per_s": 1000.0})
    p.log_eval({"step": 40, "split": "val", "val_loss": 2.25})
    p.close()
    out = buf.getvalue()
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert lines[-2].startswith("train: 40/40 steps (100%)") and "loss=2.5000" in lines[-2]
    assert lines[-1] == "step 40: validation loss 2.2500"
    assert 20 <= len(lines) <= 22  # one line per 5% (2 steps) and the validation line: not one per step
    # a slow run prints on time too: every 30 s even between the 5% marks
    now = [0.0]
    q = PlainProgress(total=1000, desc="x", unit="step", file=(b := io.StringIO()), clock=lambda: now[0])
    for _ in range(3):
        now[0] += 31.0
        q.update(1)
    assert b.getvalue().count("\n") == 3 and "ETA" in b.getvalue()
    assert isinstance(progress_bar(total=3, file=io.StringIO()), PlainProgress)  # detection
    assert not isinstance(progress_bar(total=3, file=io.StringIO(), interactive=True), PlainProgress)


@pytest.mark.parametrize("shape", ["512 64 2 4 4", "128 256 2 4 8", "64 128 4 4 16"])
def test_memory_estimate_covers_what_a_training_step_keeps_for_backward(shape):
    """The activations autograd saves during the forward pass (counted by a saved-tensor hook, each
    storage once) are the floor of a step's activation memory; the estimate covers them without
    overshooting far (the rest of the margin is the backward pass's transient tensors). Covers an
    attention-bound (L = 512) and a width-bound shape."""
    from flowlm.memory import estimate_training_memory
    from flowlm.presets import preset

    L, d, D, H, B = map(int, shape.split())
    cfg = preset("tiny", seq_len=L, width=d, depth=D, heads=H, batch_size=B, mlp_ratio=4, cond=32,
                 attention="math", dropout=0.1)
    torch.manual_seed(0)
    model = FLM(cfg.dit_config(256))
    storages: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}  # counted in the state, not here

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.loss(torch.randint(0, 256, (B, L)))
    saved = sum(storages.values())
    est = estimate_training_memory(cfg, 256)
    assert est.parameters == sum(p.numel() for p in model.parameters())  # the meta-device count is exact
    assert saved <= est.activation_bytes + est.attention_bytes <= 2.5 * saved, (saved, est)

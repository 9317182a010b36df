"""Training-step throughput: eager vs ``torch.compile`` (ratio), and MFU.

MFU = achieved FLOP/s ÷ this machine's measured dense-matmul FLOP/s (float32 ``A @ B``,
n = 1024), where achieved FLOP/s = FLOPs of one training step (counted by
``torch.utils.flop_counter.FlopCounterMode`` on forward + backward of the FLM loss) ÷ step time.

The machine's cores are shared, so load drifts during a run. The measurement is therefore
interleaved: each round times one eager step, one compiled step (``net.compile()``, as
``TrainConfig(compile=True)`` does) and one peak matmul, back to back; the reported values are
medians over rounds, and the speed-up is the median of the per-round ratios. A step is what
:func:`flowlm.training.train` does per step: FLM loss, backward, grad-norm clip, AdamW, EMA.

Run: ``.venv/bin/python benchmarks/bench_train.py`` (writes benchmarks/results/train.{json,md}).
Options: ``--threads N`` (default: all cores), ``--width/--depth/--heads/--vocab/--length/--batch``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from flowlm.models import FLM
from flowlm.nets import DiTConfig
from flowlm.training import EMA, FLMObjective

RESULTS = Path(__file__).resolve().parent / "results"


def matmul_time(n: int = 1024) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(3):
        a @ b
    return (time.perf_counter() - t0) / 3


def step_flops(cfg: DiTConfig, batch: int, length: int) -> int:
    torch.manual_seed(0)
    model = FLM(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (batch, length))
    with FlopCounterMode(display=False) as counter:
        loss, _ = model.loss(tokens)
        loss.backward()
    return int(counter.get_total_flops())


def make_step(cfg: DiTConfig, batch: int, length: int, compile: bool):
    """One training step as in ``train()``: loss, backward, clip, AdamW, EMA."""
    torch.manual_seed(0)
    model = FLM(cfg)
    if compile:
        model.net.compile()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ema = EMA(model, 0.9999)
    objective = FLMObjective()
    tokens = torch.randint(0, cfg.vocab_size, (batch, length), generator=torch.Generator().manual_seed(0))
    params = [p for p in model.parameters()]

    def step() -> float:
        t0 = time.perf_counter()
        loss, _ = objective(model, tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(model)
        float(loss.detach())
        return time.perf_counter() - t0

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--steps", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = DiTConfig(vocab_size=args.vocab, max_length=args.length, width=args.width, depth=args.depth,
                    heads=args.heads, cond=128, dropout=0.1)

    flops = step_flops(cfg, args.batch, args.length)
    eager = make_step(cfg, args.batch, args.length, compile=False)
    compiled = make_step(cfg, args.batch, args.length, compile=True)
    t0 = time.perf_counter()
    compiled()  # compilation
    compile_s = time.perf_counter() - t0
    for _ in range(args.warm):
        eager(), compiled()
    rounds = []
    for _ in range(args.steps):
        rounds.append({"eager_s": eager(), "compiled_s": compiled(), "matmul_s": matmul_time()})
    med = lambda key: statistics.median(r[key] for r in rounds)  # noqa: E731
    peak = 2 * 1024**3 / med("matmul_s")
    eager_s, comp_s = med("eager_s"), med("compiled_s")
    tokens = args.batch * args.length
    result = {
        "device": "cpu", "threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
        "config": cfg.to_dict(), "batch": args.batch, "length": args.length,
        "non_embedding_params": FLM(cfg).net.num_params(),
        "matmul_peak_flops": peak, "step_flops": flops, "compile_s": compile_s, "rounds": rounds,
        "eager": {"step_s": eager_s, "tokens_per_s": tokens / eager_s, "achieved_flops": flops / eager_s,
                  "mfu": flops / eager_s / peak},
        "compiled": {"step_s": comp_s, "tokens_per_s": tokens / comp_s, "achieved_flops": flops / comp_s,
                     "mfu": flops / comp_s / peak},
        "compile_speedup": statistics.median(r["eager_s"] / r["compiled_s"] for r in rounds),
        "mfu_per_round": {"eager": [flops / r["eager_s"] / (2 * 1024**3 / r["matmul_s"]) for r in rounds],
                          "compiled": [flops / r["compiled_s"] / (2 * 1024**3 / r["matmul_s"]) for r in rounds]},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train.json").write_text(json.dumps(result, indent=2))
    e, c = result["eager"], result["compiled"]
    spread = sorted(r["eager_s"] / r["compiled_s"] for r in rounds)
    md = f"""# Training-step benchmark

Produced by `.venv/bin/python benchmarks/bench_train.py` — cpu, {args.threads} thread(s), torch {torch.__version__}.
DiT {args.depth}×{args.width}×{args.heads} (V = {args.vocab}, L = {args.length}, batch {args.batch}, dropout 0.1,
soft-capped math attention), FLM loss on the projected state; a step = loss, backward, clip, AdamW, EMA.
{args.steps} interleaved rounds (eager step, compiled step, 1024² matmul) after {args.warm} warm-up rounds; medians.

| | step (ms) | tokens/s | achieved GFLOP/s | MFU |
|---|---|---|---|---|
| eager | {1e3 * e['step_s']:.1f} | {e['tokens_per_s']:.0f} | {e['achieved_flops'] / 1e9:.2f} | {100 * e['mfu']:.1f}% |
| torch.compile | {1e3 * c['step_s']:.1f} | {c['tokens_per_s']:.0f} | {c['achieved_flops'] / 1e9:.2f} | {100 * c['mfu']:.1f}% |

**compile speed-up (median of per-round eager/compiled ratios): {result['compile_speedup']:.2f}×**
(range {spread[0]:.2f}–{spread[-1]:.2f}×); compilation took {compile_s:.1f} s.
FLOPs per step (FlopCounterMode, fwd + bwd): {flops / 1e9:.2f} GFLOP. Dense float32 matmul (n = 1024) of this machine,
median over the rounds: {peak / 1e9:.1f} GFLOP/s. The cores are shared with other work, so single rounds vary.
"""
    (RESULTS / "train.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

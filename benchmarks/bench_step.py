"""Training-step time of FLM vs AR vs MDLM on the same DiT backbone and the same batch.

A step is what :func:`flowlm.training.train` does: loss, backward, grad-norm clip 1.0, AdamW, EMA.
The three models share one ``DiTConfig`` (AR switches on causal attention; AR and MDLM read ids
through ``V + 1`` embedding rows and have no time input; FLM reads the projected noisy state
``h = x_t E`` and embeds τ). Every loss is the chunked soft-capped cross-entropy (no ``[B, L, V]`` logits).

The machine's cores are shared, so the measurement is interleaved: each round times one step of each
model back to back; reported values are medians over rounds, and the ratios are medians of the
per-round ratios. Goal (issue 14): an FLM step within 1.2× of an AR step.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_step.py`` (writes benchmarks/results/step.{json,md}).
Options: ``--threads N`` (default 1: the cores are shared), ``--width/--depth/--heads/--vocab/--length/--batch/--rounds``.
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

from flowlm.models import AR, FLM, MDLM
from flowlm.nets import DiTConfig
from flowlm.training import EMA

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("flm", "ar", "mdlm")


def build(kind: str, cfg: DiTConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    return {"flm": FLM, "ar": AR, "mdlm": MDLM}[kind](cfg)


def scalar_loss(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    out = model.loss(tokens)
    return out[0] if isinstance(out, tuple) else out  # FLM returns (loss, metrics)


def make_step(kind: str, cfg: DiTConfig, tokens: torch.Tensor):
    model = build(kind, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ema = EMA(model, 0.9999)
    params = list(model.parameters())

    def step() -> float:
        t0 = time.perf_counter()
        loss = scalar_loss(model, tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(model)
        float(loss.detach())
        return time.perf_counter() - t0

    return step, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = DiTConfig(vocab_size=args.vocab, max_length=args.length, width=args.width, depth=args.depth,
                    heads=args.heads, cond=128, dropout=0.1)
    tokens = torch.randint(0, args.vocab, (args.batch, args.length), generator=torch.Generator().manual_seed(0))
    steps, params = {}, {}
    for kind in KINDS:
        steps[kind], model = make_step(kind, cfg, tokens)
        params[kind] = sum(p.numel() for p in model.parameters())
    for _ in range(args.warm):
        for kind in KINDS:
            steps[kind]()
    rounds = []
    for _ in range(args.rounds):
        rounds.append({kind: steps[kind]() for kind in KINDS})
    med = {kind: statistics.median(r[kind] for r in rounds) for kind in KINDS}
    ratio = {f"{k}/ar": statistics.median(r[k] / r["ar"] for r in rounds) for k in ("flm", "mdlm")}
    spread = {key: (min(r[key.split('/')[0]] / r["ar"] for r in rounds), max(r[key.split('/')[0]] / r["ar"] for r in rounds))
              for key in ratio}
    n_tok = args.batch * args.length
    result = {
        "device": "cpu", "threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
        "config": cfg.to_dict(), "batch": args.batch, "length": args.length, "params": params,
        "rounds": rounds, "median_step_s": med, "tokens_per_s": {k: n_tok / v for k, v in med.items()},
        "ratio_to_ar": ratio, "ratio_range": spread, "goal": "flm/ar <= 1.2",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "step.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(args.out / "step.json")
    rows = "\n".join(
        f"| {k.upper()} | {params[k] / 1e6:.2f} | {1e3 * med[k]:.1f} | {n_tok / med[k]:.0f} | "
        + ("1.00" if k == "ar" else f"{ratio[k + '/ar']:.2f} ({spread[k + '/ar'][0]:.2f}–{spread[k + '/ar'][1]:.2f})")
        + " |"
        for k in KINDS
    )
    verdict = "meets" if ratio["flm/ar"] <= 1.2 else "misses"
    md = f"""# Training-step benchmark: FLM vs AR vs MDLM (same backbone, same batch)

Produced by `PYTHONPATH=. .venv/bin/python benchmarks/bench_step.py` — cpu, {args.threads} thread(s), torch {torch.__version__}.
DiT {args.depth}×{args.width}×{args.heads} (V = {args.vocab}, L = {args.length}, batch {args.batch}, dropout 0.1, soft-capped
math attention; AR causal). A step = loss, backward, clip, AdamW, EMA; eager. {args.rounds} interleaved rounds after
{args.warm} warm-up rounds; medians, ratios = median of per-round ratios (range in brackets).

| model | params (M) | step (ms) | tokens/s | step / AR step |
|---|---|---|---|---|
{rows}

FLM {verdict} the goal of a step within 1.2× of an AR step (median ratio {ratio['flm/ar']:.2f}).
AR and MDLM have one more embedding row and head row (the BOS / MASK id) and no time embedder in use;
FLM also draws the Gaussian noise in the projected space (Cholesky of EᵀE when V > d) and maps τ → t.
The cores are shared with other work, so single rounds vary.
"""
    (args.out / "step.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

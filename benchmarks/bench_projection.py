"""The projection shortcut at V = 50257, L = 128: peak memory and step time with vs without it.

*With* the shortcut (``FLM(projected=True)``) the state is ``h = x @ E`` (``[B, L, d]``) and the
noise is drawn as ``x0 @ E ~ N(0, EᵀE)``; *without* it (``projected=False``) the loss builds the
``[B, L, V]`` one-hot, noise and noisy state and projects them inside the network. Both compute
the same network on states with the same law (tests/test_nets.py), so only cost differs.

Measured per variant in a fresh process (so peaks do not mix): one FLM training step (loss,
backward, AdamW) and one Euler sampling run (8 steps, ``no_grad``), each the median of
``--repeats`` timed runs after one warm-up. Peak memory = the process's peak resident set size
(``ru_maxrss``) during the work minus the resident size before it (model and optimizer state
already allocated), i.e. the transient memory of the step itself.

Run: ``.venv/bin/python benchmarks/bench_projection.py`` (writes benchmarks/results/projection.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(variant: str, task: str, args: argparse.Namespace) -> dict:
    from flowlm.models import FLM
    from flowlm.nets import DiTConfig, NetDenoiser
    from flowlm.samplers import EulerSampler
    from flowlm.states import OneHotSpace

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = DiTConfig(vocab_size=args.vocab, max_length=args.length, width=args.width, depth=args.depth,
                    heads=args.heads, cond=64, dropout=0.0)
    model = FLM(cfg, projected=(variant == "projected"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, args.vocab, (args.batch, args.length))
    for p in model.parameters():  # optimizer state allocated up front: not part of the step's peak
        opt.state[p]["exp_avg"] = torch.zeros_like(p)
        opt.state[p]["exp_avg_sq"] = torch.zeros_like(p)
        opt.state[p]["step"] = torch.tensor(0.0)

    if task == "train":
        def run() -> None:
            loss, _ = model.loss(tokens)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
    else:
        sampler = EulerSampler(args.sample_steps)
        if variant == "projected":
            den, space = model.denoiser, model.space
        else:
            den, space = NetDenoiser(model.net, model.flow, OneHotSpace(args.vocab)), OneHotSpace(args.vocab)

        def run() -> None:
            with torch.no_grad():
                x0 = space.noise(args.batch, args.length)
                sampler(den, model.flow, x0, space=space)

    base = _rss_mb()
    run()  # warm-up; also sets the peak
    peak = _peak_mb() - base
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {"variant": variant, "task": task, "median_s": statistics.median(times), "times_s": times,
            "peak_transient_mb": peak, "base_rss_mb": base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--sample-steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tasks", default="train,sample", help="comma-separated subset of train,sample")
    ap.add_argument("--worker", nargs=2, metavar=("VARIANT", "TASK"))
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args)))
        return
    passthrough = [a for a in sys.argv[1:]]
    rows = {}
    for task in args.tasks.split(","):
        for variant in ("projected", "v-wide", "projected", "v-wide"):  # interleaved, two rounds
            out = subprocess.run([sys.executable, __file__, *passthrough, "--worker", variant, task],
                                 capture_output=True, text=True, check=True)
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            rows.setdefault((task, variant), []).append(rec)
    summary = {}
    for (task, variant), recs in rows.items():
        summary.setdefault(task, {})[variant] = {
            "median_s": statistics.median(t for r in recs for t in r["times_s"]),
            "peak_transient_mb": max(r["peak_transient_mb"] for r in recs),
            "runs": recs,
        }
    for task, d in summary.items():
        d["memory_ratio"] = d["v-wide"]["peak_transient_mb"] / d["projected"]["peak_transient_mb"]
        d["speedup"] = d["v-wide"]["median_s"] / d["projected"]["median_s"]
    result = {"device": "cpu", "threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
              "vocab": args.vocab, "length": args.length, "batch": args.batch,
              "dit": {"width": args.width, "depth": args.depth, "heads": args.heads}, **summary}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "projection.json").write_text(json.dumps(result, indent=2))
    bytes_bl_v = args.batch * args.length * args.vocab * 4 / 2**20
    lines = [
        "# Projection shortcut benchmark",
        "",
        f"Produced by `.venv/bin/python benchmarks/bench_projection.py {' '.join(passthrough)}` — cpu, {args.threads} thread(s), torch "
        f"{torch.__version__}. V = {args.vocab}, L = {args.length}, batch {args.batch}, DiT {args.depth}×{args.width}×"
        f"{args.heads}. One `[B, L, V]` float32 tensor is {bytes_bl_v:.0f} MiB. Each variant ran in two fresh processes "
        f"(interleaved); time = median of {2 * args.repeats} runs, memory = peak RSS growth during the work.",
        "",
        "| task | variant | time (ms) | peak transient memory (MiB) |",
        "|---|---|---|---|",
    ]
    for task, d in summary.items():
        for variant in ("projected", "v-wide"):
            lines.append(f"| {task} | {variant} | {1e3 * d[variant]['median_s']:.0f} | {d[variant]['peak_transient_mb']:.0f} |")
    lines.append("")
    for task, d in summary.items():
        lines.append(f"- **{task}**: {d['memory_ratio']:.2f}× less memory, {d['speedup']:.2f}× faster with the shortcut.")
    lines.append("")
    lines.append("Training uses the chunked head + cross-entropy in both variants (no `[B, L, V]` logits), so what "
                 "remains with the shortcut is parameter-sized (V×d gradients, AdamW temporaries); the V-wide path adds "
                 "the one-hot, noise and noisy state (kept for the gradient of E). Sampling goes through the network's "
                 "chunked head (`chunked_probs`: head, soft-cap, softmax and, with the shortcut, `@ E` a chunk of "
                 "positions at a time) in both variants, so no `[B, L, V]` logits exist; with the shortcut the only "
                 "`[B, L, V]` tensor is the returned final probabilities, while the V-wide variant also holds its "
                 "V-wide state, probabilities and drift at every step.")
    md = "\n".join(lines) + "\n"
    (RESULTS / "projection.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

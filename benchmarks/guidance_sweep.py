"""Autoguidance sweep: Gen PPL and unigram entropy against the guidance weight η.

Loads an FLM (or FMLM) checkpoint with :func:`flowlm.hub.load_any`, draws ``--n`` samples at each η
with the autoguided sampler (:func:`flowlm.guidance.generate_guided`; η = 1 is the plain model, and
the weak model is ``--weak``: dropout, online or another checkpoint), scores them with the offline
evaluator exactly as the quickstart does (:func:`flowlm.evaluation.evaluate_samples`), and writes
``benchmarks/results/guidance.json`` and ``guidance.md``.

    python benchmarks/guidance_sweep.py --checkpoint runs/quickstart/flm --steps 128 --n 64
    python benchmarks/guidance_sweep.py --checkpoint runs/quickstart/flm --etas 0,1,2,5,10,20,50 --weak online

The paper reports LM1B FLM Gen PPL 96.9 → 51.6 at η = 50 (weak model: dropout on, exact setup not public).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="an FLM or FMLM checkpoint (run directory, folder, .ckpt)")
    p.add_argument("--etas", default="0,1,1.5,2,3,5,10,20,50", help="comma-separated guidance weights η >= 0")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the run's sample_steps)")
    p.add_argument("--n", type=int, default=64, help="samples per η (default: 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weak", default="dropout", help="dropout | online | CKPT (default: dropout)")
    p.add_argument("--form", choices=("probs", "logits"), default="probs")
    p.add_argument("--gamma", type=float, default=0.0, help="FMLM re-noising (default: 0)")
    p.add_argument("--evaluator", default=None, help="Gen PPL evaluator (default: flowlm's offline default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(RESULTS / "guidance"), help="output stem (.json and .md are written)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    import torch

    from flowlm._io import atomic_write_json, atomic_write_text, device_name, resolve_device
    from flowlm.evaluation import DEFAULT_EVALUATOR, evaluate_samples, load_evaluator
    from flowlm.guidance import check_guidance_weight, generate_guided, load_weak_model
    from flowlm.hub import load_any

    args = parse_args(argv)
    etas = [check_guidance_weight(float(e)) for e in args.etas.split(",") if e.strip()]
    if not etas:
        raise SystemExit("--etas: give at least one weight")
    device = resolve_device(args.device)
    model, tok, cfg = load_any(args.checkpoint, device=device)
    steps = args.steps or (cfg.distill_sample_steps if model.kind == "fmlm" else cfg.sample_steps)
    weak = load_weak_model(args.weak, model, args.checkpoint, device=device)
    evaluator = load_evaluator(args.evaluator or DEFAULT_EVALUATOR, device=device)
    rows = []
    for eta in etas:
        samples = generate_guided(model, tok, args.n, steps, args.seed, gamma=args.gamma, weight=eta, weak=weak,
                                  form=args.form)
        mask = torch.ones_like(samples.tokens, dtype=torch.bool)
        metrics = evaluate_samples(list(samples), samples.tokens, evaluator, mask=mask)
        rows.append({"eta": eta, "gen_ppl": metrics["gen_ppl"], "entropy": metrics["entropy"],
                     "degenerate": metrics.get("degenerate"), "nfe": samples.nfe, "seconds": samples.seconds,
                     "example": samples[0][:200]})
        print(f"η = {eta:g}: Gen PPL {metrics['gen_ppl']:.2f}, entropy {metrics['entropy']:.3f}, NFE {samples.nfe}",
              file=sys.stderr)
    record = {"checkpoint": str(args.checkpoint), "kind": model.kind, "steps": steps, "n_samples": args.n,
              "seed": args.seed, "weak": args.weak, "form": args.form, "gamma": args.gamma,
              "evaluator": evaluator.name, "device": device_name(device), "rows": rows}
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), record, indent=1)
    lines = [f"# Autoguidance sweep ({model.kind.upper()}, {steps} steps, weak: {args.weak}, form: {args.form})", "",
             f"`python benchmarks/guidance_sweep.py {' '.join(argv)}` — {args.n} samples per η, evaluator "
             f"{evaluator.name}, {device_name(device)}. η = 1 is the plain model; NFE counts both models.", "",
             "| η | Gen PPL | entropy | NFE | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['eta']:g} | {r['gen_ppl']:.2f} | {r['entropy']:.3f} | {r['nfe']} | {r['seconds']:.1f} |" for r in rows]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(json.dumps({"written": [str(out.with_suffix(".json")), str(out.with_suffix(".md"))]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Continuations of real prompts: Gen PPL of the continuation given its prefix, conditioned-trained vs clamp-only.

Takes ``--n`` held-out blocks of the corpus (the checkpoint's own tokenizer and sequence length L),
holds the first ``--prefix`` tokens clean (:class:`flowlm.Prompt`; t = τ = 1 there) and samples the
remaining ``L - prefix`` tokens at each step count. The continuation is scored by the offline
evaluator given its prompt (:func:`flowlm.evaluation.gen_ppl` with ``prefixes=``); the unigram
entropy is the continuation's. The row ``data`` scores the real continuations the same way.

A "clamp-only" checkpoint was trained unconditionally (the prompt is only held at sampling, as the FLM
authors did); a "conditioned" one was trained with ``--set train.condition_fraction=...`` (random
clean prefixes, suffixes and spans left out of the loss), FMLM distilled the same way.

    python benchmarks/prompt_continuation.py \\
        --checkpoint clamp-only=runs/quickstart/flm --checkpoint clamp-only=runs/quickstart/fmlm \\
        --checkpoint conditioned=runs/cond/flm --checkpoint conditioned=runs/cond/fmlm

writes ``benchmarks/results/prompt_continuation.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", required=True, metavar="LABEL=PATH",
                   help="an FLM or FMLM run (repeatable); LABEL names the training (e.g. clamp-only, conditioned)")
    p.add_argument("--flm-steps", default="1,8,64", help="FLM Euler steps (default: 1,8,64)")
    p.add_argument("--fmlm-steps", default="1,2,8", help="FMLM flow-map steps (default: 1,2,8)")
    p.add_argument("--prefix", type=int, default=32, help="prompt tokens held clean (default: 32)")
    p.add_argument("--n", type=int, default=64, help="prompts (default: 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="corpus (default: the checkpoint's, e.g. the embedded Shakespeare)")
    p.add_argument("--evaluator", default=None, help="Gen PPL evaluator (default: flowlm's offline default)")
    p.add_argument("--out", default=str(RESULTS / "prompt_continuation"), help="output stem (.json and .md)")
    return p.parse_args(argv)


def _prompts(cfg, tok, n: int, data, seed: int):
    """``n`` held-out blocks [n, L] of the corpus, a seeded choice."""
    import torch

    from flowlm.pipeline import _data_for

    _, splits, _ = _data_for(cfg, data, tok, n)
    blocks = torch.cat(list((splits.val or splits.train).iter_blocks(n)))
    g = torch.Generator().manual_seed(seed)
    if blocks.shape[0] < n:
        raise SystemExit(f"the held-out split has {blocks.shape[0]} blocks; ask for --n <= that")
    return blocks[torch.randperm(blocks.shape[0], generator=g)[:n]]


def main(argv: list[str]) -> int:
    import torch

    from flowlm import Prompt
    from flowlm._io import write_result_files
    from flowlm.evaluation import DEFAULT_EVALUATOR, gen_ppl, load_evaluator, unigram_entropy
    from flowlm.pipeline import load_model

    args = parse_args(argv)
    runs = []
    for spec in args.checkpoint:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"--checkpoint {spec!r}: write LABEL=PATH")
        runs.append((label, path))
    evaluator = load_evaluator(args.evaluator or DEFAULT_EVALUATOR, device="cpu")
    rows: list[dict] = []
    blocks = None
    for label, path in runs:
        model, tok, cfg = load_model(path)
        if blocks is None:
            blocks = _prompts(cfg, tok, args.n, args.data, args.seed)  # [n, L], the same prompts for every run
            L = blocks.shape[1]
            if not 0 < args.prefix < L:
                raise SystemExit(f"--prefix must lie in (0, {L})")
            prefixes = [tok.decode(b[: args.prefix].tolist()) for b in blocks]
            real = blocks[:, args.prefix:]
            ref = gen_ppl([tok.decode(b.tolist()) for b in real], evaluator, prefixes=prefixes)
            rows.append(dict(training="data", model="data", steps=None, nfe=None, gen_ppl=ref.ppl,
                             entropy=float(unigram_entropy(real).mean()), seconds=None))
            print(f"data: continuation Gen PPL {ref.ppl:.1f}", file=sys.stderr)
        if blocks.shape[1] != cfg.data.seq_len:
            raise SystemExit(f"{path}: sequence length {cfg.data.seq_len}, but the first run's is {blocks.shape[1]}")
        mask = torch.zeros_like(blocks, dtype=torch.bool)
        mask[:, : args.prefix] = True
        prompt = Prompt(blocks, mask)
        steps_list = args.fmlm_steps if model.kind == "fmlm" else args.flm_steps
        for steps in (int(s) for s in steps_list.split(",")):
            g = torch.Generator().manual_seed(args.seed)
            start = time.perf_counter()
            out = model.sample(args.n, blocks.shape[1], steps, prompt=prompt, generator=g)
            seconds = time.perf_counter() - start
            assert torch.equal(out.tokens[:, : args.prefix], blocks[:, : args.prefix])  # the prompt is untouched
            cont = out.tokens[:, args.prefix:]
            res = gen_ppl([tok.decode(c.tolist()) for c in cont], evaluator, prefixes=prefixes, skip_empty=True)
            rows.append(dict(training=label, model=model.kind.upper(), steps=steps, nfe=int(out.nfe), gen_ppl=res.ppl,
                             entropy=float(unigram_entropy(cont).mean()), seconds=seconds))
            print(f"{label} {model.kind.upper()} {steps} steps: Gen PPL {res.ppl:.1f}, entropy "
                  f"{rows[-1]['entropy']:.2f}", file=sys.stderr)
    lines = [f"Continuations of {args.n} held-out prompts ({args.prefix} prompt tokens, {blocks.shape[1] - args.prefix} "
             f"generated); Gen PPL of the continuation given its prompt ({evaluator.name}), unigram entropy of the "
             "continuation.", "", "| training | model | steps | NFE | Gen PPL | entropy |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['training']} | {r['model']} | {r['steps'] or '–'} | {r['nfe'] or '–'} | {r['gen_ppl']:.1f} | "
                     f"{r['entropy']:.2f} |")
    write_result_files(args.out, {"args": vars(args), "rows": rows}, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

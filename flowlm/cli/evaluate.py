"""``flowlm eval``: Gen PPL + unigram entropy of samples from checkpoints (or of a text file), one JSON record each."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowlm.cli.common import add_data_arg, positive_int, step_counts, user_errors

EXAMPLES = """\
examples:
  flowlm eval --checkpoint runs/quickstart/fmlm --steps 1,2,4,8 --reference
  flowlm eval --checkpoint runs/quickstart/flm --steps 64 --n-samples 128 --evaluator gpt2-large
  flowlm eval --checkpoint runs/a --checkpoint runs/b --steps 1 --out runs/compare
  flowlm eval --texts samples.txt          # texts from `flowlm sample --out`, or one sample per line

Each evaluation writes one JSON record (model hash, config, sampler, steps, NFE, seed, evaluator,
metrics, wall time) to --out (default: <run dir>/eval), plus results.md with the table.
Gen PPL: corpus-level exp(mean NLL) under the evaluator (default: SmolLM2-135M, offline), each
sample prefixed by the evaluator's document-start token, truncated to its context.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="Gen PPL + entropy of checkpoint samples (or a text file); JSON records + table",
        description="Gen PPL + unigram entropy of samples from checkpoints (or of a text file), one JSON record each.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", metavar="CKPT", action="append", default=[],
                   help="run directory or checkpoint file, a save_pretrained folder, or the authors' .ckpt / "
                        "Hugging Face folder (repeatable)")
    p.add_argument("--texts", metavar="FILE", default=None,
                   help="evaluate the samples in this text file instead of sampling a checkpoint")
    p.add_argument("--steps", type=step_counts, default=None, metavar="1,2,4",
                   help="sampler steps (default: the run's sample.steps / sample.flow_map_steps; AR: one per token)")
    p.add_argument("--n-samples", type=positive_int, default=32, help="samples per evaluation (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--gamma", type=float, default=None, help="FMLM re-noising in [0, 1] (default: the run's)")
    p.add_argument("--temperature", type=float, default=None, help="AR / MDLM sampling temperature (default: the run's)")
    p.add_argument("--top-p", type=float, default=None, help="AR / MDLM nucleus mass (default: the run's)")
    p.add_argument("--evaluator", default="smollm2-135m",
                   help="smollm2-135m (offline; the default), a Hugging Face causal-LM name, or a local model folder")
    p.add_argument("--batch-size", type=positive_int, default=8, help="evaluator batch size (default: 8)")
    p.add_argument("--reference", action="store_true",
                   help="also score held-out blocks of the training corpus (or --data) as the reference row")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--out", metavar="DIR", default=None, help="records folder (default: <first run dir>/eval)")
    add_data_arg(p)
    p.set_defaults(func=run)


def _split_texts(raw: str) -> list[str]:
    from flowlm.cli.sample import SEPARATOR

    sep = SEPARATOR.strip()
    if sep in raw:
        parts = [p.strip("\n") for p in raw.split(sep)]
    else:
        parts = raw.splitlines()
    return [p for p in parts if p.strip()]


def _evaluate_text_file(path: Path, evaluator, batch_size: int):
    import torch

    from flowlm.evaluation import EvalRecord, evaluate_samples, file_hash

    texts = _split_texts(path.read_text(encoding="utf-8"))
    if not texts:
        raise ValueError(f"{path} holds no sample text; put one sample per line or separate them with "
                         "the `flowlm sample` separator line '----------'")
    ids = [evaluator.encode(t) or [0] for t in texts]  # entropy on the evaluator's tokens here
    width = max(map(len, ids))
    tokens = torch.zeros(len(ids), width, dtype=torch.long)
    mask = torch.zeros(len(ids), width, dtype=torch.bool)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = True
    metrics = evaluate_samples(texts, tokens, evaluator, mask=mask, batch_size=batch_size)
    metrics["entropy_tokens"] = "evaluator"
    return EvalRecord(method="texts", metrics=metrics, evaluator=evaluator.name, n_samples=len(texts),
                      checkpoint=str(path), checkpoint_hash=file_hash(path))


@user_errors("eval")
def run(args: argparse.Namespace) -> int:
    from flowlm.evaluation import EvaluatorNotFoundError, load_evaluator
    from flowlm._io import resolve_device
    from flowlm.hub.loading import checkpoint_file, load_any
    from flowlm.pipeline import RunError
    from flowlm.evaluation.report import format_table, write_report
    from flowlm.evaluation.sampling import evaluate_checkpoint, reference_record
    from flowlm.pipeline import default_steps

    if bool(args.checkpoint) == bool(args.texts):
        raise RunError("pass --checkpoint CKPT (sample and evaluate a model) or --texts FILE, not both or neither")
    if args.n_samples < 1:
        raise RunError(f"--n-samples must be >= 1, got {args.n_samples}")
    if args.gamma is not None and not 0.0 <= args.gamma <= 1.0:
        raise RunError(f"--gamma must be in [0, 1], got {args.gamma}")
    ckpts = [checkpoint_file(c) for c in args.checkpoint]  # RunError for a missing checkpoint, before loading
    if args.texts and not Path(args.texts).is_file():
        raise RunError(f"--texts {args.texts}: no such file")
    device = resolve_device(args.device)
    try:
        evaluator = load_evaluator(args.evaluator, device=device)
    except EvaluatorNotFoundError as e:
        print(f"flowlm eval: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2

    out = Path(args.out) if args.out else (ckpts[0].parent / "eval" if ckpts else Path(args.texts).parent / "eval")
    records = []
    if args.texts:
        rec = _evaluate_text_file(Path(args.texts), evaluator, args.batch_size)
        rec.save(out / f"texts-{Path(args.texts).stem}.json")
        records.append(rec)
    ref_entropy = None
    for i, ckpt in enumerate(ckpts):
        loaded = load_any(ckpt, device=device)  # a run, a pretrained folder, or the authors' .ckpt / HF folder
        net, tok, cfg = loaded
        method = net.kind.upper()
        if args.reference and i == 0:
            data = args.data if args.data is not None else _run_data(ckpt.parent)
            ref = reference_record(cfg, tok, evaluator, n_samples=args.n_samples, data=data)
            ref.save(out / "data.json")
            records.append(ref)
            ref_entropy = ref.metrics["entropy"]
        steps_list = args.steps or (default_steps(cfg, net.kind),)
        gamma = cfg.sample.gamma if args.gamma is None else args.gamma
        temperature = cfg.sample.temperature if args.temperature is None else args.temperature
        top_p = cfg.sample.top_p if args.top_p is None else args.top_p
        if method in ("FLM", "FMLM") and (args.temperature is not None or args.top_p is not None):
            raise RunError(f"--temperature and --top-p apply to AR and MDLM models; {ckpt} is an {method}")
        if method == "AR":
            steps_list = (None,)  # one step per token
        for j, steps in enumerate(steps_list):
            rec = evaluate_checkpoint(ckpt, steps, evaluator, n_samples=args.n_samples, seed=args.seed,
                                      gamma=gamma, temperature=temperature, top_p=top_p,
                                      reference_entropy=ref_entropy, model=loaded, warmup=(j == 0),
                                      samples_path=out / "samples" / f"{ckpt.parent.name}-{method.lower()}-{steps or 0:03d}.txt")
            name = f"{ckpt.parent.name}-{method.lower()}-{rec.steps:03d}.json"
            rec.save(out / name)
            records.append(rec)
            print(f"flowlm eval: {ckpt.parent.name} {method} {rec.steps} steps: Gen PPL {rec.metrics['gen_ppl']:.2f}, "
                  f"entropy {rec.metrics['entropy']:.3f}", file=sys.stderr)
    if ckpts:
        write_report(records, out, title="flowlm eval")
    print(format_table(records))
    print(f"flowlm eval: records in {out}", file=sys.stderr)
    return 0


def _run_data(run_dir: Path):
    """The corpus a run was trained on (its run.json), or None (the embedded corpus)."""
    import json

    run_json = run_dir / "run.json"
    if run_json.is_file():
        data = json.loads(run_json.read_text()).get("data")
        if data and Path(data).exists():
            return data
    return None

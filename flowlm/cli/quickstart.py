"""``flowlm quickstart``: train an FLM, distill a one-step FMLM, sample both, evaluate, write a report."""

from __future__ import annotations

import argparse
import sys
import time

from flowlm.cli.common import add_data_arg, positive_int, step_counts, user_errors

EXAMPLES = """\
examples:
  flowlm quickstart                          # ~15-20 min on a laptop CPU; re-running skips finished stages
  flowlm quickstart --preset tiny --out-dir runs/qs-tiny      # the same pipeline in well under a minute
  flowlm quickstart --preset shakespeare-char --set train.steps=4000 --n-samples 64
  flowlm quickstart --data my_corpus.txt --out-dir runs/qs-mine

Stages: train the FLM (out-dir/flm) -> distill the FMLM (out-dir/fmlm, semigroup) -> sample FMLM at
1/2/4/8 steps and the FLM at 8..128 steps -> Gen PPL (offline SmolLM2-135M) + unigram entropy, with
held-out text as the reference row -> out-dir/report/ (results.md, genppl.png, samples.md).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from flowlm.quickstart import DEFAULT_QUICKSTART_PRESET, QUICKSTART_PRESETS

    p = subparsers.add_parser(
        "quickstart", help="train + distill + sample + evaluate on the embedded corpus, write a report",
        description="train an FLM, distill a one-step FMLM, sample both over step sweeps, evaluate, write a report.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default=DEFAULT_QUICKSTART_PRESET, choices=list(QUICKSTART_PRESETS),
                   help=f"run preset to train (default: {DEFAULT_QUICKSTART_PRESET}; tiny: the whole pipeline in seconds)")
    p.add_argument("--out-dir", default=None, metavar="DIR",
                   help="quickstart folder (default: runs/quickstart, or runs/quickstart-tiny for --preset tiny)")
    p.add_argument("--set", dest="overrides", metavar="FIELD=VALUE", action="append", default=[],
                   help="override a RunConfig key of the preset, e.g. --set train.steps=4000 (repeatable)")
    p.add_argument("--fmlm-steps", type=step_counts, default=None, metavar="1,2,4,8", help="FMLM step sweep (default: 1,2,4,8)")
    p.add_argument("--flm-steps", type=step_counts, default=None, metavar="8,16,...", help="FLM step sweep (default: 8,16,32,64,128)")
    p.add_argument("--n-samples", type=positive_int, default=None, help="samples per evaluation (default: 32; tiny: 4)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--evaluator", default=None,
                   help="Gen PPL evaluator: smollm2-135m (offline; the default), a HF causal-LM name, or a model folder")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: the preset's)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_data_arg(p)
    p.set_defaults(func=run)


@user_errors("quickstart")
def run(args: argparse.Namespace) -> int:
    from flowlm.evaluation import EvaluatorNotFoundError
    from flowlm.presets import apply_overrides, preset
    from flowlm.quickstart import QUICKSTART_PRESETS, format_table, quickstart_plan, run_quickstart

    start = time.perf_counter()
    out_dir = args.out_dir or ("runs/quickstart" if args.preset != "tiny" else "runs/quickstart-tiny")
    # parse --set against the RunConfig field types (errors name the bad field); keep what differs
    base = preset(QUICKSTART_PRESETS[args.preset]["preset"])
    changed = {k: v for k, v in apply_overrides(base, args.overrides).to_flat().items() if v != base.get(k)}
    try:
        plan = quickstart_plan(
            args.preset, out_dir=out_dir, data=args.data, fmlm_steps=args.fmlm_steps, flm_steps=args.flm_steps,
            n_samples=args.n_samples, seed=args.seed, evaluator=args.evaluator, device=args.device,
            overrides=changed,
        )
    except ValueError as e:
        print(f"flowlm quickstart: error: {e}", file=sys.stderr)
        return 2
    try:
        records = run_quickstart(plan, progress=args.progress)
    except EvaluatorNotFoundError as e:
        print(f"flowlm quickstart: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    minutes = (time.perf_counter() - start) / 60
    print(format_table(records))
    print(f"\nreport: {plan.out_dir / 'report' / 'results.md'} (+ genppl.png, samples.md); "
          f"total {minutes:.1f} min", file=sys.stderr)
    return 0

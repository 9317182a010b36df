"""``flowlm experiment``: a suite of runs on real text (distillers, baselines, ablations), evaluated and reported."""

from __future__ import annotations

import argparse
import sys
import time

from flowlm.cli.common import HelpFormatter, add_data_arg, positive_int, user_errors

EXAMPLES = """\
examples:
  flowlm experiment distillers --preset tiny --out runs/exp-tiny        # seconds: every stage of the suite
  flowlm experiment baselines --preset shakespeare-bpe --seeds 0 1 --out runs/exp-baselines
  flowlm experiment ablations --preset shakespeare-bpe --variants flm fmlm-self
  flowlm experiment distillers --preset tiny --set distill.steps=50 --set eval.steps=4,16

Suites: distillers (FLM teacher; semigroup, Lagrangian, Eulerian bounded, Eulerian paper target;
FMLM at 1/2/4/8 steps; residuals), baselines (FLM + FMLM vs AR vs MDLM on the same DiT), ablations
(CE vs MSE vs velocity-MSE, decoding-error vs uniform time, soft-cap on/off, Linear vs Cosine vs
Quadratic, teacher vs self-distillation). Every stage is a run folder under OUT/seedN/ and is skipped
when finished; suites run into one OUT share stages of the same name (the FLM teacher, the semigroup
FMLM) and one report: OUT/report/results.md (a table per suite), results.json, genppl_entropy*.png.
An estimate of the run time prints first (--dry-run: only the plan and the estimate).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from flowlm.experiments.suites import SUITES
    from flowlm.presets import PRESETS

    p = subparsers.add_parser(
        "experiment", help="run a suite (distillers | baselines | ablations) and write a report",
        description="Train, evaluate and compare a suite of variants on one corpus, resumably.",
        epilog=EXAMPLES, formatter_class=HelpFormatter,
    )
    p.add_argument("suite", help=f"one of {', '.join(SUITES)}")
    p.add_argument("--preset", default="tiny", choices=list(PRESETS), help="run preset (default: tiny)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override a RunConfig key for every stage, e.g. --set train.steps=500 (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training and sampling seeds (default: 0)")
    p.add_argument("--variants", nargs="+", default=None, help="run only these stages (and their teachers)")
    p.add_argument("--out", default=None, metavar="DIR", help="experiment folder (default: runs/experiment-SUITE-PRESET)")
    p.add_argument("--n-samples", type=positive_int, default=None, help="samples per evaluation (default: eval.n_samples)")
    p.add_argument("--evaluator", default=None, help="Gen PPL evaluator (default: smollm2-135m, offline)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: the preset's)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan and the run-time estimate (a timed step of each stage), then stop")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar (default: on)")
    add_data_arg(p)
    p.set_defaults(func=run)


@user_errors("experiment")
def run(args: argparse.Namespace) -> int:
    from flowlm.evaluation import EvaluatorNotFoundError
    from flowlm.experiments.runner import format_suite_table, run_suite
    from flowlm.experiments.suites import ExperimentError
    from flowlm.presets import apply_overrides, preset

    start = time.perf_counter()
    cfg = apply_overrides(preset(args.preset), args.overrides)
    if args.device:
        cfg = cfg.replace(device=args.device)
    out = args.out or f"runs/experiment-{args.suite}-{args.preset}"
    if args.dry_run:
        return _dry_run(args, cfg, out)
    try:
        result = run_suite(args.suite, cfg, out=out, data=args.data, seeds=args.seeds, variants=args.variants,
                           evaluator=args.evaluator, n_samples=args.n_samples, progress=args.progress)
    except (ExperimentError, EvaluatorNotFoundError) as e:
        print(f"flowlm experiment: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(format_suite_table(result))
    print(f"\nreport: {result.report} (+ results.json, genppl_entropy.png); "
          f"total {(time.perf_counter() - start) / 60:.1f} min", file=sys.stderr)
    return 0


def _dry_run(args: argparse.Namespace, cfg, out: str) -> int:
    from flowlm._io import resolve_device
    from flowlm.experiments.estimate import estimate_suite
    from flowlm.experiments.suites import ExperimentError, build_suite

    try:
        suite = build_suite(args.suite, cfg, args.variants)
    except ExperimentError as e:
        print(f"flowlm experiment: error: {e}", file=sys.stderr)
        return 2
    for stage in suite.stages:
        src = f" from {stage.teacher}" if stage.teacher else ""
        print(f"{stage.name}: {stage.kind}{src} {stage.changes}")
    n = args.n_samples or cfg.eval.n_samples
    est = estimate_suite(suite, cfg, [int(s) for s in args.seeds], out, n, device=resolve_device(cfg.device))
    for name, sec in est.step_seconds.items():
        print(f"  {name}: {sec * 1e3:.0f} ms per optimizer step")
    print(est.describe())
    return 0

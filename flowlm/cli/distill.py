"""``flowlm distill``: distill a trained FLM into a one/few-step flow-map model (FMLM)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowlm.cli.common import HelpFormatter, add_run_args, config_from_args, positive_int, user_errors
from flowlm.presets import DISTILL_METHODS

EXAMPLES = """\
examples:
  flowlm distill --teacher runs/shakespeare-char-flm                     # semigroup (the default)
  flowlm distill --teacher runs/tiny-flm --method lagrangian --steps 200
  flowlm distill --teacher runs/owt-flm/checkpoint.safetensors --method eulerian --data /data/owt
  flowlm distill --teacher runs/tiny-flm --set distill.lr=1e-4 --out-dir runs/tiny-sg
  flowlm distill --teacher runs/tiny-flm --method lagrangian --set distill.projection=sparsemax \
      --set distill.jvp=finite_difference --set distill.jvp_eps=1e-4
  flowlm distill --teacher runs/tiny-flm --method eulerian --set distill.eulerian_target=paper \
      --set distill.boundary=drop --set distill.tau_max=0.98
  flowlm distill --teacher runs/tiny-flm --set distill.teacher=self    # self-distillation

The student starts from the teacher's EMA weights; the model settings come from the teacher's
run; --set changes the distillation keys (distill.steps, distill.lr, distill.projection, ...).
The corpus is the teacher's unless --data is given. Output: --out-dir (default
<teacher run>-<method>) with the same files as `flowlm train`.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distill", help="distill an FLM into a one/few-step flow-map model (FMLM)",
        description="Distill a trained FLM into a one/few-step flow-map model (FMLM).", epilog=EXAMPLES, formatter_class=HelpFormatter,
    )
    p.add_argument("--teacher", required=True, metavar="CKPT", help="the FLM: a run directory or checkpoint file")
    p.add_argument("--method", choices=DISTILL_METHODS, default=None,
                   help="flow-map characterization to distill with (default: the run config's, semigroup)")
    add_run_args(p, preset=False)
    p.add_argument("--steps", type=positive_int, default=None, help="distillation steps (default: the config's distill.steps)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="global batch size (default: distill.batch_size)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: distill.lr)")
    p.set_defaults(func=run)


@user_errors("distill")
def run(args: argparse.Namespace) -> int:
    from flowlm.pipeline import distill_fmlm, find_checkpoint, load_run_config

    teacher = find_checkpoint(args.teacher)
    cfg = config_from_args(args, base=load_run_config(teacher), **{
        "distill.steps": args.steps, "distill.batch_size": args.batch_size, "distill.lr": args.lr,
        "distill.method": args.method})
    method = cfg.distill.method
    out_dir = args.out_dir or str(Path(teacher.parent).with_name(f"{teacher.parent.name}-{method}"))
    ckpt = distill_fmlm(cfg, teacher, method=method, out_dir=out_dir, resume=args.resume, data=args.data)
    print(f"checkpoint: {ckpt}")
    print(f"next: flowlm sample --checkpoint {ckpt.parent} --steps 1", file=sys.stderr)
    return 0

"""``flowlm train``: train a flow language model (FLM) on a corpus."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowlm.cli.common import HelpFormatter, add_run_args, config_from_args, positive_int, user_errors

EXAMPLES = """\
examples:
  flowlm train                                       # shakespeare-char preset on the embedded plays
  flowlm train --preset tiny --data notes.txt        # seconds; any UTF-8 text file or folder of .txt
  flowlm train --preset shakespeare-bpe --steps 4000 --out-dir runs/bpe
  flowlm train --preset owt --data data/owt --device cuda --compile   # shards from `flowlm data prepare`
  flowlm train --out-dir runs/bpe --steps 6000       # resume runs/bpe and train on to step 6000
  flowlm train --set width=256 --set depth=6 --set lr=5e-4

The run directory (--out-dir, default runs/<preset>-flm) gets config.json, tokenizer.json,
run.json, checkpoint.safetensors, metrics.jsonl and samples.txt. Re-running the same command
resumes from the checkpoint; --no-resume refuses to touch an existing run.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a flow language model (FLM)", description="Train a flow language model (FLM) on a corpus.",
        epilog=EXAMPLES, formatter_class=HelpFormatter,
    )
    add_run_args(p)
    p.add_argument("--steps", type=positive_int, default=None, help="optimizer steps (default: the preset's)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="global batch size (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    p.set_defaults(func=run)


@user_errors("train")
def run(args: argparse.Namespace) -> int:
    from flowlm.pipeline import load_run_config, train_flm

    base = None
    if args.preset is None and args.out_dir and args.resume and (Path(args.out_dir) / "config.json").is_file():
        base = load_run_config(args.out_dir)  # resuming: the run's own settings
    cfg = config_from_args(args, base=base, steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    out_dir = args.out_dir or f"runs/{cfg.preset}-flm"
    ckpt = train_flm(cfg, data=args.data, out_dir=out_dir, resume=args.resume)
    print(f"checkpoint: {ckpt}")
    print(f"next: flowlm sample --checkpoint {ckpt.parent}    flowlm distill --teacher {ckpt.parent}",
          file=sys.stderr)
    return 0

"""``flowlm train``: train a flow language model (FLM), or a same-backbone AR / MDLM baseline, on a corpus."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowlm.cli.common import HelpFormatter, add_run_args, config_from_args, positive_int, user_errors
from flowlm.presets import MODEL_KINDS

EXAMPLES = """\
examples:
  flowlm train                                       # shakespeare-char preset on the embedded plays
  flowlm train --preset tiny --data notes.txt        # seconds; any UTF-8 text file or folder of .txt
  flowlm train --preset shakespeare-bpe --steps 4000 --out-dir runs/bpe
  flowlm train --preset owt --data data/owt --device cuda --compile   # shards from `flowlm data prepare`
  flowlm train --out-dir runs/bpe --steps 6000       # resume runs/bpe and train on to step 6000
  flowlm train --set model.width=256 --set model.depth=6 --set train.lr=5e-4
  flowlm train --preset tiny --model ar              # the same DiT, causal, next-token CE (baseline)
  flowlm train --preset tiny --model mdlm            # the same DiT, masked diffusion (baseline)

The run directory (--out-dir, default runs/<preset>-<model>) gets config.json, tokenizer.json,
run.json, checkpoint.safetensors, metrics.jsonl and samples.txt. Re-running the same command
resumes from the checkpoint; --no-resume refuses to touch an existing run.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a flow language model (FLM) or an AR / MDLM baseline",
        description="Train a flow language model (FLM), or an AR / MDLM baseline on the same DiT, on a corpus.",
        epilog=EXAMPLES, formatter_class=HelpFormatter,
    )
    add_run_args(p)
    p.add_argument("--model", choices=MODEL_KINDS, default=None,
                   help="flm (default), ar (autoregressive) or mdlm (masked diffusion): same backbone, data and budget")
    p.add_argument("--steps", type=positive_int, default=None, help="optimizer steps (default: the preset's)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="global batch size (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    p.set_defaults(func=run)


@user_errors("train")
def run(args: argparse.Namespace) -> int:
    from flowlm.pipeline import load_run_config, train_model

    base = None
    if args.preset is None and args.out_dir and args.resume and (Path(args.out_dir) / "config.json").is_file():
        base = load_run_config(args.out_dir)  # resuming: the run's own settings
    cfg = config_from_args(args, base=base, **{"train.steps": args.steps, "train.batch_size": args.batch_size,
                                                "train.lr": args.lr, "model.kind": args.model})
    out_dir = args.out_dir or f"runs/{cfg.preset}-{cfg.model.kind}"
    ckpt = train_model(cfg, data=args.data, out_dir=out_dir, resume=args.resume)
    print(f"checkpoint: {ckpt}")
    nxt = f"flowlm sample --checkpoint {ckpt.parent}"
    if cfg.model.kind == "flm":
        nxt += f"    flowlm distill --teacher {ckpt.parent}"
    print(f"next: {nxt}", file=sys.stderr)
    return 0

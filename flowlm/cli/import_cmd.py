"""``flowlm import``: turn the FLM authors' checkpoint (or a pretrained folder) into a flowlm run directory."""

from __future__ import annotations

import argparse
import sys

from flowlm.cli.common import HelpFormatter, user_errors

EXAMPLES = """\
examples:
  flowlm import fmlm-lm1b.ckpt --out runs/fmlm-lm1b            # the authors' Lightning checkpoint
  flowlm import ./flm-owt-hf --out runs/flm-owt                 # a Hugging Face folder (config.json + model.safetensors)
  flowlm sample --checkpoint runs/fmlm-lm1b --steps 1           # then sample / eval / bench it like any run
  flowlm import my.ckpt --out runs/mine --tokenizer runs/other/tokenizer.json   # a vocabulary of your own

The .ckpt is read without running code from the file (only tensors and plain containers are
unpickled); --trust-pickle unpickles it fully, which runs whatever code the file contains.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import", help="import the authors' FLM/FMLM checkpoint (.ckpt or Hugging Face folder) as a flowlm run",
        description="Write a flowlm run directory from the FLM authors' .ckpt / Hugging Face folder or a "
                    "save_pretrained folder; sample, eval and bench read it with --checkpoint.",
        epilog=EXAMPLES, formatter_class=HelpFormatter,
    )
    p.add_argument("path", metavar="PATH", help="the authors' .ckpt file, or a Hugging Face folder")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="the run directory to create (must be new or empty)")
    p.add_argument("--tokenizer", default=None, metavar="TOK",
                   help="bert, gpt2, or a flowlm tokenizer.json (default: the authors' tokenizer of the vocabulary)")
    p.add_argument("--weights", choices=("auto", "ema", "raw"), default="auto",
                   help="which weights of a .ckpt: its EMA (auto: when present) or the raw ones")
    p.add_argument("--trust-pickle", action="store_true",
                   help="unpickle the .ckpt fully: DANGEROUS, runs any code in the file (never needed for weights)")
    p.set_defaults(func=run)


@user_errors("import")
def run(args: argparse.Namespace) -> int:
    from flowlm.hub import from_pretrained, load_reference, write_run
    from flowlm.hub.loading import checkpoint_kind, resolve_checkpoint_path, resolve_tokenizer
    from flowlm.pipeline import RunError

    path = resolve_checkpoint_path(args.path)  # DIR/model.safetensors -> DIR
    kind = checkpoint_kind(path)
    if kind == "run":
        raise RunError(f"{args.path} is already a flowlm run; sample it with `flowlm sample --checkpoint {args.path}`")
    if kind == "pretrained":
        model, weights = from_pretrained(path), "pretrained"
        tok = model.tokenizer if args.tokenizer is None and model.tokenizer is not None \
            else resolve_tokenizer(args.tokenizer, model.vocab_size)
    else:
        model = load_reference(path, trust_pickle=args.trust_pickle, weights=args.weights)
        weights = model.source[1]
        tok = resolve_tokenizer(args.tokenizer, model.vocab_size)
    out = write_run(model, tok, args.out, source=str(args.path), weights=weights)
    c = model.config
    print(f"flowlm import: {type(model).__name__} ({c.depth} blocks, width {c.width}, {c.heads} heads, cond {c.cond}, "
          f"V {c.vocab_size}, L {c.max_length}; {weights} weights, {tok.kind} tokenizer) -> {out}", file=sys.stderr)
    return 0

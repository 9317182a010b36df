"""``flowlm data prepare``: tokenize a corpus into memory-mapped token shards (multiprocess, resumable)."""

from __future__ import annotations

import argparse
import sys
import time

from flowlm.cli.common import HelpFormatter, user_errors

EXAMPLES = """\
examples:
  flowlm data prepare --data owt/ --tokenizer gpt2 --out data/owt              # a datasets save_to_disk folder
  flowlm data prepare --data 'lm1b/*.txt' --tokenizer bert --out data/lm1b --workers 16
  flowlm data prepare --data docs.jsonl --text-column body --tokenizer gpt2 --out data/docs
  flowlm train --preset owt --data data/owt                                      # then train on the shards

The folder gets index.json (tokenizer, vocab size, dtype, shard files with token counts, content
hash) and shard-NNNNN.bin files (uint16 ids when the vocabulary fits, else uint32). Re-running an
interrupted command resumes it: finished shards are kept, a partial shard is redone.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="prepare token shards for training at scale",
                              description="Data preparation for training at scale.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = sub.add_parser(
        "prepare", help="tokenize a corpus into memory-mapped token shards",
        description="Tokenize a corpus with several processes into memory-mapped token shards plus an index.",
        epilog=EXAMPLES, formatter_class=HelpFormatter,
    )
    q.add_argument("--data", metavar="PATH_OR_GLOB", required=True,
                   help="a text/JSONL/Parquet file, a folder of them, a quoted glob, or a `datasets` save_to_disk folder")
    q.add_argument("--tokenizer", default="gpt2",
                   help="gpt2 | bert (fixed vocabularies), or char | bpe (fitted to the corpus in memory; small corpora); "
                        "default: gpt2")
    q.add_argument("--out", metavar="DIR", required=True, help="the shard folder (new, empty, or an interrupted prepare)")
    q.add_argument("--workers", type=int, default=None, help="tokenizer processes (default: the usable CPUs)")
    q.add_argument("--shard-tokens", type=int, default=None, help="about this many tokens per shard (default: 2^26)")
    q.add_argument("--text-column", default="text", help="text field of JSONL / Parquet / datasets inputs (default: text)")
    q.add_argument("--vocab-size", type=int, default=None, help="BPE target size (--tokenizer bpe only)")
    q.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    q.set_defaults(func=run)


@user_errors("data prepare")
def run(args: argparse.Namespace) -> int:
    from flowlm.data.prepare import DEFAULT_SHARD_TOKENS, prepare_shards

    from pathlib import Path

    from flowlm.data.shards import INDEX_NAME

    already = (Path(args.out).expanduser() / INDEX_NAME).is_file()
    t0 = time.perf_counter()
    try:
        index = prepare_shards(args.data, args.out, args.tokenizer, workers=args.workers,
                               shard_tokens=args.shard_tokens or DEFAULT_SHARD_TOKENS, text_column=args.text_column,
                               vocab_size=args.vocab_size, progress=args.progress)
    except KeyboardInterrupt:
        print("interrupted; the finished shards are kept: re-run the same command to resume", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - t0
    print(f"{args.out}: {index['total_tokens']} tokens ({index['tokenizer_name']}, V={index['vocab_size']}, "
          f"{index['dtype']}) in {len(index['shards'])} shard(s) from {index['documents']} documents, "
          f"content hash {index['content_hash']}")
    if already:
        print("flowlm data prepare: the folder was already complete; nothing to do", file=sys.stderr)
    else:
        print(f"flowlm data prepare: {seconds:.1f} s, {index['text_bytes'] / 1e6 / max(seconds, 1e-9):.2f} MB/s of text",
              file=sys.stderr)
    print(f"next: flowlm train --data {args.out}", file=sys.stderr)
    return 0

"""``flowlm`` entry point: ``flowlm {train,distill,sample,eval,bench,experiment,import,quickstart,data} ...``.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func`` (called with the parsed namespace; returns an exit code).
"""

from __future__ import annotations

import argparse
import sys

from flowlm import __version__
from flowlm.cli import bench, data, distill, evaluate, experiment, import_cmd, quickstart, sample, train

SUBCOMMANDS = (train, distill, sample, evaluate, bench, experiment, import_cmd, quickstart, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowlm",
        description="Flow language models: train an FLM, distill it into a one/few-step FMLM, sample, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"flowlm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept and the run resumes from it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`flowlm eval` (not implemented yet)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="(not implemented yet)")
    p.add_argument("--data", default=None, help="a text file or a folder of .txt files (default: the embedded corpus)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("flowlm eval: not implemented yet")

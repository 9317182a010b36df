"""Shared argparse pieces of ``flowlm train | distill | sample``: run options and error handling."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import Any

DEFAULT_PRESET = "shakespeare-char"

__all__ = ["add_data_arg", "add_run_args", "config_from_args", "user_errors", "HelpFormatter", "step_counts",
           "positive_int"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the examples' line breaks (each option's help states its default)."""


def add_data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="PATH", default=None,
                   help="a UTF-8 text file, a folder of .txt files, or a token-shard folder from `flowlm data prepare` "
                        "(default: the embedded Shakespeare plays)")


def add_run_args(p: argparse.ArgumentParser, *, preset: bool = True, out_dir: str | None = None) -> None:
    """``--preset --set --out-dir --resume/--no-resume --device --compile --seed`` (+ ``--data``)."""
    from flowlm.presets import PRESETS

    if preset:
        p.add_argument("--preset", default=None, choices=list(PRESETS),
                       help=f"named run configuration (see flowlm.presets; default: {DEFAULT_PRESET}, or the "
                            "run's own config when --out-dir holds a run)")
    p.add_argument("--set", dest="overrides", metavar="FIELD=VALUE", action="append", default=[],
                   help="override any RunConfig key, e.g. --set train.steps=500 --set model.width=256 "
                        "--set distill.projection=sparsemax (repeatable; see flowlm.presets)")
    p.add_argument("--out-dir", default=out_dir, metavar="DIR",
                   help="run directory: config.json, tokenizer.json, run.json, checkpoint, metrics.jsonl, samples.txt")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from the run directory's checkpoint (default); --no-resume refuses to touch "
                        "an existing run (pick a fresh --out-dir)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: the preset's)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the network (default: the preset's)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's)")
    add_data_arg(p)


def config_from_args(args: argparse.Namespace, base: Any = None, **flag_fields: Any) -> Any:
    """``base`` (or ``--preset``) + ``--set`` + the common flags (flags win over ``--set``); ``flag_fields``
    are dotted (or legacy flat) keys, None = not given."""
    from flowlm.presets import apply_overrides, preset

    cfg = base if base is not None else preset(getattr(args, "preset", None) or DEFAULT_PRESET)
    cfg = apply_overrides(cfg, args.overrides)
    changes = {"device": getattr(args, "device", None), "compile": getattr(args, "compile", None),
               "seed": getattr(args, "seed", None), **flag_fields}
    changes = {k: v for k, v in changes.items() if v is not None}
    return cfg.updated(changes) if changes else cfg


def _user_error_types() -> tuple[type[BaseException], ...]:
    from flowlm.data import CorpusError, PackingError, TokenizerError
    from flowlm._io import DeviceError
    from flowlm.pipeline import RunError
    from flowlm.presets import ConfigError

    types: list[type[BaseException]] = [CorpusError, PackingError, TokenizerError, ConfigError, DeviceError, RunError,
                                        FileNotFoundError, IsADirectoryError, PermissionError]
    from flowlm.training import CheckpointMismatchError, NonFiniteLossError

    types += [CheckpointMismatchError, NonFiniteLossError]  # the latter: e.g. a learning rate set too high
    from flowlm.hub import ReferenceCheckpointError

    types.append(ReferenceCheckpointError)  # not an authors' checkpoint, or an incomplete one
    return tuple(types)


def _one_line(message: str) -> str:
    """Join a multi-line message: list items after a ``:`` line are separated by ``;``."""
    out = ""
    for line in (ln.strip() for ln in message.splitlines()):
        if not line:
            continue
        out += line if not out else (" " if out.endswith(":") else "; ") + line
    return out


def user_errors(command: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Turn bad-input exceptions into ``flowlm COMMAND: error: <one line>`` on stderr and exit code 2."""

    def wrap(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(fn)
        def run(args: argparse.Namespace) -> int:
            try:
                return fn(args)
            except _user_error_types() as e:
                msg = _one_line(str(e)) if not isinstance(e, FileNotFoundError) or not e.filename \
                    else f"{e.strerror}: {e.filename}"
                print(f"flowlm {command}: error: {msg}", file=sys.stderr)
                return 2

        return run

    return wrap


def positive_int(text: str) -> int:
    """An integer >= 1 (an argparse ``type`` for step counts, sample counts, lengths and batch sizes).

    ``--steps 0`` or ``--steps -3`` is refused by argparse (exit code 2, the option named) instead of
    silently falling back to a default.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def step_counts(text: str) -> tuple[int, ...]:
    """Parse ``"1,2,4,8"`` (or space-separated) into step counts, each >= 1 (an argparse ``type``)."""
    try:
        steps = tuple(int(s) for s in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected step counts like '1,2,4,8', got {text!r}") from None
    if not steps or min(steps) < 1:
        raise argparse.ArgumentTypeError(f"step counts must be integers >= 1, got {text!r}")
    return steps

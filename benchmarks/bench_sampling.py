"""Sampling speed: one-step FMLM vs the FLM step count that reaches the same Gen PPL.

Measures, in one run on one machine and one backbone, the latency (batch 1) and throughput
(batch ``--batch``) of FMLM at 1/2/4/8 flow-map steps and FLM at 1..128 Euler steps, the Gen PPL
of each setting, and the speed-up of one-step FMLM over the fewest FLM steps matching its Gen PPL
(see ``flowlm bench --help``). Writes ``benchmarks/results/sampling.json`` and ``sampling.md``.

    python benchmarks/bench_sampling.py                         # runs/quickstart (after `flowlm quickstart`)
    python benchmarks/bench_sampling.py --run-dir runs/quickstart-tiny
    python benchmarks/bench_sampling.py --preset tiny           # trains a tiny pair first (seconds)

Same as ``flowlm bench``; the defaults here write next to this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from flowlm.cli.main import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--out" not in argv:
        argv += ["--out", str(Path(__file__).resolve().parent / "results" / "sampling")]
    sys.exit(main(["bench", *argv]))

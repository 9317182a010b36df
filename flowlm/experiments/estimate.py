"""An up-front run-time estimate of a suite: each stage's optimizer step and each model's sampling call,
timed on this machine on random tokens (eager, one warm-up call), times the work still to do.

``estimate = Σ_unfinished stages steps × step_seconds + Σ_missing evaluations (NFE-weighted sampling
calls + SCORING_SECONDS)``. It leaves out periodic validation during training, data preparation and
compilation, so expect the real run to take somewhat longer; stages and evaluations already finished in
``out`` count zero (what a resumed run will skip).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from flowlm.experiments.suites import Stage, Suite

__all__ = ["SuiteEstimate", "estimate_suite", "SCORING_SECONDS"]

#: assumed seconds to score one evaluation's samples with the Gen PPL evaluator (SmolLM2-135M, CPU)
SCORING_SECONDS = 5.0


@dataclass
class SuiteEstimate:
    """Seconds of training and of evaluation still to do, and the probed seconds per step of each stage."""

    train_seconds: float
    eval_seconds: float
    stages_left: int
    evals_left: int
    step_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return self.train_seconds + self.eval_seconds

    def describe(self) -> str:
        def m(s: float) -> str:
            return f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"

        return (f"estimated run time ≈ {m(self.total_seconds)}: training {m(self.train_seconds)} "
                f"({self.stages_left} stages left), evaluation {m(self.eval_seconds)} ({self.evals_left} evaluations "
                "left); from one timed step of each stage on this machine, without periodic validation")


def _timed(fn: Any, repeats: int = 3) -> float:
    """The fastest of ``repeats`` calls after one warm-up (allocation, kernel selection): other work on the
    machine only ever slows a call down."""
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _probe_stage(stage: Stage, cfg: Any, vocab: int, device: Any) -> tuple[float, float]:
    """(seconds per optimizer step, seconds per sampling call at ``eval.batch_size``) of ``stage``."""
    import torch

    from flowlm.pipeline import _objective, build_distiller, build_model
    from flowlm.training import DistillationObjective

    L = cfg.data.seq_len
    g = torch.Generator().manual_seed(0)
    if stage.kind == "distill":
        teacher = build_model(cfg, vocab, "flm").to(device).eval()
        model = build_model(cfg, vocab, "fmlm").to(device)
        objective = DistillationObjective(build_distiller(cfg, model.flow, teacher.denoiser))
        B = cfg.distill.batch_size
    else:
        model = build_model(cfg, vocab).to(device)
        objective = _objective(cfg.model.kind)
        B = cfg.train.batch_size
    tokens = torch.randint(vocab, (B, L), generator=g).to(device)

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        objective(model, tokens)[0].backward()

    model.train()
    step = _timed(train_step)
    model.eval()
    with torch.no_grad():
        if model.kind == "ar":
            call = _timed(lambda: model.sample(cfg.eval.batch_size, L), repeats=1) / L
        elif model.kind == "mdlm":
            call = _timed(lambda: model.sample(cfg.eval.batch_size, L, steps=1))
        else:
            call = _timed(lambda: model.sample(cfg.eval.batch_size, L, 1))
    return step, call


def _stage_done(root: Path, stage: Stage, scfg: Any) -> bool:
    path = root / "stage.json"
    if not path.is_file():
        return False
    entry = json.loads(path.read_text(encoding="utf-8")).get(stage.name)
    return bool(entry) and entry.get("key", {}).get("config") == scfg.to_dict() and \
        (root / stage.name / "checkpoint.safetensors").is_file()


def estimate_suite(suite: Suite, cfg: Any, seeds: Sequence[int], out: str | Path, n_samples: int,
                   device: Any = "cpu") -> SuiteEstimate:
    """The :class:`SuiteEstimate` of running ``suite`` for ``seeds`` into ``out`` (finished work excluded)."""
    vocab = int(getattr(cfg.data, "vocab_size", 0) or 256)
    out = Path(out)
    probes: dict[str, tuple[float, float]] = {}
    train_s = eval_s = 0.0
    stages_left = evals_left = 0
    for seed in seeds:
        root = out / f"seed{seed}"
        for stage in suite.stages:
            scfg = cfg.updated({**stage.changes, "seed": seed})
            if _stage_done(root, stage, scfg):
                continue
            if stage.name not in probes:
                probes[stage.name] = _probe_stage(stage, scfg, vocab, device)
            steps = scfg.distill.steps if stage.kind == "distill" else scfg.train.steps
            train_s += steps * probes[stage.name][0]
            stages_left += 1
        for sweep in suite.sweeps:
            stage = suite.stage(sweep.stage)
            for steps in sweep.steps:
                for temp in sweep.temperatures:
                    tag = f"{sweep.stage}-{steps if steps is not None else 'L'}-T{temp:g}"
                    if (root / "records" / f"{tag}.json").is_file():
                        continue
                    if stage.name not in probes:
                        probes[stage.name] = _probe_stage(stage, cfg.updated({**stage.changes, "seed": seed}), vocab,
                                                          device)
                    nfe = cfg.data.seq_len if steps is None else steps
                    if stage.changes.get("model.kind") == "mdlm":
                        nfe = min(nfe, cfg.data.seq_len)  # cached: at most one call per unmasked position
                    batches = math.ceil(n_samples / cfg.eval.batch_size)
                    eval_s += batches * nfe * probes[stage.name][1] + SCORING_SECONDS
                    evals_left += 1
    return SuiteEstimate(train_s, eval_s, stages_left, evals_left, {k: v[0] for k, v in probes.items()})

"""The quickstart pipeline: train an FLM, distill an FMLM, sample both over a step sweep, evaluate, report.

``flowlm quickstart`` (the README's first command) runs :func:`run_quickstart`::

    runs/quickstart/
      flm/            the FLM run (flowlm.pipeline.train_flm)
      fmlm/           the semigroup-distilled FMLM run (flowlm.pipeline.distill_fmlm)
      records/        one JSON record per evaluation (flowlm.evaluation.records): data, FMLM-k, FLM-k
      samples/        the decoded samples of every evaluation
      stages.json     finished training stages (config + checkpoint hash)
      report/         results.md (table), results.json, genppl.png, samples.md

Every stage is resumable: re-running skips a training stage whose checkpoint still has the
recorded hash and config (an interrupted one resumes from its last checkpoint), and skips every
evaluation whose record matches the checkpoint hash, seed, sample count and evaluator.

The same building blocks serve ``flowlm eval`` (:func:`evaluate_checkpoint`,
:func:`reference_record`) and ``flowlm bench`` (:func:`matching_flm_steps`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowlm._io import atomic_write_json, resolve_device
from flowlm.evaluation import (
    DEFAULT_EVALUATOR,
    EvalRecord,
    Evaluator,
    check_evaluator,
    file_hash,
    load_evaluator,
    load_record,
)
from flowlm.evaluation.evaluators import evaluator_record_name

__all__ = [
    "QuickstartPlan",
    "QUICKSTART_PRESETS",
    "quickstart_plan",
    "run_quickstart",
    "evaluate_checkpoint",
    "reference_record",
    "matching_flm_steps",
    "format_table",
    "write_report",
]

# Quickstart presets: which run preset to train, and the evaluation sweep.
QUICKSTART_PRESETS: dict[str, dict[str, Any]] = {
    "shakespeare-bpe": dict(preset="shakespeare-bpe", n_samples=32),
    "shakespeare-char": dict(preset="shakespeare-char", n_samples=32),
    "tiny": dict(preset="tiny", n_samples=4),
}
DEFAULT_QUICKSTART_PRESET = "shakespeare-bpe"


@dataclass
class QuickstartPlan:
    """What the quickstart trains and evaluates.

    Attributes:
        preset: the :mod:`flowlm.presets` run preset to train (``overrides`` are applied on top).
        out_dir: the quickstart folder (see the module docstring).
        data: a text file or folder (``None``: the embedded Shakespeare plays).
        fmlm_steps / flm_steps: the step sweeps of the FMLM (flow-map steps) and the FLM (Euler steps).
        n_samples: samples per evaluation (drawn in one batch).
        seed: sampling seed (the same noise for every method and step count).
        evaluator: the Gen PPL evaluator LM (:func:`flowlm.evaluation.load_evaluator`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ... (``None``: the preset's).
    """

    preset: str = "shakespeare-bpe"
    out_dir: str | os.PathLike = "runs/quickstart"
    data: str | os.PathLike | None = None
    fmlm_steps: Sequence[int] = (1, 2, 4, 8)
    flm_steps: Sequence[int] = (8, 16, 32, 64, 128)
    n_samples: int = 32
    seed: int = 0
    evaluator: str = DEFAULT_EVALUATOR
    device: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir).expanduser()
        self.fmlm_steps = tuple(int(s) for s in self.fmlm_steps)
        self.flm_steps = tuple(int(s) for s in self.flm_steps)
        problems = []
        if not self.fmlm_steps or not self.flm_steps:
            problems.append("both step sweeps need at least one step count")
        if any(s < 1 for s in self.fmlm_steps + self.flm_steps):
            problems.append(f"step counts must be >= 1 (got FMLM {self.fmlm_steps}, FLM {self.flm_steps})")
        if self.n_samples < 2:
            problems.append(f"n_samples must be >= 2 (got {self.n_samples})")
        if problems:
            raise ValueError("invalid quickstart plan: " + "; ".join(problems))

    def run_config(self):
        from flowlm.presets import preset

        changes = dict(self.overrides)
        if self.device is not None:
            changes["device"] = self.device
        return preset(self.preset, **changes)


def quickstart_plan(name: str = DEFAULT_QUICKSTART_PRESET, **changes: Any) -> QuickstartPlan:
    """The named quickstart plan (``tiny``, ``shakespeare-char``, ``shakespeare-bpe``) with ``changes``."""
    if name not in QUICKSTART_PRESETS:
        raise ValueError(f"unknown quickstart preset {name!r}; choose one of {', '.join(QUICKSTART_PRESETS)}")
    return QuickstartPlan(**{**QUICKSTART_PRESETS[name], **{k: v for k, v in changes.items() if v is not None}})


# ------------------------------------------------------------------------------------ evaluation
def _record_matches(path: Path, ckpt_hash: str | None, n_samples: int, seed: int, evaluator: str) -> bool:
    if not path.is_file():
        return False
    try:
        rec = load_record(path)
    except (ValueError, TypeError):
        return False
    requested = rec.sampler.get("requested", rec.n_samples) if isinstance(rec.sampler, dict) else rec.n_samples
    return (rec.checkpoint_hash, requested, rec.seed, rec.evaluator) == (ckpt_hash, n_samples, seed, evaluator)


# evaluation and report rendering live in flowlm.evaluation (shared with eval, bench and experiment)
from flowlm.evaluation.report import (  # noqa: E402
    format_table,
    matching_flm_steps,
    order_records as _order,
    record_name as _record_name,
    samples_name as _samples_name,
    write_report,
)
from flowlm.evaluation.sampling import evaluate_checkpoint, reference_record  # noqa: E402


# ------------------------------------------------------------------------------------ pipeline
def _stage_done(stages: dict, name: str, cfg_dict: dict) -> Path | None:
    entry = stages.get(name)
    if not entry or entry.get("config") != cfg_dict:
        return None
    ckpt = Path(entry["checkpoint"])
    if not ckpt.is_file() or file_hash(ckpt) != entry.get("hash"):
        return None
    return ckpt


def _save_stages(path: Path, stages: dict) -> None:
    atomic_write_json(path, stages, indent=2)


def run_quickstart(
    plan: QuickstartPlan, *, progress: bool = True, log: Callable[[str], None] | None = None
) -> list[EvalRecord]:
    """Run (or resume) the whole quickstart; returns the records (data row first) after writing the report."""
    from flowlm.pipeline import distill_fmlm, load_model, train_flm
    from flowlm.training.progress import progress_bar

    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    cfg = plan.run_config()
    cfg_dict = cfg.to_dict()
    stages_path = out / "stages.json"
    stages = json.loads(stages_path.read_text()) if stages_path.is_file() else {}
    jobs = [("FMLM", s) for s in plan.fmlm_steps] + [("FLM", s) for s in plan.flm_steps]
    bar = progress_bar(total=3 + len(jobs) + 1, desc="quickstart", unit="stage", disable=not progress, file=sys.stderr)
    say = log or (lambda msg: bar.write(msg, file=sys.stderr))
    records: list[EvalRecord] = []
    try:
        # 0. a bad evaluator name fails now, not after training; a Hub name is loaded now to find out
        device = resolve_device(cfg.device)
        evaluator: Evaluator | None = None

        def get_evaluator() -> Evaluator:
            nonlocal evaluator
            if evaluator is None:
                say(f"loading the evaluator {plan.evaluator}")
                evaluator = load_evaluator(plan.evaluator, device=device)
            return evaluator

        if not check_evaluator(plan.evaluator):
            get_evaluator()
        evaluator_name = evaluator_record_name(plan.evaluator)
        # 1. FLM (keyed by the fields that shape the FLM: distillation/sampling settings do not retrain)
        flm_dict = {k: v for k, v in cfg_dict.items() if k not in ("distill", "sample", "eval")}
        flm_ckpt = _stage_done(stages, "train", flm_dict)
        if flm_ckpt is None:
            say(f"[1/4] training the FLM ({cfg.preset}: {cfg.train.steps} steps) in {out / 'flm'}")
            flm_ckpt = train_flm(cfg, plan.data, out / "flm", resume=True)
            stages["train"] = {"checkpoint": str(flm_ckpt), "hash": file_hash(flm_ckpt), "config": flm_dict}
            _save_stages(stages_path, stages)
        else:
            say(f"[1/4] FLM already trained: {flm_ckpt}")
        bar.update()
        # 2. FMLM
        fmlm_ckpt = _stage_done(stages, "distill", cfg_dict)
        old_teacher = stages.get("distill", {}).get("teacher_hash")
        if old_teacher is not None and old_teacher != stages["train"]["hash"] and (out / "fmlm").exists():
            # the FLM changed (e.g. trained longer): distill afresh, keep the old student aside
            stale = out / f"fmlm.stale-{old_teacher}"
            say(f"[2/4] the FLM changed since the last distillation; moving {out / 'fmlm'} to {stale}")
            (out / "fmlm").rename(stale)
            fmlm_ckpt = None
        if fmlm_ckpt is None or old_teacher != stages["train"]["hash"]:
            say(f"[2/4] distilling the FMLM ({cfg.distill.method}: {cfg.distill.steps} steps) in {out / 'fmlm'}")
            fmlm_ckpt = distill_fmlm(cfg, flm_ckpt, cfg.distill.method, out / "fmlm", resume=True, data=plan.data)
            stages["distill"] = {"checkpoint": str(fmlm_ckpt), "hash": file_hash(fmlm_ckpt), "config": cfg_dict,
                                 "teacher_hash": stages["train"]["hash"]}
            _save_stages(stages_path, stages)
        else:
            say(f"[2/4] FMLM already distilled: {fmlm_ckpt}")
        bar.update()

        # 3. evaluation: the data reference row, then every (method, steps)
        say("[3/4] sampling and evaluating")
        rec_dir, smp_dir = out / "records", out / "samples"
        ref_path = rec_dir / "data.json"
        # the reference depends on the tokenizer, i.e. on the FLM run: it is keyed by the FLM's hash
        if _record_matches(ref_path, stages["train"]["hash"], plan.n_samples, cfg.seed, evaluator_name):
            ref = load_record(ref_path)
        else:
            _, tok, _ = load_model(flm_ckpt, device="cpu")
            ref = reference_record(cfg, tok, get_evaluator(), n_samples=plan.n_samples, data=plan.data,
                                   samples_path=smp_dir / "data.txt")
            ref.checkpoint, ref.checkpoint_hash = str(flm_ckpt), stages["train"]["hash"]
            ref.save(ref_path)
        records.append(ref)
        bar.update()
        ref_entropy = ref.metrics["entropy"]

        loaded: dict[str, Any] = {}
        hashes = {"FLM": stages["train"]["hash"], "FMLM": stages["distill"]["hash"]}
        ckpts = {"FLM": flm_ckpt, "FMLM": fmlm_ckpt}
        for method, steps in jobs:
            path = rec_dir / _record_name(method, steps)
            bar.set_postfix_str(f"{method} {steps} steps")
            if _record_matches(path, hashes[method], plan.n_samples, plan.seed, evaluator_name):
                records.append(load_record(path))
            else:
                first = method not in loaded
                if first:
                    loaded[method] = load_model(ckpts[method], device=device)
                rec = evaluate_checkpoint(
                    ckpts[method], steps, get_evaluator(), n_samples=plan.n_samples, seed=plan.seed,
                    gamma=cfg.sample.gamma, reference_entropy=ref_entropy, model=loaded[method],
                    samples_path=smp_dir / _samples_name(method, steps), warmup=first,
                )
                rec.save(path)
                records.append(rec)
                say(f"  {method:4s} {steps:4d} steps: Gen PPL {rec.metrics['gen_ppl']:.1f}, "
                    f"entropy {rec.metrics['entropy']:.2f}")
            bar.update()

        # 4. report
        bar.set_postfix_str("report")
        say(f"[4/4] writing the report to {out / 'report'}")
        write_report(records, out / "report", smp_dir, title=f"flowlm quickstart ({plan.preset})")
        bar.update()
    finally:
        bar.close()
    return _order(records)

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
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flowlm._io import atomic_write_json, atomic_write_text, device_name, resolve_device
from flowlm._plotting import MissingPlotDependencyError, pyplot
from flowlm.evaluation import (
    DEFAULT_EVALUATOR,
    MIN_ENTROPY_RATIO,
    EvalRecord,
    Evaluator,
    check_evaluator,
    evaluate_samples,
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


def evaluate_checkpoint(
    ckpt: str | os.PathLike,
    steps: int,
    evaluator: Evaluator,
    *,
    n_samples: int,
    seed: int = 0,
    gamma: float = 0.0,
    reference_entropy: float | None = None,
    model: Any = None,
    device: str | torch.device | None = None,
    samples_path: str | os.PathLike | None = None,
    warmup: bool = True,
) -> EvalRecord:
    """Sample ``n_samples`` sequences at ``steps`` steps from a checkpoint, score them, return the record.

    ``model`` = ``(model, tokenizer, cfg)`` already loaded from ``ckpt`` (saves reloading in a
    sweep). The wall time is the sampling time of the whole batch (scoring excluded), measured
    after one warm-up network call when ``warmup`` (first calls pay for allocation and kernel
    selection). Decoded samples are written to ``samples_path`` when given.
    """
    from flowlm.pipeline import generate, load_model

    if model is None:
        model = load_model(ckpt, device=device if device is not None else "cpu")
    net, tok, cfg = model
    method = net.kind.upper()
    if warmup:
        generate(net, tok, n_samples, 1, seed + 1)
    samples = generate(net, tok, n_samples, steps, seed, gamma=gamma)
    mask = torch.ones_like(samples.tokens, dtype=torch.bool)
    metrics = evaluate_samples(list(samples), samples.tokens, evaluator, mask=mask, reference_entropy=reference_entropy)
    if samples_path is not None:
        _write_samples(Path(samples_path), list(samples), f"{method}, {steps} steps, NFE {samples.nfe}")
    dev = next(net.parameters()).device
    sampler = {"name": "euler" if method == "FLM" else "flow-map", "grid": "uniform-tau"}
    if method == "FMLM":
        sampler["gamma"] = gamma
    return EvalRecord(
        method=method,
        metrics=metrics,
        evaluator=evaluator.name,
        n_samples=n_samples,
        steps=int(steps),
        nfe=int(samples.nfe),
        seed=seed,
        sampler=sampler,
        checkpoint=str(ckpt),
        checkpoint_hash=file_hash(_checkpoint_file(ckpt)),
        config=cfg,
        wall_time_s=float(samples.seconds),
        device=device_name(dev),
    )


def _checkpoint_file(ckpt: str | os.PathLike) -> Path:
    from flowlm.pipeline import find_checkpoint

    return find_checkpoint(ckpt)


def reference_record(
    cfg: Any,
    tokenizer: Any,
    evaluator: Evaluator,
    *,
    n_samples: int,
    data: str | os.PathLike | None = None,
    samples_path: str | os.PathLike | None = None,
) -> EvalRecord:
    """The metrics of held-out real text: the first ``n_samples`` validation blocks of ``data``.

    Blocks are packed exactly as for training (same tokenizer, ``cfg.seq_len``, split and seed),
    so their unigram entropy is directly comparable with the samples'.
    """
    from flowlm.data import build_datasets

    splits = build_datasets(tokenizer, cfg.seq_len, 1, path=data, seed=cfg.seed,
                            val_fraction=cfg.val_fraction, split_by=cfg.split_by)
    split = "val" if splits.val is not None else "train"
    blocks = next(iter((splits.val or splits.train).iter_blocks(n_samples)))  # [n, L] (also from shards)
    texts = [tokenizer.decode(row.tolist()) for row in blocks]
    metrics = evaluate_samples(texts, blocks, evaluator)
    metrics["reference_entropy"] = metrics["entropy"]
    metrics["flags"], metrics["degenerate"] = [], False
    if samples_path is not None:
        _write_samples(Path(samples_path), texts, f"held-out {split} blocks")
    return EvalRecord(
        method="data",
        metrics=metrics,
        evaluator=evaluator.name,
        n_samples=int(blocks.shape[0]),
        sampler={"name": f"held-out {split} split", "requested": n_samples},
        config=cfg,
        seed=cfg.seed,
    )


def _write_samples(path: Path, texts: Sequence[str], title: str) -> None:
    body = "".join(f"\n=== sample {i} ===\n{t}\n" for i, t in enumerate(texts))
    atomic_write_text(path, f"# {title}\n{body}")


# ------------------------------------------------------------------------------------ report
def matching_flm_steps(
    records: Sequence[EvalRecord], fmlm_steps: int = 1, min_entropy_ratio: float = MIN_ENTROPY_RATIO
) -> dict[str, Any] | None:
    """The fewest FLM steps whose Gen PPL is at most the ``fmlm_steps``-step FMLM's, among FLM
    rows whose samples are not degenerate.

    Gen PPL rewards repetition: a one-step FLM that writes the same token everywhere can score a
    lower Gen PPL than real text. An FLM row whose unigram entropy (``metrics["entropy"]``, when
    recorded) is below ``min_entropy_ratio`` × the FMLM row's is therefore never a match.

    Returns ``{"fmlm": rec, "flm": rec, "reached": bool, "bound": str}`` or ``None`` without both
    methods. ``bound`` says how to read a speed-up computed against ``flm``:

    * ``"within-sweep"``: FLM at the previous sweep point is worse, at ``flm`` at least as good;
    * ``"upper"``: already the smallest FLM step count in the sweep is at least as good, so fewer
      FLM steps might do (the speed-up is at most the one computed);
    * ``"lower"``: no FLM step count in the sweep reaches it
      (``reached`` is False); ``flm`` is then the largest swept step count, and the speed-up
      against it is at least the one computed (assuming more steps never hurt).
    """
    fm = [r for r in records if r.method == "FMLM" and r.steps == fmlm_steps]
    flm = sorted((r for r in records if r.method == "FLM"), key=lambda r: r.steps)
    if not fm or not flm:
        return None
    target = fm[0].metrics["gen_ppl"]
    min_entropy = min_entropy_ratio * fm[0].metrics.get("entropy", 0.0)
    for i, r in enumerate(flm):
        if r.metrics["gen_ppl"] <= target and r.metrics.get("entropy", math.inf) >= min_entropy:
            bound = "upper" if i == 0 and r.steps > fmlm_steps else "within-sweep"
            return {"fmlm": fm[0], "flm": r, "reached": True, "bound": bound}
    return {"fmlm": fm[0], "flm": flm[-1], "reached": False, "bound": "lower"}


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _order(records: Sequence[EvalRecord]) -> list[EvalRecord]:
    rank = {"data": 0, "FMLM": 1, "FLM": 2}
    return sorted(records, key=lambda r: (rank.get(r.method, 3), r.method, r.steps or 0))


def format_table(records: Sequence[EvalRecord]) -> str:
    """The markdown results table: method, steps, NFE, Gen PPL, entropy, wall time per sample, flags."""
    lines = [
        "| method | steps | NFE | Gen PPL | entropy (nats) | wall time / sample (ms) | flags |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in _order(records):
        m = r.metrics
        name = "data (held-out)" if r.method == "data" else r.method
        wall = r.wall_time_per_sample_s
        lines.append(
            f"| {name} | {r.steps if r.steps is not None else '–'} | {r.nfe if r.nfe is not None else '–'} | "
            f"{_fmt(m.get('gen_ppl'))} | {_fmt(m.get('entropy'), 2)} | "
            f"{_fmt(wall * 1e3 if wall is not None else None, 2)} | {', '.join(m.get('flags') or []) or '–'} |"
        )
    return "\n".join(lines)


def _speedup_line(records: Sequence[EvalRecord]) -> str | None:
    match = matching_flm_steps(records)
    if match is None:
        return None
    fm, flm = match["fmlm"], match["flm"]
    ratio = flm.wall_time_s / fm.wall_time_s if fm.wall_time_s and flm.wall_time_s else float("nan")
    head = f"One-step FMLM: Gen PPL {_fmt(fm.metrics['gen_ppl'])}; "
    flm_txt = f"{flm.steps} steps (Gen PPL {_fmt(flm.metrics['gen_ppl'])})"
    if match["bound"] == "within-sweep":
        return head + f"the FLM needs {flm_txt} to reach it: {ratio:.1f}× the one-step wall time."
    if match["bound"] == "upper":
        return head + (f"the FLM already reaches it at its smallest swept step count, {flm_txt}: "
                       f"at most {ratio:.1f}× the one-step wall time.")
    return head + (f"no FLM step count in the sweep reaches it (largest: {flm_txt}); "
                   f"speed-up at least {ratio:.1f}× in wall time.")


def _plot(records: Sequence[EvalRecord], path: Path) -> None:
    plt = pyplot("the quickstart Gen PPL plot")
    from matplotlib.ticker import ScalarFormatter

    fig, (ax_steps, ax_time) = plt.subplots(1, 2, figsize=(10, 4))
    for method, marker in (("FLM", "o"), ("FMLM", "s")):
        rows = sorted((r for r in records if r.method == method), key=lambda r: r.steps)
        if not rows:
            continue
        ppl = [r.metrics["gen_ppl"] for r in rows]
        ax_steps.plot([r.steps for r in rows], ppl, marker=marker, label=method)
        ax_time.plot([r.wall_time_per_sample_s * 1e3 for r in rows], ppl, marker=marker, label=method)
        for r, y in zip(rows, ppl):
            ax_time.annotate(str(r.steps), (r.wall_time_per_sample_s * 1e3, y), fontsize=7,
                             textcoords="offset points", xytext=(3, 3))
    for r in records:
        if r.method == "data":
            for ax in (ax_steps, ax_time):
                ax.axhline(r.metrics["gen_ppl"], color="gray", linestyle="--", label="held-out data")
    ax_steps.set(xscale="log", yscale="log", xlabel="sampling steps", ylabel="Gen PPL", title="Gen PPL vs steps")
    ax_time.set(xscale="log", yscale="log", xlabel="wall time per sample (ms)", ylabel="Gen PPL",
                title="Gen PPL vs wall time")
    ax_steps.set_xticks(sorted({r.steps for r in records if r.steps}), labels=None)
    ax_steps.get_xaxis().set_major_formatter(ScalarFormatter())
    ax_steps.minorticks_off()
    for ax in (ax_steps, ax_time):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(
    records: Sequence[EvalRecord], report_dir: str | os.PathLike, samples_dir: str | os.PathLike | None = None,
    title: str = "flowlm quickstart", n_show: int = 3,
) -> Path:
    """Write ``results.md`` (table + speed-up line), ``results.json``, ``genppl.png`` and ``samples.md``.

    Returns the path of ``results.md``.
    """
    report = Path(report_dir)
    report.mkdir(parents=True, exist_ok=True)
    ordered = _order(records)
    table = format_table(ordered)
    first = ordered[0]
    notes = [
        f"Evaluator: {first.evaluator}; {max(r.n_samples for r in ordered)} samples per row; "
        f"wall time = batched sampling time / samples on {next((r.device for r in ordered if r.device), 'n/a')}.",
        "Entropy: mean per-sample unigram entropy of the model's tokens; flags: low_entropy (< 0.8 × data), "
        "high_gen_ppl (> 500).",
    ]
    speed = _speedup_line(ordered)
    if speed:
        notes.append(speed)
    try:
        _plot(ordered, report / "genppl.png")
        figure = "![Gen PPL](genppl.png)"
    except MissingPlotDependencyError as e:  # the numbers matter more than the figure
        figure = f"(no figure: {e})"
    md = f"# {title}\n\n{table}\n\n" + "\n\n".join(notes) + f"\n\n{figure}\n"
    atomic_write_text(report / "results.md", md)
    atomic_write_json(report / "results.json", [r.to_dict() for r in ordered], indent=2)
    if samples_dir is not None:
        parts = [f"# Samples ({n_show} per row)\n"]
        for r in ordered:
            path = Path(samples_dir) / _samples_name(r.method, r.steps)
            if not path.is_file():
                continue
            chunks = path.read_text(encoding="utf-8").split("\n=== sample ")[1 : n_show + 1]
            label = "held-out data" if r.method == "data" else f"{r.method}, {r.steps} steps"
            parts.append(f"\n## {label}\n")
            for c in chunks:
                idx, _, text = c.partition(" ===\n")
                parts.append(f"\n**sample {idx}**\n\n```text\n{text.rstrip()}\n```\n")
        atomic_write_text(report / "samples.md", "".join(parts))
    return report / "results.md"


def _samples_name(method: str, steps: int | None) -> str:
    return "data.txt" if method == "data" else f"{method.lower()}-{steps:03d}.txt"


def _record_name(method: str, steps: int | None) -> str:
    return "data.json" if method == "data" else f"{method.lower()}-{steps:03d}.json"


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


_NOT_FLM = ("sample_steps", "n_samples", "gamma")


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
        flm_dict = {k: v for k, v in cfg_dict.items() if not k.startswith("distill_") and k not in _NOT_FLM}
        flm_ckpt = _stage_done(stages, "train", flm_dict)
        if flm_ckpt is None:
            say(f"[1/4] training the FLM ({cfg.preset}: {cfg.steps} steps) in {out / 'flm'}")
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
            say(f"[2/4] distilling the FMLM ({cfg.distill_method}: {cfg.distill_steps} steps) in {out / 'fmlm'}")
            fmlm_ckpt = distill_fmlm(cfg, flm_ckpt, cfg.distill_method, out / "fmlm", resume=True, data=plan.data)
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
                    gamma=cfg.gamma, reference_entropy=ref_entropy, model=loaded[method],
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

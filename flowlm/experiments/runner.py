"""Run a suite of :mod:`flowlm.experiments.suites` and report it: ``flowlm experiment``.

Layout of ``out``::

    seed0/<stage>/      one run folder per stage (flowlm.pipeline: train_model / distill_fmlm)
    seed0/stage.json    finished stages: config, checkpoint hash, training wall time
    seed0/records/      one EvalRecord per (stage, steps, temperature)
    report/             results.md (one table per suite run into this folder), results.json,
                        genppl_entropy.png (every suite's curves), genppl_entropy_<suite>.png,
                        samples.md, suites/<suite>.json

Every stage and evaluation is resumable: a finished stage (same config, same checkpoint hash) is
skipped, an interrupted one resumes from its last checkpoint, and an evaluation whose record
matches the checkpoint hash, sample count and evaluator is read back instead of recomputed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowlm._io import atomic_write_json, atomic_write_text, resolve_device
from flowlm.experiments.suites import SUITES, ExperimentError, Stage, build_suite

SUITE_ORDER = tuple(SUITES)

__all__ = ["StageResult", "ResultRow", "SummaryRow", "SuiteResult", "run_suite", "write_suite_report", "load_suite_result",
           "summarize"]


@dataclass
class StageResult:
    """A finished stage: its checkpoint, training wall time, seconds per step and final validation loss."""

    name: str
    kind: str  # the model kind: flm | fmlm | ar | mdlm
    seed: int
    checkpoint: str
    checkpoint_hash: str
    train_seconds: float
    steps: int
    val_loss: float | None = None
    residuals: dict[str, float] = field(default_factory=dict)

    @property
    def step_seconds(self) -> float:
        return self.train_seconds / max(self.steps, 1)


@dataclass
class ResultRow:
    """One evaluation: a stage at one step count (and temperature) with one seed."""

    variant: str
    method: str  # FLM | FMLM | AR | MDLM | data
    seed: int
    steps: int | None
    nfe: int | None
    temperature: float
    gen_ppl: float
    entropy: float
    wall_ms_per_sample: float | None
    val_loss: float | None = None
    train_seconds: float | None = None
    step_ms: float | None = None
    guidance: float | None = None  # autoguidance weight η (None: the plain model)


@dataclass
class SummaryRow:
    """A :class:`ResultRow` over seeds: mean and range (min, max) of Gen PPL and entropy."""

    variant: str
    method: str
    steps: int | None
    temperature: float
    n_seeds: int
    nfe: int | None
    gen_ppl: float
    gen_ppl_range: tuple[float, float]
    entropy: float
    entropy_range: tuple[float, float]
    wall_ms_per_sample: float | None
    val_loss: float | None
    train_seconds: float | None
    step_ms: float | None
    guidance: float | None = None


@dataclass
class SuiteResult:
    suite: str
    preset: str
    seeds: tuple[int, ...]
    evaluator: str
    n_samples: int
    stages: list[StageResult]
    rows: list[ResultRow]
    summary: list[SummaryRow]
    unavailable: tuple[str, ...] = ()
    report: str | None = None


def _mean(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(vals) / len(vals) if vals else None


def summarize(rows: Sequence[ResultRow]) -> list[SummaryRow]:
    """Group ``rows`` by (variant, method, steps, temperature, guidance) and average over seeds."""
    groups: dict[tuple, list[ResultRow]] = {}
    for r in rows:
        groups.setdefault((r.variant, r.method, r.steps, r.temperature, r.guidance), []).append(r)
    out = []
    for (variant, method, steps, temp, eta), rs in groups.items():
        ppl = [r.gen_ppl for r in rs]
        ent = [r.entropy for r in rs]
        out.append(SummaryRow(
            variant=variant, method=method, steps=steps, temperature=temp, n_seeds=len(rs), nfe=rs[0].nfe,
            gen_ppl=_mean(ppl) or float("nan"), gen_ppl_range=(min(ppl), max(ppl)),
            entropy=_mean(ent) or float("nan"), entropy_range=(min(ent), max(ent)),
            wall_ms_per_sample=_mean([r.wall_ms_per_sample for r in rs]), val_loss=_mean([r.val_loss for r in rs]),
            train_seconds=_mean([r.train_seconds for r in rs]), step_ms=_mean([r.step_ms for r in rs]), guidance=eta,
        ))
    return out


# ------------------------------------------------------------------------------------ stages
def _final_val_loss(run_dir: Path) -> float | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    val = None
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "val_loss" in rec:
            val = rec["val_loss"]
    return val


def _stage_config(cfg: Any, stage: Stage, seed: int) -> Any:
    return cfg.updated({**stage.changes, "seed": seed})


def _run_stage(stage: Stage, cfg: Any, root: Path, data: Any, done: dict[str, Any],
               finished: dict[str, StageResult], say: Callable[[str], None]) -> StageResult:
    from flowlm.evaluation import file_hash
    from flowlm.pipeline import distill_fmlm, train_model

    key = {"config": cfg.to_dict(), "teacher": finished[stage.teacher].checkpoint_hash if stage.teacher else None}
    entry = done.get(stage.name)
    ckpt = root / stage.name / "checkpoint.safetensors"
    if entry and entry.get("key") == key and ckpt.is_file() and file_hash(ckpt) == entry.get("hash"):
        say(f"  {stage.name}: already trained ({ckpt})")
        return StageResult(**entry["result"])
    say(f"  {stage.name}: {'distilling' if stage.kind == 'distill' else 'training'} in {root / stage.name}")
    start = time.perf_counter()
    if stage.kind == "distill":
        ckpt = distill_fmlm(cfg, finished[stage.teacher].checkpoint, out_dir=root / stage.name, resume=True, data=data)
        steps, kind = cfg.distill.steps, "fmlm"
    else:
        ckpt = train_model(cfg, data, root / stage.name, resume=True)
        steps, kind = cfg.train.steps, cfg.model.kind
    result = StageResult(name=stage.name, kind=kind, seed=cfg.seed, checkpoint=str(ckpt),
                         checkpoint_hash=file_hash(ckpt), train_seconds=time.perf_counter() - start, steps=steps,
                         val_loss=_final_val_loss(root / stage.name))
    done[stage.name] = {"key": key, "hash": result.checkpoint_hash, "result": dataclasses.asdict(result)}
    atomic_write_json(root / "stage.json", done, indent=2)
    return result


def _residuals(stage: StageResult, cfg: Any, teacher_ckpt: str, data: Any) -> dict[str, float]:
    """The trained map's residual under each characterization (semigroup, Lagrangian, Eulerian) on
    one batch of validation blocks, seeded."""
    import torch

    from flowlm.flowmaps import DISTILLERS, residual_report
    from flowlm.pipeline import _data_for, build_distiller, load_model

    student, tok, scfg = load_model(stage.checkpoint)
    teacher, _, _ = load_model(teacher_ckpt)
    _, splits, _ = _data_for(scfg, data, tok, 16)
    blocks = next(iter((splits.val or splits.train).iter_blocks(16)))
    distillers = {m: build_distiller(scfg.updated({"distill.method": m, "distill.projection": "auto",
                                                   "distill.teacher": "flm"}), student.flow, teacher.denoiser)
                  for m in DISTILLERS}
    g = torch.Generator().manual_seed(cfg.seed)
    with torch.enable_grad():
        report = residual_report(student.delta, distillers, blocks, distillers["semigroup"].pairs,
                                 space=student.space, generator=g)
    return {k: float(v) for k, v in report.items()}


# ------------------------------------------------------------------------------------ running
def _record_ok(path: Path, ckpt_hash: str, n_samples: int, evaluator: str) -> bool:
    if not path.is_file():
        return False
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return (rec.get("checkpoint_hash"), rec.get("n_samples"), rec.get("evaluator")) == (ckpt_hash, n_samples, evaluator)


def run_suite(
    name: str,
    cfg: Any,
    *,
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    seeds: Sequence[int] = (0,),
    variants: list[str] | None = None,
    evaluator: Any = None,
    n_samples: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    estimate: bool = True,
) -> SuiteResult:
    """Run (or resume) suite ``name`` at run config ``cfg`` for each seed; write the report; return the results.

    ``evaluator``: an :class:`~flowlm.evaluation.Evaluator`, a name for
    :func:`~flowlm.evaluation.load_evaluator`, or None (the default, offline). ``n_samples``:
    samples per evaluation (default ``cfg.eval.n_samples``). ``estimate``: print an up-front run-time
    estimate (:func:`flowlm.experiments.estimate.estimate_suite`) before starting.
    """
    from flowlm.evaluation import DEFAULT_EVALUATOR, load_evaluator, load_record
    from flowlm.evaluation.sampling import evaluate_checkpoint, reference_record
    from flowlm.pipeline import load_model
    from flowlm.training.progress import progress_bar

    suite = build_suite(name, cfg, variants)
    seeds = tuple(int(s) for s in seeds) or (0,)
    if len(set(seeds)) != len(seeds):
        raise ExperimentError(f"--seeds must be distinct, got {list(seeds)}")
    n = int(n_samples or cfg.eval.n_samples)
    if n < 2:
        raise ExperimentError(f"need at least 2 samples per evaluation, got {n}")
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    n_evals = sum(len(w.points()) for w in suite.sweeps)
    train_steps = sum(cfg.updated(s.changes).distill.steps if s.kind == "distill" else cfg.updated(s.changes).train.steps
                      for s in suite.stages)
    bar = progress_bar(total=len(seeds) * (len(suite.stages) + n_evals + 1), desc=f"experiment {name}", unit="stage",
                       disable=not progress, file=sys.stderr)
    say = log or (lambda msg: bar.write(msg, file=sys.stderr))
    say(f"experiment {name} ({cfg.preset}): {len(suite.stages)} stages ({train_steps} optimizer steps) and "
        f"{n_evals} evaluations of {n} samples, per seed; seeds {list(seeds)}; in {out}")
    if estimate:
        from flowlm.experiments.estimate import estimate_suite

        say(estimate_suite(suite, cfg, seeds, out, n, device=resolve_device(cfg.device)).describe())
    if isinstance(evaluator, str) or evaluator is None:
        say(f"loading the evaluator {evaluator or DEFAULT_EVALUATOR}")
        evaluator = load_evaluator(evaluator or DEFAULT_EVALUATOR, device=resolve_device(cfg.device))
    stages: list[StageResult] = []
    rows: list[ResultRow] = []
    try:
        for seed in seeds:
            root = out / f"seed{seed}"
            root.mkdir(parents=True, exist_ok=True)
            done = json.loads((root / "stage.json").read_text()) if (root / "stage.json").is_file() else {}
            finished: dict[str, StageResult] = {}
            for stage in suite.stages:
                scfg = _stage_config(cfg, stage, seed)
                finished[stage.name] = _run_stage(stage, scfg, root, data, done, finished, say)
                if suite.residuals and stage.kind == "distill" and not finished[stage.name].residuals:
                    finished[stage.name].residuals = _residuals(finished[stage.name], scfg,
                                                                finished[stage.teacher].checkpoint, data)
                    done[stage.name]["result"] = dataclasses.asdict(finished[stage.name])
                    atomic_write_json(root / "stage.json", done, indent=2)
                bar.update()
            stages += finished.values()
            # the held-out reference row: entropy of real text under the first trained stage's tokenizer
            first = finished[suite.stages[0].name]
            ref_path = root / "records" / "data.json"
            if _record_ok(ref_path, first.checkpoint_hash, n, evaluator.name):
                ref = load_record(ref_path)
            else:
                _, tok, fcfg = load_model(first.checkpoint)
                ref = reference_record(fcfg, tok, evaluator, n_samples=n, data=data)
                ref.checkpoint_hash = first.checkpoint_hash
                ref.save(ref_path)
            rows.append(ResultRow("data", "data", seed, None, None, 1.0, ref.metrics["gen_ppl"], ref.metrics["entropy"],
                                  None))
            bar.update()
            for sweep in suite.sweeps:
                st = finished[sweep.stage]
                loaded = None
                for steps, temp, eta in sweep.points():
                    tag = f"{sweep.stage}-{steps if steps is not None else 'L'}-T{temp:g}" + (
                        f"-g{eta:g}" if eta is not None else "")
                    path = root / "records" / f"{tag}.json"
                    if _record_ok(path, st.checkpoint_hash, n, evaluator.name):
                        rec = load_record(path)
                    else:
                        first_eval = loaded is None
                        loaded = loaded or load_model(st.checkpoint, device=resolve_device(cfg.device))
                        rec = evaluate_checkpoint(st.checkpoint, steps, evaluator, n_samples=n, seed=seed,
                                                  gamma=cfg.sample.gamma, temperature=temp, model=loaded,
                                                  reference_entropy=ref.metrics["entropy"], warmup=first_eval,
                                                  samples_path=root / "samples" / f"{tag}.txt", guidance=eta)
                        rec.save(path)
                    per = rec.wall_time_per_sample_s
                    rows.append(ResultRow(
                        variant=sweep.stage, method=rec.method, seed=seed, steps=rec.steps, nfe=rec.nfe,
                        temperature=temp, gen_ppl=rec.metrics["gen_ppl"], entropy=rec.metrics["entropy"],
                        wall_ms_per_sample=per * 1e3 if per is not None else None, val_loss=st.val_loss,
                        train_seconds=st.train_seconds, step_ms=st.step_seconds * 1e3, guidance=eta,
                    ))
                    bar.update()
    finally:
        bar.close()
    result = SuiteResult(suite=name, preset=cfg.preset, seeds=seeds, evaluator=evaluator.name, n_samples=n,
                         stages=stages, rows=rows, summary=summarize(rows), unavailable=suite.unavailable)
    result.report = str(write_suite_report(result, out / "report"))
    _write_sample_excerpts(out / f"seed{seeds[0]}" / "samples", out / "report" / "samples.md")
    return result


def _write_sample_excerpts(samples_dir: Path, path: Path, n_show: int = 2) -> None:
    """``samples.md``: the first ``n_show`` samples of every evaluation of the first seed."""
    parts = [f"# Samples (first seed, {n_show} per evaluation)\n"]
    for f in sorted(samples_dir.glob("*.txt")):
        chunks = f.read_text(encoding="utf-8").split("\n=== sample ")[1 : n_show + 1]
        parts.append(f"\n## {f.stem}\n")
        for c in chunks:
            idx, _, text = c.partition(" ===\n")
            parts.append(f"\n**sample {idx}**\n\n```text\n{text.rstrip()}\n```\n")
    atomic_write_text(path, "".join(parts))


# ------------------------------------------------------------------------------------ report
def _f(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _range(mean: float, rng: tuple[float, float], n: int, digits: int = 1) -> str:
    return _f(mean, digits) if n < 2 else f"{_f(mean, digits)} [{_f(rng[0], digits)}–{_f(rng[1], digits)}]"


def format_suite_table(result: SuiteResult) -> str:
    """The markdown table: one row per (variant, steps, temperature), mean [min–max] over seeds."""
    guided = any(r.guidance is not None for r in result.summary)
    lines = ["| variant | method | steps | " + ("η | " if guided else "T | ") +
             "NFE | Gen PPL | entropy | wall ms / sample | val loss | train s | step ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result.summary:
        knob = (f"{r.guidance:g}" if r.guidance is not None else "–") if guided else f"{r.temperature:g}"
        lines.append(
            f"| {r.variant} | {r.method} | {r.steps if r.steps is not None else '–'} | {knob} | "
            f"{r.nfe if r.nfe is not None else '–'} | {_range(r.gen_ppl, r.gen_ppl_range, r.n_seeds)} | "
            f"{_range(r.entropy, r.entropy_range, r.n_seeds, 2)} | {_f(r.wall_ms_per_sample, 2)} | "
            f"{_f(r.val_loss, 3)} | {_f(r.train_seconds)} | {_f(r.step_ms)} |")
    return "\n".join(lines)


def _curves(summary: Sequence[SummaryRow]) -> dict[tuple[str, str, bool], list[SummaryRow]]:
    """One curve per (variant, method, guided): a step sweep, AR's temperature sweep, or an η sweep."""
    curves: dict[tuple[str, str, bool], list[SummaryRow]] = {}
    for r in summary:
        curves.setdefault((r.variant, r.method, r.guidance is not None), []).append(r)
    return curves


def _plot(summary: Sequence[SummaryRow], title: str, path: Path) -> None:
    """Gen PPL (log) against unigram entropy: one curve per variant (its step sweep, AR's temperature
    sweep), the held-out data as a star."""
    from flowlm._plotting import pyplot

    plt = pyplot("the experiment's Gen PPL vs entropy plot")
    fig, ax = plt.subplots(figsize=(8, 6))
    data_drawn = False
    for (variant, method, guided), rs in _curves(summary).items():
        if method == "data":
            if not data_drawn:
                ax.scatter([rs[0].entropy], [rs[0].gen_ppl], marker="*", s=140, color="black", label="held-out data",
                           zorder=3)
                data_drawn = True
            continue
        rs = sorted(rs, key=lambda r: (r.guidance or 0, r.steps or 0, r.temperature))
        if guided:
            label = f"{variant} (guidance η sweep, {rs[0].steps} steps)"
        else:
            label = f"{variant} ({'temperature' if method == 'AR' else 'steps'} sweep)"
        ax.plot([r.entropy for r in rs], [r.gen_ppl for r in rs], marker="s" if guided else "o", markersize=3,
                linestyle="--" if guided else "-", label=label)
        for r in rs:
            tag = f"η={r.guidance:g}" if guided else f"T={r.temperature:g}" if method == "AR" else str(r.steps)
            ax.annotate(tag, (r.entropy, r.gen_ppl), fontsize=6, textcoords="offset points", xytext=(3, 3))
    ax.set(yscale="log", xlabel="unigram entropy (nats)", ylabel="Gen PPL", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _suite_section(result: SuiteResult, plot: str | None) -> list[str]:
    parts = [f"## {result.suite}", "",
             f"Preset {result.preset}; seeds {list(result.seeds)}; {result.n_samples} samples per evaluation; "
             f"evaluator {result.evaluator}.", "", format_suite_table(result)]
    residual_rows = [s for s in result.stages if s.residuals]
    if residual_rows:
        keys = sorted({k for s in residual_rows for k in s.residuals})
        parts += ["", f"Residuals of the trained maps ({result.suite}):", "",
                  "| map | seed | " + " | ".join(keys) + " |", "|---|---:|" + "---:|" * len(keys)]
        parts += [f"| {s.name} | {s.seed} | " + " | ".join(f"{s.residuals[k]:.3g}" if k in s.residuals else "–" for k in keys) + " |"
                  for s in residual_rows]
    if result.unavailable:
        parts += ["", "Not run (not yet supported):", ""] + [f"- {u}" for u in result.unavailable]
    if plot:
        parts += ["", f"![{result.suite}: Gen PPL vs entropy]({plot})"]
    return parts


def load_suite_result(path: str | os.PathLike) -> SuiteResult:
    """A :class:`SuiteResult` read back from the JSON ``write_suite_report`` wrote."""
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    d["seeds"] = tuple(d["seeds"])
    d["unavailable"] = tuple(d.get("unavailable", ()))
    d["stages"] = [StageResult(**x) for x in d["stages"]]
    d["rows"] = [ResultRow(**x) for x in d["rows"]]
    d["summary"] = [SummaryRow(**{**x, "gen_ppl_range": tuple(x["gen_ppl_range"]),
                                   "entropy_range": tuple(x["entropy_range"])}) for x in d["summary"]]
    return SuiteResult(**d)


def write_suite_report(result: SuiteResult, report_dir: str | os.PathLike) -> Path:
    """Save ``result`` as ``suites/<suite>.json`` in ``report_dir`` and rebuild the report from every suite
    saved there: ``results.md`` (one section and table per suite), ``results.json``, one
    ``genppl_entropy_<suite>.png`` per suite and ``genppl_entropy.png`` with every curve of every suite.
    Suites run into one ``--out`` share a report."""
    from flowlm._plotting import MissingPlotDependencyError
    from flowlm.evaluation.records import to_jsonable

    report = Path(report_dir)
    (report / "suites").mkdir(parents=True, exist_ok=True)
    atomic_write_json(report / "suites" / f"{result.suite}.json",
                      to_jsonable(dataclasses.replace(result, report=str(report / "results.md"))), indent=2)
    order = {name: i for i, name in enumerate(SUITE_ORDER)}
    results = sorted((load_suite_result(p) for p in (report / "suites").glob("*.json")),
                     key=lambda r: (order.get(r.suite, len(order)), r.suite))
    parts = ["# flowlm experiment report", "",
             "Gen PPL and entropy are means over seeds [min–max]. Lower Gen PPL at much lower entropy is not a win: "
             "read the plots (every step or temperature sweep is a curve).", ""]
    figure_error = None
    for r in results:
        plot = f"genppl_entropy_{r.suite}.png"
        try:
            _plot(r.summary, f"{r.suite}: Gen PPL vs entropy ({r.preset})", report / plot)
        except MissingPlotDependencyError as e:
            plot, figure_error = None, str(e)
        parts += _suite_section(r, plot) + [""]
    # every curve of every suite in one figure (a stage shared by suites is drawn once)
    merged: dict[tuple, SummaryRow] = {}
    for r in results:
        for row in r.summary:
            merged[(row.variant, row.method, row.steps, row.temperature, row.guidance)] = row
    if len(results) > 1 and figure_error is None:
        _plot(list(merged.values()), "all suites: Gen PPL vs entropy", report / "genppl_entropy.png")
        parts += ["## All suites", "", "![all suites: Gen PPL vs entropy](genppl_entropy.png)"]
    elif results and figure_error is None:
        _plot(results[0].summary, f"{results[0].suite}: Gen PPL vs entropy ({results[0].preset})", report / "genppl_entropy.png")
    if figure_error:
        parts += ["", f"(no figures: {figure_error})"]
    path = report / "results.md"
    atomic_write_text(path, "\n".join(parts) + "\n")
    atomic_write_json(report / "results.json", {"suites": {r.suite: to_jsonable(r) for r in results}}, indent=2)
    return path

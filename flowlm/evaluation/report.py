"""Report rendering shared by ``flowlm quickstart``, ``eval``, ``bench`` and ``experiment``: the results
table, the FMLM-vs-FLM speed-up line, the Gen PPL plots, ``results.md`` / ``results.json`` / ``samples.md``."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowlm._io import atomic_write_json, atomic_write_text
from flowlm._plotting import MissingPlotDependencyError, pyplot
from flowlm.evaluation.metrics import MIN_ENTROPY_RATIO
from flowlm.evaluation.records import EvalRecord

__all__ = ["matching_flm_steps", "format_table", "write_report", "samples_name", "record_name",
           "order_records"]


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


def order_records(records: Sequence[EvalRecord]) -> list[EvalRecord]:
    """Records in report order: data, FMLM, FLM, then the baselines by name; by steps within a method."""
    rank = {"data": 0, "FMLM": 1, "FLM": 2}
    return sorted(records, key=lambda r: (rank.get(r.method, 3), r.method, r.steps or 0))


def format_table(records: Sequence[EvalRecord]) -> str:
    """The markdown results table: method, steps, NFE, Gen PPL, entropy, wall time per sample, flags."""
    lines = [
        "| method | steps | NFE | Gen PPL | entropy (nats) | wall time / sample (ms) | flags |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in order_records(records):
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
    ordered = order_records(records)
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
            path = Path(samples_dir) / samples_name(r.method, r.steps)
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


def samples_name(method: str, steps: int | None) -> str:
    return "data.txt" if method == "data" else f"{method.lower()}-{steps:03d}.txt"


def record_name(method: str, steps: int | None) -> str:
    return "data.json" if method == "data" else f"{method.lower()}-{steps:03d}.json"



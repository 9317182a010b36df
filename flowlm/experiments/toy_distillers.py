r"""Side-by-side comparison of the three distillers on a toy law with an exact likelihood.

:func:`compare_distillers` trains one student per distiller from the **same** teacher, with the
same time-pair sampler, initial weights (``student_factory`` called after seeding), data and
time draws (one ``torch.Generator`` seeded identically per run), optimizer and step budget, and
records per run (a :class:`RunRecord`):

* the loss curve and the wall time per optimizer step (median over steps);
* peak memory of one training step: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the
  peak of the live-tensor memory (parameters, gradients, optimizer state, activations) in
  ``torch.profiler``'s memory timeline over one step;
* JVP calls per step (from the distiller metrics);
* the three residuals of the trained map (:func:`~flowlm.flowmaps.residual_report`) on one fixed
  batch;
* ``n``-step sample quality for ``n`` in ``sample_steps``: total-variation distance
  :math:`\tfrac12\sum_x|\hat p(x) - p(x)|` between the empirical law of ``n_samples`` samples
  and the exact law, enumerated over all :math:`V^L` sequences through ``law.log_prob``; for the
  final online weights (``tv``) and, when ``ema_decay`` is set, for an exponential moving average
  of the weights kept during the run (``tv_ema``; samplers in training use EMA weights).

Reference rows: the teacher's Euler sampler with the same step counts and the TV of
``n_samples`` exact draws from the law (the Monte-Carlo floor of the TV estimate).
:meth:`DistillerComparison.save` writes ``<name>.json``, ``<name>.csv`` and ``<name>.png``.

This is an experiment, above the training loop in the layering (it uses the loop's :class:`EMA`);
the math layers never import it. The student comes from a factory, so any network works.
"""

from __future__ import annotations

import csv
import inspect
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowlm._io import atomic_write, atomic_write_json
from flowlm._plotting import pyplot
from flowlm.denoisers import Denoiser
from flowlm.flow import Flow
from flowlm.flowmaps import DISTILLERS, Distiller, FlowMapSampler, JVPBackend, TimePairSampler, residual_report
from flowlm.oracles.tv import all_sequences
from flowlm.oracles.tv import total_variation_to_probs as total_variation  # (tokens, law_probs, V)
from flowlm.samplers import EulerSampler
from flowlm.states import OneHotSpace
from flowlm.training.ema import EMA

__all__ = [
    "RunRecord",
    "ComparisonConfig",
    "DistillerComparison",
    "compare_distillers",
    "all_sequences",
    "total_variation",
    "sample_tv",
]


@dataclass
class RunRecord:
    """Everything recorded for one distiller run (or a reference row, which has no losses).

    ``tv`` and ``tv_ema`` map a step count to the TV distance of that many sampling steps;
    ``residuals`` maps each distiller name to its residual of the trained map.
    """

    name: str
    losses: list[float] = field(default_factory=list)
    step_time_ms: float = float("nan")
    peak_memory_mb: float = float("nan")
    memory_source: str = ""
    jvp_per_step: float = 0.0
    residuals: dict[str, float] = field(default_factory=dict)
    tv: dict[int, float] = field(default_factory=dict)
    tv_ema: dict[int, float] = field(default_factory=dict)
    wall_time_s: float = 0.0

    @property
    def trained(self) -> bool:
        """True for a distiller run, False for a reference row."""
        return bool(self.losses)

    @property
    def final_loss(self) -> float:
        """Mean loss of the last 20 steps (NaN for a reference row)."""
        tail = self.losses[-20:]
        return sum(tail) / len(tail) if tail else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: step counts become string keys."""
        d = asdict(self)
        d["tv"] = {str(n): v for n, v in self.tv.items()}
        d["tv_ema"] = {str(n): v for n, v in self.tv_ema.items()}
        return d


@dataclass(frozen=True)
class ComparisonConfig:
    """The conditions shared by every run of one comparison (objects recorded by their ``repr``)."""

    vocab_size: int
    length: int
    steps: int
    batch_size: int
    lr: float
    ema_decay: float | None
    optimizer: str
    seed: int
    sample_steps: tuple[int, ...]
    n_samples: int
    residual_batch: int
    interpolant: str
    schedule: str
    pairs: str
    distillers: dict[str, str]
    device: str
    torch: str


@dataclass
class DistillerComparison:
    """The result of :func:`compare_distillers`: its configuration and one record per run."""

    config: ComparisonConfig
    runs: list[RunRecord]

    def run(self, name: str) -> RunRecord:
        """The record called ``name`` (a distiller name, ``"teacher_euler"`` or ``"exact_samples"``)."""
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(f"no run named {name!r}; runs: {', '.join(r.name for r in self.runs)}")

    @property
    def trained(self) -> list[RunRecord]:
        """The distiller runs (without the reference rows)."""
        return [r for r in self.runs if r.trained]

    def to_dict(self) -> dict[str, Any]:
        """``{"config": {...}, "runs": [...]}``, JSON-ready."""
        return {"config": asdict(self.config) | {"sample_steps": list(self.config.sample_steps)},
                "runs": [r.to_dict() for r in self.runs]}

    def save(self, out_dir: str | os.PathLike, name: str = "distillers", plot: bool = True) -> Path:
        """Write ``<name>.json`` (everything), ``<name>.csv`` (one row per run) and, with ``plot``,
        ``<name>.png`` (loss curves + TV; needs matplotlib). Each file is written atomically.
        Returns ``out_dir``."""
        out = Path(out_dir)
        atomic_write_json(out / f"{name}.json", self.to_dict(), indent=2, allow_nan=True)
        atomic_write(out / f"{name}.csv", lambda tmp: self._write_csv(tmp))
        if plot:
            self._plot(out / f"{name}.png")
        return out

    def _write_csv(self, path: Path) -> None:
        steps, res_keys = self.config.sample_steps, list(DISTILLERS)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(
                ["run", "final_loss", "step_time_ms", "peak_memory_mb", "jvp_per_step", "wall_time_s"]
                + [f"residual_{k}" for k in res_keys] + [f"tv_{n}step" for n in steps]
                + [f"tv_ema_{n}step" for n in steps]
            )
            for r in self.runs:
                w.writerow(
                    [r.name, f"{r.final_loss:.5g}", f"{r.step_time_ms:.4g}", f"{r.peak_memory_mb:.4g}",
                     r.jvp_per_step, f"{r.wall_time_s:.3g}"]
                    + [f"{r.residuals.get(k, math.nan):.4g}" for k in res_keys]
                    + [f"{r.tv.get(n, math.nan):.4f}" for n in steps]
                    + [f"{r.tv_ema.get(n, math.nan):.4f}" for n in steps]
                )

    def _plot(self, path: Path) -> None:
        plt = pyplot("the distiller comparison plot")
        steps = self.config.sample_steps
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for r in self.trained:
            k = max(1, len(r.losses) // 100)
            sm = [sum(r.losses[i:i + k]) / len(r.losses[i:i + k]) for i in range(0, len(r.losses), k)]
            ax1.plot([i * k for i in range(len(sm))], sm, label=r.name)
        ax1.set(xlabel="step", ylabel="distillation loss", yscale="log", title="loss (smoothed)")
        ax1.legend()
        width = 0.8 / max(len(self.runs), 1)
        for i, r in enumerate(self.runs):
            tv = r.tv_ema or r.tv  # EMA weights where recorded (the reference rows have none)
            ax2.bar([j + i * width for j in range(len(steps))], [tv.get(n, math.nan) for n in steps], width, label=r.name)
        ax2.set_xticks([j + 0.4 - width / 2 for j in range(len(steps))], [f"{n} step" for n in steps])
        ema = any(r.tv_ema for r in self.runs)
        ax2.set(ylabel="TV distance to the exact law", title="sample quality (EMA weights)" if ema else "sample quality")
        ax2.legend(fontsize=8)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
        plt.close(fig)


def _law_probs(law: Any, vocab_size: int, length: int, device: torch.device | str) -> Tensor:
    seqs = all_sequences(vocab_size, length, device)
    p = law.log_prob(seqs).exp().to(torch.float64)
    if abs(float(p.sum()) - 1.0) > 1e-6:
        raise ValueError(f"the law's probabilities over all {vocab_size}^{length} sequences sum to {float(p.sum()):.6g}, not 1")
    return p


@torch.no_grad()
def sample_tv(
    sampler: Callable[..., Any],
    model: Any,
    flow: Flow,
    law_probs: Tensor,
    vocab_size: int,
    length: int,
    n_samples: int,
    generator: torch.Generator,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> float:
    """TV distance between ``n_samples`` draws of ``sampler(model, …)`` and the exact law."""
    x0 = OneHotSpace(vocab_size).noise(n_samples, length, device=device, dtype=dtype, generator=generator)
    return total_variation(sampler(model, flow, x0).tokens, law_probs, vocab_size)


def _peak_memory_of(step: Callable[[], None], device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20, "torch.cuda.max_memory_allocated (one step)"
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    try:  # the profiler's memory timeline (a private helper of torch.profiler; no public CPU equivalent)
        from torch.profiler._memory_profiler import MemoryProfileTimeline

        _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
        return max((sum(s) for s in sizes), default=0) / 2**20, "torch.profiler memory timeline (live CPU tensors, one step)"
    except Exception:  # noqa: BLE001 - a missing private helper must not break the comparison
        return float("nan"), "unavailable"


def _jvp_kwarg(cls: type, jvp: JVPBackend | None) -> dict[str, Any]:
    """``{"jvp": jvp}`` for the distillers whose target takes a JVP (not the semigroup's)."""
    return {"jvp": jvp} if "jvp" in inspect.signature(cls).parameters else {}


def compare_distillers(
    law: Any,
    teacher: Denoiser,
    student_factory: Callable[[], nn.Module],
    flow: Flow,
    *,
    distillers: Mapping[str, Distiller] | None = None,
    pairs: TimePairSampler | None = None,
    jvp: JVPBackend | None = None,
    steps: int = 500,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam,
    seed: int = 0,
    ema_decay: float | None = 0.99,
    sample_steps: Sequence[int] = (1, 2, 4),
    n_samples: int = 4096,
    residual_batch: int = 256,
    device: torch.device | str = "cpu",
    out_dir: str | os.PathLike | None = None,
    name: str = "distillers",
    log_every: int = 0,
) -> DistillerComparison:
    """Run every distiller under identical conditions; returns a :class:`DistillerComparison`.

    ``law`` needs ``vocab_size``, ``length``, ``sample(n, generator)`` and ``log_prob(tokens)``
    (e.g. :class:`flowlm.oracles.FiniteSequences`); ``teacher`` is the frozen FLM denoiser
    (often the law itself, i.e. the exact teacher). ``distillers`` overrides the defaults (one of
    each class in :data:`flowlm.flowmaps.DISTILLERS`; they must share ``pairs`` for a fair
    comparison). ``ema_decay`` (None: off) sets the EMA whose samples are recorded as ``tv_ema``
    next to the online weights' ``tv``. With ``out_dir`` the result is also saved there.
    """
    device = torch.device(device)
    V, L = int(law.vocab_size), int(law.length)
    sample_steps = tuple(int(n) for n in sample_steps)
    pairs = pairs if pairs is not None else TimePairSampler(flow)
    runs_spec = dict(distillers) if distillers is not None else {
        key: cls(flow, teacher=teacher, pairs=pairs, **_jvp_kwarg(cls, jvp)) for key, cls in DISTILLERS.items()
    }
    p_law = _law_probs(law, V, L, device)
    records: list[RunRecord] = []

    # fixed evaluation batch for the residuals
    g_eval = torch.Generator(device=device).manual_seed(seed + 1)
    eval_tokens = law.sample(residual_batch, generator=g_eval).to(device)
    eval_pairs = pairs(residual_batch, device=device, generator=g_eval)

    def tv_of(sampler: Callable[..., Any], model: Any) -> float:
        g = torch.Generator(device=device).manual_seed(seed + 3)  # the same noise for every row
        return sample_tv(sampler, model, flow, p_law, V, L, n_samples, g, device)

    for run_name, distiller in runs_spec.items():
        torch.manual_seed(seed)
        student = student_factory().to(device)
        student.train()
        opt = optimizer(student.parameters(), lr=lr)
        ema = EMA(student, decay=ema_decay) if ema_decay is not None else None
        gen = torch.Generator(device=device).manual_seed(seed)
        rec = RunRecord(name=run_name)
        times, jvps = [], []

        def one_step() -> dict[str, Any]:
            tokens = law.sample(batch_size, generator=gen).to(device)
            loss, metrics = distiller.loss(student, tokens, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update(student)
            return metrics

        t_run = time.perf_counter()
        for step in range(steps):
            if step == 1:  # memory of one representative step (after the optimizer state exists)
                holder: dict[str, dict[str, Any]] = {}
                rec.peak_memory_mb, rec.memory_source = _peak_memory_of(lambda: holder.update(m=one_step()), device)
                metrics = holder["m"]
            else:
                t0 = time.perf_counter()
                metrics = one_step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - t0)
            rec.losses.append(float(metrics["loss"]))
            jvps.append(float(metrics["n_jvp"]))
            if log_every and step % log_every == 0:
                print(f"[{run_name}] step {step:5d} loss {rec.losses[-1]:.4f}", flush=True)
        rec.wall_time_s = time.perf_counter() - t_run
        rec.step_time_ms = 1e3 * statistics.median(times) if times else float("nan")
        rec.jvp_per_step = float(sum(jvps) / max(len(jvps), 1))

        student.eval()
        rec.residuals = residual_report(  # the student under every compared distiller's residual
            student, runs_spec, eval_tokens, eval_pairs, generator=torch.Generator(device=device).manual_seed(seed + 2),
        )
        rec.tv = {n: tv_of(FlowMapSampler(n), student) for n in sample_steps}
        if ema is not None:
            with ema.swapped(student):
                rec.tv_ema = {n: tv_of(FlowMapSampler(n), student) for n in sample_steps}
        records.append(rec)

    # reference rows: the teacher's Euler sampler, and the Monte-Carlo floor of the TV estimate
    records.append(RunRecord(name="teacher_euler", tv={n: tv_of(EulerSampler(n), teacher) for n in sample_steps}))
    g_floor = torch.Generator(device=device).manual_seed(seed + 4)
    tv_floor = total_variation(law.sample(n_samples, generator=g_floor), p_law, V)
    records.append(RunRecord(name="exact_samples", tv={n: tv_floor for n in sample_steps}))

    config = ComparisonConfig(
        vocab_size=V, length=L, steps=steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay,
        optimizer=getattr(optimizer, "__name__", repr(optimizer)), seed=seed, sample_steps=sample_steps,
        n_samples=n_samples, residual_batch=residual_batch, interpolant=repr(flow.interpolant), schedule=repr(flow.schedule),
        pairs=repr(pairs), distillers={k: repr(v) for k, v in runs_spec.items()}, device=str(device),
        torch=torch.__version__,
    )
    result = DistillerComparison(config, records)
    if out_dir is not None:
        result.save(out_dir, name)
    return result

"""The suites of ``flowlm experiment``: which runs to train and how to evaluate each, as typed plans.

A :class:`Suite` is a list of :class:`Stage` s (one run folder each: a trained FLM / AR / MDLM, or
an FMLM distilled from a named FLM stage) and the :class:`Sweep` of every stage (FLM and MDLM:
``eval.steps``; FMLM: 1, 2, 4, 8 flow-map steps; AR: the ``eval.temperatures``). Every change a
stage makes is a dotted :class:`~flowlm.presets.RunConfig` key, so a variant runs through the same
pipeline as ``flowlm train`` / ``flowlm distill`` and stays loadable by ``sample``, ``eval``, ``bench``.

Suites (:data:`SUITES`):

* ``distillers`` — one FLM teacher; semigroup, Lagrangian, Eulerian (bounded step) and Eulerian
  (the paper's target) at equal budget; FMLM at 1/2/4/8 steps; the residual of each trained map
  under every characterization.
* ``baselines`` — FLM and its FMLM (the ``distill.method`` stage, shared with ``distillers``) vs AR vs
  MDLM on the same DiT, data and budget; FLM and MDLM step sweeps, AR temperature sweep.
* ``ablations`` — the paper's ablations at the preset's budget: denoiser + CE (``flm``) vs denoiser +
  MSE vs velocity + MSE (``model.loss``); decoding-error vs uniform time (``model.schedule``); logit
  soft-cap on vs off; teacher vs self-distillation; and, not in the paper, Linear vs Cosine vs
  Quadratic (``model.interpolant``).
* ``guidance`` — autoguidance weight η from 1 to 50 for the FLM, its one-step FMLM and MDLM (the
  ``baselines`` stages), each η a point of a curve in the Gen PPL–entropy plot.

Stages with the same name are the same run in every suite (``flm``, the ``semigroup`` FMLM): suites
that share an output folder share them, so ``distillers``, ``baselines`` and ``ablations`` in one
``--out`` train the FLM teacher once per seed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stage", "Sweep", "Suite", "SUITES", "build_suite", "FMLM_STEPS", "FLM_ABLATIONS", "GUIDANCE_WEIGHTS", "ExperimentError"]

FMLM_STEPS = (1, 2, 4, 8)


class ExperimentError(ValueError):
    """An experiment that cannot run as asked (unknown suite or variant, ...)."""


@dataclass(frozen=True)
class Stage:
    """One run folder: ``kind`` ``train`` (``model.kind`` from ``changes``) or ``distill`` (from ``teacher``)."""

    name: str
    kind: str  # train | distill
    changes: dict[str, Any] = field(default_factory=dict)  # dotted RunConfig keys
    teacher: str | None = None  # the FLM stage a distill stage starts from


@dataclass(frozen=True)
class Sweep:
    """How one stage is evaluated: ``steps`` (None = AR, one step per token) × ``temperatures``, or, with
    ``guidance``, × autoguidance weights η (weak model: the same network with dropout on)."""

    stage: str
    steps: tuple[int | None, ...]
    temperatures: tuple[float, ...] = (1.0,)
    guidance: tuple[float, ...] = ()

    def points(self) -> list[tuple[int | None, float, float | None]]:
        """Every evaluation of the sweep as ``(steps, temperature, η or None)``."""
        return [(s, t, g) for s in self.steps for t in self.temperatures for g in (self.guidance or (None,))]


@dataclass(frozen=True)
class Suite:
    name: str
    stages: tuple[Stage, ...]
    sweeps: tuple[Sweep, ...]
    residuals: bool = False  # measure each FMLM's residual under every characterization
    unavailable: tuple[str, ...] = ()  # variants of the issue this version cannot run, with the reason

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def _distillers(cfg: Any) -> Suite:
    teacher = Stage("flm", "train", {"model.kind": "flm"})
    students = (
        Stage("semigroup", "distill", {"distill.method": "semigroup"}, "flm"),
        Stage("lagrangian", "distill", {"distill.method": "lagrangian"}, "flm"),
        Stage("eulerian", "distill", {"distill.method": "eulerian", "distill.eulerian_target": "bounded"}, "flm"),
        Stage("eulerian-paper", "distill", {"distill.method": "eulerian", "distill.eulerian_target": "paper"}, "flm"),
    )
    sweeps = (Sweep("flm", cfg.eval.step_list()),) + tuple(Sweep(s.name, FMLM_STEPS) for s in students)
    return Suite("distillers", (teacher,) + students, sweeps, residuals=True)


def _baselines(cfg: Any) -> Suite:
    method = cfg.distill.method
    stages = (
        Stage("flm", "train", {"model.kind": "flm"}),
        Stage(method, "distill", {"distill.method": method}, "flm"),
        Stage("ar", "train", {"model.kind": "ar"}),
        Stage("mdlm", "train", {"model.kind": "mdlm"}),
    )
    sweeps = (Sweep("flm", cfg.eval.step_list()), Sweep(method, FMLM_STEPS), Sweep("ar", (None,), cfg.eval.temperature_list()),
              Sweep("mdlm", cfg.eval.step_list()))
    return Suite("baselines", stages, sweeps)


#: the FLM variants of the ablations suite: name -> the RunConfig keys it changes from ``flm``
FLM_ABLATIONS: dict[str, dict[str, Any]] = {
    "flm-mse": {"model.loss": "mse"},
    "flm-velocity-mse": {"model.loss": "velocity_mse"},
    "flm-uniform-time": {"model.schedule": "uniform"},
    "flm-no-softcap": {"model.attn_softcap": 0.0, "model.out_softcap": 0.0},
    "flm-cosine": {"model.interpolant": "cosine"},
    "flm-quadratic": {"model.interpolant": "quadratic"},
}


def _ablations(cfg: Any) -> Suite:
    flms = (Stage("flm", "train", {"model.kind": "flm"}),) + tuple(
        Stage(name, "train", {"model.kind": "flm", **changes}) for name, changes in FLM_ABLATIONS.items())
    students = (
        Stage("semigroup", "distill", {"distill.method": "semigroup"}, "flm"),  # teacher-distilled (shared)
        Stage("semigroup-self", "distill", {"distill.method": "semigroup", "distill.teacher": "self"}, "flm"),
    )
    sweeps = tuple(Sweep(s.name, cfg.eval.step_list()) for s in flms) + tuple(Sweep(s.name, FMLM_STEPS) for s in students)
    return Suite("ablations", flms + students, sweeps)


#: the guidance suite's weights η (1 = the plain model)
GUIDANCE_WEIGHTS = (1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)


def _guidance(cfg: Any) -> Suite:
    """Autoguidance (weak model: dropout on) against η for the FLM at ``sample.steps``, its one-step FMLM and
    MDLM at ``sample.steps``: the paper's claim that FLM stays stable to η ≈ 50 where discrete baselines
    collapse past 10. The stages are ``baselines``' (shared in one ``--out``)."""
    method = cfg.distill.method
    stages = (
        Stage("flm", "train", {"model.kind": "flm"}),
        Stage(method, "distill", {"distill.method": method}, "flm"),
        Stage("mdlm", "train", {"model.kind": "mdlm"}),
    )
    steps = cfg.sample.steps
    sweeps = (Sweep("flm", (steps,), guidance=GUIDANCE_WEIGHTS), Sweep(method, (1,), guidance=GUIDANCE_WEIGHTS),
              Sweep("mdlm", (steps,), guidance=GUIDANCE_WEIGHTS))
    return Suite("guidance", stages, sweeps)


#: suite name -> builder(cfg) -> Suite
SUITES = {"distillers": _distillers, "baselines": _baselines, "ablations": _ablations, "guidance": _guidance}


def build_suite(name: str, cfg: Any, variants: list[str] | None = None) -> Suite:
    """The suite ``name`` for the run config ``cfg``; ``variants`` keeps only those stages (and the
    stages they are distilled from)."""
    if name not in SUITES:
        close = difflib.get_close_matches(name, list(SUITES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ExperimentError(f"unknown suite {name!r}; {hint}choose one of {', '.join(SUITES)}")
    suite = SUITES[name](cfg)
    if not variants:
        return suite
    names = [s.name for s in suite.stages]
    for v in variants:
        if v not in names:
            close = difflib.get_close_matches(v, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ExperimentError(f"unknown variant {v!r} of the {name} suite; {hint}choose from {', '.join(names)}")
    keep = set(variants) | {suite.stage(v).teacher for v in variants if suite.stage(v).teacher}
    return Suite(suite.name, tuple(s for s in suite.stages if s.name in keep),
                 tuple(w for w in suite.sweeps if w.stage in keep), suite.residuals, suite.unavailable)

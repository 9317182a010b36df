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
* ``baselines`` — FLM and its (semigroup) FMLM vs AR vs MDLM on the same DiT, data and budget;
  FLM and MDLM step sweeps, AR temperature sweep.
* ``ablations`` — logit soft-cap on vs off; teacher vs self-distillation. The loss (CE / MSE /
  velocity-MSE), time (decoding-error vs uniform) and interpolant ablations need FLM options the
  run configuration does not expose yet: they are listed in :attr:`Suite.unavailable` and in the
  report, never silently skipped.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stage", "Sweep", "Suite", "SUITES", "build_suite", "FMLM_STEPS", "ExperimentError"]

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
    """How one stage is evaluated: ``steps`` (None = AR, one step per token) × ``temperatures``."""

    stage: str
    steps: tuple[int | None, ...]
    temperatures: tuple[float, ...] = (1.0,)


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
    stages = (
        Stage("flm", "train", {"model.kind": "flm"}),
        Stage("fmlm", "distill", {"distill.method": cfg.distill.method}, "flm"),
        Stage("ar", "train", {"model.kind": "ar"}),
        Stage("mdlm", "train", {"model.kind": "mdlm"}),
    )
    sweeps = (Sweep("flm", cfg.eval.step_list()), Sweep("fmlm", FMLM_STEPS), Sweep("ar", (None,), cfg.eval.temperature_list()),
              Sweep("mdlm", cfg.eval.step_list()))
    return Suite("baselines", stages, sweeps)


def _ablations(cfg: Any) -> Suite:
    stages = (
        Stage("flm", "train", {"model.kind": "flm"}),
        Stage("flm-no-softcap", "train", {"model.kind": "flm", "model.attn_softcap": 0.0, "model.out_softcap": 0.0}),
        Stage("fmlm-teacher", "distill", {"distill.teacher": "flm"}, "flm"),
        Stage("fmlm-self", "distill", {"distill.teacher": "self"}, "flm"),
    )
    sweeps = (Sweep("flm", cfg.eval.step_list()), Sweep("flm-no-softcap", cfg.eval.step_list()),
              Sweep("fmlm-teacher", FMLM_STEPS), Sweep("fmlm-self", FMLM_STEPS))
    missing = "the run configuration has no FLM {} option yet (FLM.loss is CE on the decoding-error τ)"
    unavailable = (
        "loss: denoiser+CE vs denoiser+MSE vs velocity+MSE — " + missing.format("loss"),
        "time: decoding-error τ vs uniform t — " + missing.format("time-sampling"),
        "interpolant: Linear vs Cosine vs custom — " + missing.format("interpolant"),
    )
    return Suite("ablations", stages, sweeps, unavailable=unavailable)


#: suite name -> builder(cfg) -> Suite
SUITES = {"distillers": _distillers, "baselines": _baselines, "ablations": _ablations}


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

r"""The three flow-map residuals of one two-time denoiser on one batch.

For the off-diagonal rows ``(s, u, t)`` of a batch of states :math:`x = x_s`, each residual is

.. math::
    r = \operatorname{mean}_{\text{rows, positions}}\ \sum_v \big(\hat\delta_{s,t}(x)_v - \bar\delta_v\big)^2,

with :math:`\bar\delta` the (unprojected) semigroup, Lagrangian or Eulerian target of
:mod:`flowlm.flowmaps`. All three vanish at the exact flow map (DESIGN §3); how fast each
decays during training is what the comparison harness records. The Eulerian residual is the
paper's form, :math:`\bar\delta = \hat D_s + \mu(\partial_s + b_s\cdot\nabla_x)\hat\delta`
(``EulerianDistiller(step=None)``, not the distiller's default shortened step, whose residual
is scaled by :math:`\min(1, \eta/\mu)`), with a boundary policy for its singular factor
(default ``"cap"``: rows with ``t > t_max`` are evaluated at ``t_max``; ``"drop"`` rows are left
out). A ``diagonal`` entry reports
:math:`\operatorname{mean}\sum_v(\hat\delta_{t,t}(x) - \hat D_t(x))_v^2` on the same states
when a teacher is given.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from flowlm.denoisers import Denoiser, denoised_probs
from flowlm.flowmaps.distiller import Distiller
from flowlm.flowmaps.eulerian import EulerianDistiller
from flowlm.flowmaps.jvp import JVPBackend
from flowlm.flowmaps.lagrangian import LagrangianDistiller
from flowlm.flowmaps.semigroup import SemigroupDistiller
from flowlm.flowmaps.time_pairs import TimePairs, TimePairSampler
from flowlm.flowmaps.two_time import TwoTimeDenoiser, delta_probs
from flowlm.interpolants.base import Interpolant
from flowlm.interpolants.schedule import TimeSchedule
from flowlm.states import OneHotSpace, StateSpace

__all__ = ["residual_report", "distiller_residual"]


@torch.no_grad()
def distiller_residual(
    distiller: Distiller,
    student: TwoTimeDenoiser,
    x: Float[Tensor, "B L D"],
    pairs: TimePairs,
    space: StateSpace,
) -> float:
    """mean over off-diagonal rows and positions of Σ_v (δ̂ − δ̄)² for one distiller's target."""
    off = pairs.off_diagonal
    if not bool(off.any()):
        raise ValueError("the time pairs hold no off-diagonal row (s < t); draw pairs with diagonal_fraction < 1")
    xo, so, uo, to = x[off], pairs.s[off], pairs.u[off], pairs.t[off]
    tgt = distiller.target(student, xo, so, uo, to, space)
    s_st, t_st = distiller.student_times(so, to)
    sq = (delta_probs(student, xo, s_st, t_st) - tgt.probs).square().sum(-1).mean(-1)  # [b]
    if tgt.weight is None:
        return float(sq.mean())
    w = tgt.weight.to(sq.dtype)
    return float((sq * w).sum() / w.sum().clamp(min=1.0))


@torch.no_grad()
def residual_report(
    student: TwoTimeDenoiser,
    interpolant: Interpolant,
    schedule: TimeSchedule,
    teacher: Denoiser | None,
    data: Int[Tensor, "B L"] | Float[Tensor, "B L D"],
    pairs: TimePairs | TimePairSampler,
    space: StateSpace | None = None,
    jvp: JVPBackend | None = None,
    generator: torch.Generator | None = None,
    eulerian_boundary: str = "cap",
    eulerian_t_max: float = 0.99,
) -> dict[str, float]:
    """``dict(semigroup=…, lagrangian=…, eulerian=…[, diagonal=…])`` for the same map on one batch.

    ``data`` is either clean tokens ``[B, L]`` (noised to ``x_s`` here with ``generator``) or
    states ``x_s`` ``[B, L, D]`` already at the rows' start times. ``pairs`` is a drawn
    :class:`TimePairs` or a sampler (then one draw of ``B`` rows is made).
    """
    space = space if space is not None else OneHotSpace(student.vocab_size)
    B = data.shape[0]
    dtype = data.dtype if data.is_floating_point() else torch.float32
    if isinstance(pairs, TimePairSampler):
        pairs = pairs(B, device=data.device, dtype=dtype, generator=generator)
    distillers: dict[str, Distiller] = {
        "semigroup": SemigroupDistiller(interpolant, schedule, teacher=teacher, jvp=jvp),
        "lagrangian": LagrangianDistiller(interpolant, schedule, teacher=teacher, jvp=jvp),
        "eulerian": EulerianDistiller(
            interpolant, schedule, teacher=teacher, jvp=jvp, step=None, boundary=eulerian_boundary, t_max=eulerian_t_max
        ),
    }
    if data.is_floating_point():
        x = data
    else:
        x = distillers["semigroup"].noisy_state(data, pairs.s, space, dtype, generator)
    report = {name: distiller_residual(d, student, x, pairs, space) for name, d in distillers.items()}
    if teacher is not None:
        diag = pairs.diagonal
        if bool(diag.any()):
            xd, td = x[diag], pairs.t[diag]
            report["diagonal"] = float(
                (delta_probs(student, xd, td, td) - denoised_probs(teacher, xd, td)).square().sum(-1).mean()
            )
    return report

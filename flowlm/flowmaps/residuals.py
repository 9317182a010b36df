r"""The flow-map residuals of one two-time denoiser on one batch, for the distillers you trained.

For the off-diagonal rows ``(s, u, t)`` of a batch of states :math:`x = x_s`, the residual of a
distiller is

.. math::
    r = \operatorname{mean}_{\text{rows, positions}}\ \sum_v \big(\hat\delta_{s,t}(x)_v - \bar\delta_v\big)^2,

with :math:`\bar\delta` the (unprojected) target of *that distiller, as configured* (its step,
boundary policy, JVP backend and teacher): :func:`residual_report` takes the distillers and builds
none of its own. All residuals vanish at the exact flow map (DESIGN §3). Note that the default
Eulerian distiller's target is a shortened step (:mod:`flowlm.flowmaps.eulerian`), so its residual
is the paper's scaled by :math:`\min(1, \eta/\mu_\tau)^2` row by row; pass
``EulerianDistiller(flow, step=None, ...)`` to report the paper's form. A ``diagonal`` entry reports
:math:`\operatorname{mean}\sum_v(\hat\delta_{t,t}(x) - \hat D_t(x))_v^2` on the same states when the
distillers have a teacher.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from jaxtyping import Float, Int
from torch import Tensor

from flowlm.denoisers import TwoTimeDenoiser
from flowlm.flowmaps.distiller import Distiller, rows_of
from flowlm.flowmaps.time_pairs import TimePairs, TimePairSampler
from flowlm.flowmaps.two_time import FlowMap
from flowlm.states import StateSpace

__all__ = ["residual_report", "distiller_residual"]


@torch.no_grad()
def distiller_residual(
    distiller: Distiller,
    student: TwoTimeDenoiser,
    x: Float[Tensor, "B L D"],
    pairs: TimePairs,
    space: StateSpace | None = None,
) -> Float[Tensor, ""]:
    """mean over off-diagonal rows and positions of Σ_v (δ̂ − δ̄)² for one distiller's target (a tensor)."""
    idx = pairs.off_diagonal.nonzero().squeeze(1)
    if idx.numel() == 0:
        raise ValueError("the time pairs hold no off-diagonal row (s < t); draw pairs with diagonal_fraction < 1")
    fm = FlowMap(student, distiller.flow, space)
    rows = rows_of(pairs, idx)
    xo = x.index_select(0, idx)
    tgt = distiller.target(fm, xo, rows)
    s_st, t_st, tau_s, tau_t = distiller.student_times(rows)
    sq = (student.probs(xo, s_st, t_st, tau_s=tau_s, tau_t=tau_t) - tgt.probs).square().sum(-1).mean(-1)  # [b]
    if tgt.weight is None:
        return sq.mean()
    w = tgt.weight.to(sq.dtype)
    return (sq * w).sum() / w.sum().clamp(min=1.0)


@torch.no_grad()
def residual_report(
    student: TwoTimeDenoiser,
    distillers: Distiller | Mapping[str, Distiller],
    data: Int[Tensor, "B L"] | Float[Tensor, "B L D"],
    pairs: TimePairs | TimePairSampler,
    space: StateSpace | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """``{name: residual}`` (``name`` = the dict key, or ``distiller.name``) of the same student on one
    batch, for each given distiller, plus ``diagonal`` when they have a teacher.

    ``data`` is either clean tokens ``[B, L]`` (noised to ``x_s`` here with ``generator``) or
    states ``x_s`` ``[B, L, D]`` already at the rows' start times. ``pairs`` is a drawn
    :class:`TimePairs` or a sampler (then one draw of ``B`` rows is made). Every distiller must
    share one flow.
    """
    if isinstance(distillers, Distiller):
        distillers = {distillers.name: distillers}
    if not distillers:
        raise ValueError("residual_report needs at least one distiller (the ones you trained)")
    first = next(iter(distillers.values()))
    flow = first.flow
    if any(d.flow != flow for d in distillers.values()):
        raise ValueError("residual_report: every distiller must be built on the same Flow")
    fm = FlowMap(student, flow, space)
    B = data.shape[0]
    dtype = data.dtype if data.is_floating_point() else torch.float32
    if isinstance(pairs, TimePairSampler):
        pairs = pairs(B, device=data.device, dtype=dtype, generator=generator)
    if data.is_floating_point():
        x = data
    else:
        x = flow.noisy(data, tau=pairs.tau_s, space=fm.space, generator=generator, dtype=dtype).xt
    report = {name: float(distiller_residual(d, student, x, pairs, fm.space)) for name, d in distillers.items()}
    teacher = first.teacher
    idx = pairs.diagonal.nonzero().squeeze(1)
    if teacher is not None and idx.numel():
        xd, td, taud = x.index_select(0, idx), pairs.t.index_select(0, idx), pairs.tau_t.index_select(0, idx)
        gap = student.probs(xd, td, td, tau_s=taud, tau_t=taud) - teacher.probs(xd, td, tau=taud)
        report["diagonal"] = float(gap.square().sum(-1).mean())
    return report

r"""Lagrangian distillation: :math:`\partial_t X_{s,t}(x) = b_t(X_{s,t}(x))` written on δ.

Differentiating :math:`X_{s,t} = (\alpha_t/\alpha_s)x + \alpha_t(\rho_t-\rho_s)\delta_{s,t}` in
``t`` and using :math:`b_t(y) = (\alpha_t'/\alpha_t)y + \alpha_t\rho_t' D_t(y)` gives

.. math::
    \delta_{s,t}(x) = D_t(X_{s,t}(x)) - \lambda_{s,t}\,\partial_t\delta_{s,t}(x),\qquad
    \lambda_{s,t} = \frac{\rho_t - \rho_s}{\rho'_t}
      = \frac{(\beta_t - \alpha_t\beta_s/\alpha_s)\,\alpha_t}{\beta'_t\alpha_t - \beta_t\alpha'_t},

the last form (numerator and denominator multiplied by :math:`\alpha_t^2`) finite at ``t = 1``,
where :math:`\lambda = 0` (for :math:`\alpha'(1) \ne 0`). Linear: :math:`\lambda = (1-t)(t-s)/(1-s)`.

The target uses the teacher :math:`\hat D_t` at the student's own endpoint
:math:`\hat X_{s,t}(x)` and one JVP in ``t`` of the student's probabilities (the primal output of
the JVP gives :math:`\hat\delta_{s,t}(x)`, so :math:`\hat X_{s,t}` costs nothing extra). It can
leave the simplex: choose a ``projection`` (:mod:`flowlm.flowmaps.projections`).

With a finite-difference backend rows with ``t > 1 − ε`` use a backward stencil
(``row_shift``), so no pass sees a time outside [0, 1].
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from flowlm.denoisers import Denoiser
from flowlm.flowmaps.distiller import Distiller, Target
from flowlm.flowmaps.jvp import JVPBackend
from flowlm.flowmaps.time_pairs import TimePairSampler
from flowlm.flowmaps.two_time import TwoTimeDenoiser, delta_probs
from flowlm.interpolants.base import Interpolant, expand_time
from flowlm.interpolants.schedule import TimeSchedule
from flowlm.states import StateSpace

__all__ = ["LagrangianDistiller", "lagrangian_factor"]


def lagrangian_factor(
    interpolant: Interpolant, s: Float[Tensor, "*shape"], t: Float[Tensor, "*shape"]
) -> Float[Tensor, "*shape"]:
    """λ_{s,t} = (ρ_t − ρ_s)/ρ'_t = (β_t − α_tβ_s/α_s)·α_t / (β'_tα_t − β_tα'_t); 0 at t = 1."""
    _, c_delta = interpolant.flow_map_coefficients(s, t)
    a_t, b_t = interpolant.alpha(t), interpolant.beta(t)
    return c_delta * a_t / (interpolant.beta_dot(t) * a_t - b_t * interpolant.alpha_dot(t))


class LagrangianDistiller(Distiller):
    r"""Target :math:`\bar\delta = \hat D_t(\hat X_{s,t}(x)) - \lambda_{s,t}\,\partial_t\hat\delta_{s,t}(x)`.

    ``projection``: ``"clip"`` (default), ``"sparsemax"`` or ``"mse"``.
    """

    name = "lagrangian"

    def __init__(
        self,
        interpolant: Interpolant,
        schedule: TimeSchedule,
        teacher: Denoiser | None = None,
        pairs: TimePairSampler | None = None,
        projection: str = "clip",
        jvp: JVPBackend | None = None,
    ) -> None:
        super().__init__(interpolant, schedule, teacher=teacher, pairs=pairs, projection=projection, jvp=jvp)

    def target(
        self,
        student: TwoTimeDenoiser,
        x: Float[Tensor, "b L D"],
        s: Float[Tensor, " b"],
        u: Float[Tensor, " b"],
        t: Float[Tensor, " b"],
        space: StateSpace,
    ) -> Target:
        # a finite-difference pass must not see t > 1: backward stencil within the margin of 1
        shift = -(t > 1.0 - self.jvp.margin).to(t.dtype) if self.jvp.margin > 0 else None

        def probs_in_t(tt: Tensor) -> Tensor:
            return delta_probs(student, x, s, tt)

        p, dp_dt = self.jvp(probs_in_t, (t,), (torch.ones_like(t),), row_shift=shift)  # δ̂_{s,t}(x), ∂_t δ̂_{s,t}(x)  [b, L, V]
        x_t = self.interpolant.flow_map_from_delta(x, s, t, space.embed(p))  # X̂_{s,t}(x)  [b, L, D]
        d_t = self.teacher.probs(student, x_t, t)  # D̂_t(X̂_{s,t}(x))  [b, L, V]
        lam = expand_time(lagrangian_factor(self.interpolant, s, t), p)  # [b, 1, 1]
        return Target(probs=d_t - lam * dp_dt, n_jvp=1, n_forward=1)

r"""Lagrangian distillation: :math:`\partial_t X_{s,t}(x) = b_t(X_{s,t}(x))` written on δ.

Differentiating :math:`X_{s,t} = (\alpha_t/\alpha_s)x + \alpha_t(\rho_t-\rho_s)\delta_{s,t}` in
``t`` and using :math:`b_t(y) = (\alpha_t'/\alpha_t)y + \alpha_t\rho_t' D_t(y)` gives

.. math::
    \delta_{s,t}(x) = D_t(X_{s,t}(x)) - \lambda_{s,t}\,\partial_t\delta_{s,t}(x),\qquad
    \lambda_{s,t} = \frac{\rho_t - \rho_s}{\rho'_t}
      = \frac{(\beta_t - \alpha_t\beta_s/\alpha_s)\,\alpha_t}{\beta'_t\alpha_t - \beta_t\alpha'_t},

the last form (numerator and denominator multiplied by :math:`\alpha_t^2`) finite at ``t = 1``
when :math:`\alpha'(1) \ne 0`; where it is 0/0 (an interpolant with :math:`\alpha'(1) = 0`, e.g.
:math:`\alpha = (1-t)^2`) the limit :math:`\lambda \to 0` (ρ_t → ∞) is used, so
:func:`lagrangian_factor` is finite and 0 at ``t = 1`` for every interpolant.
Linear: :math:`\lambda = (1-t)(t-s)/(1-s)`.

The target uses the teacher :math:`\hat D_t` at the student's own endpoint
:math:`\hat X_{s,t}(x)` (the student's :class:`~flowlm.flowmaps.FlowMap`) and one JVP of the
student's probabilities in the model time :math:`\tau_t`, converted by the chain rule
:math:`\partial_t = \tau'(t)\,\partial_{\tau_t}` (the primal output of the JVP gives
:math:`\hat\delta_{s,t}(x)`, so :math:`\hat X_{s,t}` costs nothing extra). It can leave the
simplex: choose a ``projection`` (:mod:`flowlm.flowmaps.projections`).

With a finite-difference backend rows with ``τ_t > 1 − ε`` use a backward stencil
(``row_shift``), so no pass sees a time outside [0, 1]. A difference in τ resolves t only where τ(t) is
distinguishable from 1 in the working precision (under the decoding-error schedule of a small
vocabulary τ reaches 1 in float64 well before t = 1); a network conditioned on τ cannot tell
those times apart either, but an exact oracle can: use forward mode (or the identity schedule)
when differentiating an oracle there.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from flowlm.denoisers import Denoiser
from flowlm.flow import Flow
from flowlm.flowmaps.distiller import Distiller, Target
from flowlm.flowmaps.jvp import JVPBackend
from flowlm.flowmaps.time_pairs import TimePairs, TimePairSampler
from flowlm.flowmaps.two_time import FlowMap
from flowlm.interpolants.base import Interpolant, expand_time

__all__ = ["LagrangianDistiller", "lagrangian_factor"]


def lagrangian_factor(
    interpolant: Interpolant, s: Float[Tensor, "*shape"], t: Float[Tensor, "*shape"]
) -> Float[Tensor, "*shape"]:
    """λ_{s,t} = (ρ_t − ρ_s)/ρ'_t = (β_t − α_tβ_s/α_s)·α_t / (β'_tα_t − β_tα'_t); 0 at t = 1 (its
    limit, also where the last form is 0/0 because α'(1) = 0)."""
    _, c_delta = interpolant.flow_map_coefficients(s, t)
    a_t, b_t = interpolant.alpha(t), interpolant.beta(t)
    den = interpolant.beta_dot(t) * a_t - b_t * interpolant.alpha_dot(t)
    at_data = a_t == 0  # ρ_t = ∞: λ → 0 whatever the rate at which α vanishes
    lam = c_delta * a_t / torch.where(at_data, torch.ones_like(den), den)
    return torch.where(at_data, torch.zeros_like(lam), lam)


class LagrangianDistiller(Distiller):
    r"""Target :math:`\bar\delta = \hat D_t(\hat X_{s,t}(x)) - \lambda_{s,t}\,\partial_t\hat\delta_{s,t}(x)`.

    ``projection``: ``"clip"`` (default), ``"sparsemax"`` or ``"mse"``.
    """

    name = "lagrangian"

    def __init__(
        self,
        flow: Flow,
        teacher: Denoiser | None = None,
        pairs: TimePairSampler | None = None,
        projection: str = "clip",
        jvp: JVPBackend | None = None,
    ) -> None:
        super().__init__(flow, teacher=teacher, pairs=pairs, projection=projection, jvp=jvp)

    def target(self, flow_map: FlowMap, x: Float[Tensor, "b L D"], rows: TimePairs) -> Target:
        s, t, tau_s, tau_t = rows.s, rows.t, rows.tau_s, rows.tau_t
        # a finite-difference pass must not see τ > 1: backward stencil within the margin of 1
        shift = -(tau_t > 1.0 - 2.0 * self.jvp.margin).to(tau_t.dtype) if self.jvp.margin > 0 else None

        def probs_in_tau(tt: Tensor) -> Tensor:
            return flow_map.delta.probs(x, s, self.flow.t_of_tau_differentiable(tt), tau_s=tau_s, tau_t=tt)

        p, dp_dtau = self.jvp(probs_in_tau, (tau_t,), (torch.ones_like(tau_t),), row_shift=shift)  # δ̂, ∂_τt δ̂  [b, L, V]
        dp_dt = dp_dtau * expand_time(self.flow.schedule.dtau_dt(t).to(p.dtype), p)  # ∂_t δ̂ = τ'(t) ∂_τ δ̂
        x_t = flow_map.combine(x, s, t, p)  # X̂_{s,t}(x)  [b, L, D]
        d_t = self.teacher_probs(flow_map, x_t, t, tau_t)  # D̂_t(X̂_{s,t}(x))  [b, L, V]
        lam = expand_time(lagrangian_factor(self.flow.interpolant, s, t).to(p.dtype), p)  # [b, 1, 1]
        return Target(probs=d_t - lam * dp_dt, n_jvp=1, n_forward=1)

r"""Eulerian distillation: :math:`\partial_s X_{s,t}(x) + \nabla_x X_{s,t}(x)\cdot b_s(x) = 0` on δ.

Substituting :math:`X_{s,t} = (\alpha_t/\alpha_s)x + \alpha_t(\rho_t-\rho_s)\delta_{s,t}` and
:math:`b_s(x) = (\alpha_s'/\alpha_s)x + \alpha_s\rho_s' D_s(x)` gives

.. math::
    \delta_{s,t}(x) = D_s(x) + \mu_{s,t}\,\big(\partial_s\delta_{s,t}(x) + \nabla_x\delta_{s,t}(x)\cdot b_s(x)\big),
    \qquad \mu_{s,t} = \frac{\rho_t - \rho_s}{\rho'_s}
      = \frac{(\beta_t - \alpha_t\beta_s/\alpha_s)\,\alpha_s^2}{\alpha_t\,(\beta'_s\alpha_s - \beta_s\alpha'_s)}

(Linear: :math:`\mu = (t-s)(1-s)/(1-t)`). The bracket is one JVP of the student's probabilities
in ``(s, x)`` along the tangent ``(1, b_s(x))``, with :math:`b_s` the teacher velocity in the
state space (``space.embed`` of :math:`\hat D_s`).

**The factor is singular at t = 1** (:math:`\mu \sim 1/\alpha_t`): at ``t = 1`` the equation only
says that :math:`\delta_{s,1}` is constant along trajectories and gives no target for it. How
rows with ``t > t_max`` are treated is the named option ``boundary``:

``"hold"`` (default)
    the target is computed at ``(s, t_max)`` and the student at ``(s, t)`` is fitted to it:
    trains the one-step map directly, with a bias
    :math:`\delta_{s,t} - \delta_{s,t_\max}` (small when the flow has settled by ``t_max``).
``"cap"``
    the row is moved to ``(s, min(t, t_max))``: student *and* target at the capped time. Unbiased
    for the times it trains, but :math:`\hat\delta_{\cdot,1}` (the one-step map) is learned only
    by the network's continuity in ``t`` (on a V=4, L=3 toy law its one-step samples were far
    worse than with ``"hold"``: ``benchmarks/results/distillers.md``).
``"drop"``
    rows with ``t > t_max`` get zero off-diagonal weight (no signal near the data end at all).

``t_max`` (default 0.99, interpolation time) bounds the factor by μ_{s,t_max} (Linear: at most
1/(1 − t_max)); larger values amplify JVP and teacher errors by μ. With a finite-difference backend
rows with ``s < ε`` use a forward stencil (``row_shift``), so no pass sees a negative time.
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

__all__ = ["EulerianDistiller", "eulerian_factor", "BOUNDARY_POLICIES"]

BOUNDARY_POLICIES = ("cap", "hold", "drop")


def eulerian_factor(
    interpolant: Interpolant, s: Float[Tensor, "*shape"], t: Float[Tensor, "*shape"]
) -> Float[Tensor, "*shape"]:
    """μ_{s,t} = (ρ_t − ρ_s)/ρ'_s = (β_t − α_tβ_s/α_s)·α_s² / (α_t(β'_sα_s − β_sα'_s)); inf at t = 1."""
    _, c_delta = interpolant.flow_map_coefficients(s, t)
    a_s, b_s = interpolant.alpha(s), interpolant.beta(s)
    return c_delta * a_s.square() / (interpolant.alpha(t) * (interpolant.beta_dot(s) * a_s - b_s * interpolant.alpha_dot(s)))


class EulerianDistiller(Distiller):
    r"""Target :math:`\bar\delta = \hat D_s(x) + \mu_{s,t}(\partial_s\hat\delta_{s,t} + \nabla_x\hat\delta_{s,t}\cdot b_s)(x)`.

    ``projection``: ``"clip"`` (default), ``"sparsemax"`` or ``"mse"``; ``boundary`` and
    ``t_max``: the policy for the singular factor near ``t = 1`` (module docstring).
    """

    name = "eulerian"

    def __init__(
        self,
        interpolant: Interpolant,
        schedule: TimeSchedule,
        teacher: Denoiser | None = None,
        pairs: TimePairSampler | None = None,
        projection: str = "clip",
        jvp: JVPBackend | None = None,
        boundary: str = "hold",
        t_max: float = 0.99,
    ) -> None:
        super().__init__(interpolant, schedule, teacher=teacher, pairs=pairs, projection=projection, jvp=jvp)
        if boundary not in BOUNDARY_POLICIES:
            raise ValueError(f"boundary must be one of {BOUNDARY_POLICIES}, got {boundary!r}")
        if not 0.0 < t_max < 1.0:
            raise ValueError(f"t_max must lie in (0, 1) because the Eulerian factor is infinite at t = 1; got {t_max}")
        if t_max <= self.jvp.margin:
            raise ValueError(f"t_max = {t_max} must exceed the JVP backend's margin {self.jvp.margin}")
        self.boundary = boundary
        self.t_max = float(t_max)

    def student_times(
        self, s: Float[Tensor, " b"], t: Float[Tensor, " b"]
    ) -> tuple[Float[Tensor, " b"], Float[Tensor, " b"]]:
        if self.boundary == "cap":
            t = t.clamp(max=self.t_max)
            return torch.minimum(s, t), t
        return s, t

    def target(
        self,
        student: TwoTimeDenoiser,
        x: Float[Tensor, "b L D"],
        s: Float[Tensor, " b"],
        u: Float[Tensor, " b"],
        t: Float[Tensor, " b"],
        space: StateSpace,
    ) -> Target:
        weight = (t <= self.t_max).to(x.dtype) if self.boundary == "drop" else None
        t = t.clamp(max=self.t_max)
        s = torch.minimum(s, t)
        # a finite-difference pass must not see s < 0: forward stencil within the margin of 0
        shift = (s < self.jvp.margin).to(s.dtype) if self.jvp.margin > 0 else None

        d_s = self.teacher.probs(student, x, s)  # D̂_s(x)  [b, L, V]
        b_s = self.interpolant.velocity_from_denoiser(x, s, space.embed(d_s))  # b_s(x) in the state space  [b, L, D]

        def probs_in_s_x(ss: Tensor, xx: Tensor) -> Tensor:
            return delta_probs(student, xx, ss, t)

        _, transport = self.jvp(probs_in_s_x, (s, x), (torch.ones_like(s), b_s), row_shift=shift)  # (∂_s + b_s·∇_x) δ̂_{s,t}(x)
        mu = expand_time(eulerian_factor(self.interpolant, s, t), d_s)  # [b, 1, 1]
        return Target(probs=d_s + mu * transport, weight=weight, n_jvp=1, n_forward=1)

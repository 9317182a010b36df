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
says that :math:`\delta_{s,1}` is constant along trajectories. Two ways to handle it, chosen by
``step``:

``step = η`` (default 0.05): **a bounded step along the residual.** Divide the equation by μ,

.. math::
    R_{s,t}(x) = \frac{\hat D_s(x) - \hat\delta_{s,t}(x)}{\mu_{s,t}}
        + \big(\partial_s + b_s\cdot\nabla_x\big)\hat\delta_{s,t}(x),

which is the Eulerian PDE in flow-map form, :math:`(\partial_s + b_s\cdot\nabla_x)X_{s,t}`, divided
by :math:`\alpha_t(\rho_t-\rho_s)`: finite everywhere, and at ``t = 1`` (:math:`1/\mu = 0`) just the
transport term. The target moves the student's own output a step of length
:math:`\min(\mu_{s,t}, \eta)` along it:

.. math::
    \bar\delta = \hat\delta_{s,t} + \min(\mu_{s,t}, \eta)\,R_{s,t}
      = \hat\delta_{s,t} + \lambda\,(\hat D_s - \hat\delta_{s,t}) + \min(\mu_{s,t},\eta)\,
        (\partial_s + b_s\cdot\nabla_x)\hat\delta_{s,t},
    \qquad \lambda = \min(1, \eta/\mu_{s,t}).

Rows with :math:`\mu \le \eta` get exactly the paper's target; the others get a step of the
paper's target's direction, shortened by :math:`\eta/\mu` (for the CE gradient in the logits,
:math:`\hat\delta - \bar\delta`, this is the paper's residual with row weight
:math:`\min(1, \eta/\mu)`). The fixed point is the same (``R = 0``), no time is capped, and the
target stays close to the simplex because the step is short. ``η`` is an interpolation-time
length; smaller is steadier and slower. On the V=4, L=3 toy law it is what makes the one-step
map learn (``tests/test_distill_learning.py``, ``benchmarks/results/distillers.md``).

``step = None``: **the paper's target** :math:`\hat D_s + \mu(\partial_s + b_s\cdot\nabla_x)\hat\delta`,
with rows ``t > t_max`` treated by the named option ``boundary``:

``"hold"`` (default)
    the target is computed at ``(s, t_max)`` and the student at ``(s, t)`` is fitted to it:
    trains the one-step map directly, with a bias
    :math:`\delta_{s,t} - \delta_{s,t_\max}` (small when the flow has settled by ``t_max``).
``"cap"``
    the row is moved to ``(s, min(t, t_max))``: student *and* target at the capped time. Unbiased
    for the times it trains, but :math:`\hat\delta_{\cdot,1}` (the one-step map) is learned only
    by the network's continuity in ``t``.
``"drop"``
    rows with ``t > t_max`` get zero off-diagonal weight (no signal near the data end at all).

``t_max`` (default 0.99, interpolation time) bounds the factor by μ_{s,t_max} (Linear: at most
1/(1 − t_max)); larger values amplify JVP and teacher errors by μ. ``boundary`` and ``t_max``
are used only when ``step`` is None.

With a finite-difference backend rows with ``s < ε`` use a forward stencil (``row_shift``), so no
pass sees a negative time.
"""

from __future__ import annotations

import math

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
    r"""Eulerian target, by default a bounded step along the residual (module docstring):
    :math:`\bar\delta = \hat\delta_{s,t} + \min(\mu_{s,t},\eta)\,R_{s,t}`; with ``step=None`` the
    paper's :math:`\bar\delta = \hat D_s(x) + \mu_{s,t}(\partial_s\hat\delta_{s,t} + \nabla_x\hat\delta_{s,t}\cdot b_s)(x)`.

    ``projection``: ``"clip"`` (default), ``"sparsemax"`` or ``"mse"``; ``step``: the step length
    η > 0 in interpolation time, or None; ``boundary`` and ``t_max``: the policy for the singular
    factor near ``t = 1`` when ``step`` is None.
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
        step: float | None = 0.05,
        boundary: str = "hold",
        t_max: float = 0.99,
    ) -> None:
        super().__init__(interpolant, schedule, teacher=teacher, pairs=pairs, projection=projection, jvp=jvp)
        if step is not None and not (math.isfinite(step) and step > 0):
            raise ValueError(
                f"step must be a positive finite step length in interpolation time (e.g. 0.05), or None for the "
                f"paper's target with a boundary policy; got {step}"
            )
        if boundary not in BOUNDARY_POLICIES:
            raise ValueError(f"boundary must be one of {BOUNDARY_POLICIES}, got {boundary!r}")
        if not 0.0 < t_max < 1.0:
            raise ValueError(f"t_max must lie in (0, 1) because the Eulerian factor is infinite at t = 1; got {t_max}")
        if t_max <= self.jvp.margin:
            raise ValueError(f"t_max = {t_max} must exceed the JVP backend's margin {self.jvp.margin}")
        self.step = None if step is None else float(step)
        self.boundary = boundary
        self.t_max = float(t_max)

    def student_times(
        self, s: Float[Tensor, " b"], t: Float[Tensor, " b"]
    ) -> tuple[Float[Tensor, " b"], Float[Tensor, " b"]]:
        if self.step is None and self.boundary == "cap":
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
        weight = None
        if self.step is None:  # the paper's target: t capped at t_max, rows beyond it per `boundary`
            weight = (t <= self.t_max).to(x.dtype) if self.boundary == "drop" else None
            t = t.clamp(max=self.t_max)
        s = torch.minimum(s, t)
        # a finite-difference pass must not see s < 0: forward stencil within the margin of 0
        shift = (s < self.jvp.margin).to(s.dtype) if self.jvp.margin > 0 else None

        d_s = self.teacher.probs(student, x, s)  # D̂_s(x)  [b, L, V]
        b_s = self.interpolant.velocity_from_denoiser(x, s, space.embed(d_s))  # b_s(x) in the state space  [b, L, D]

        def probs_in_s_x(ss: Tensor, xx: Tensor) -> Tensor:
            return delta_probs(student, xx, ss, t)

        current, transport = self.jvp(probs_in_s_x, (s, x), (torch.ones_like(s), b_s), row_shift=shift)  # δ̂_{s,t}(x), (∂_s + b_s·∇_x) δ̂_{s,t}(x)
        mu = eulerian_factor(self.interpolant, s, t)  # [b]; 0 at s = t, inf at t = 1
        mu = torch.where(s < t, mu, torch.zeros_like(mu))
        if self.step is None:
            target = d_s + expand_time(mu, d_s) * transport
        else:
            lam = expand_time((self.step / mu).clamp(max=1.0), d_s)  # min(1, η/μ)  [b, 1, 1]
            length = expand_time(mu.clamp(max=self.step), d_s)  # min(μ, η)  [b, 1, 1]
            target = current + lam * (d_s - current) + length * transport
        return Target(probs=target, weight=weight, n_jvp=1, n_forward=1)

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
``step``.

All lengths here are in **model time τ** (what the network sees and the time-pair law draws):
with :math:`\tau' = d\tau/dt` at ``s``, the factor in τ units is :math:`\mu_\tau = \mu\,\tau'(s)` and
the transport term per unit τ is :math:`(\partial_s + b_s\cdot\nabla_x)\hat\delta/\tau'(s)`. Under the
identity schedule τ = t and nothing changes; under the decoding-error schedule a step in t would
mean very different things at different times (``t = 0.99`` lies far past ``τ = 0.99`` there).

``step = η`` (default 0.05, in τ units): **a bounded step along the residual.** Divide the
equation by μ,

.. math::
    R_{s,t}(x) = \frac{\hat D_s(x) - \hat\delta_{s,t}(x)}{\mu_{s,t}}
        + \big(\partial_s + b_s\cdot\nabla_x\big)\hat\delta_{s,t}(x),

which is the Eulerian PDE in flow-map form, :math:`(\partial_s + b_s\cdot\nabla_x)X_{s,t}`, divided
by :math:`\alpha_t(\rho_t-\rho_s)`: finite everywhere, and at ``t = 1`` (:math:`1/\mu = 0`) just the
transport term. The target moves the student's own output a step of τ-length
:math:`\min(\mu_\tau, \eta)` along it:

.. math::
    \bar\delta = \hat\delta_{s,t} + \lambda\,(\hat D_s - \hat\delta_{s,t}) + \lambda\,\mu\,
        (\partial_s + b_s\cdot\nabla_x)\hat\delta_{s,t},
    \qquad \lambda = \min(1, \eta/\mu_\tau).

That is, :math:`\bar\delta - \hat\delta = \lambda\,(\bar\delta_{\text{paper}} - \hat\delta)`: rows with
:math:`\mu_\tau \le \eta` get exactly the paper's target, and every other off-diagonal row is
**down-weighted by** :math:`\min(1, \eta/\mu_\tau)` (for the CE gradient in the logits,
:math:`\hat\delta - \bar\delta`, this is the paper's residual with that row weight; it "equals the
paper's gradient" only up to this weight, and only without projection: a clip/sparsemax policy
acts on the shortened target, not on the paper's). When variants are compared, say so. The fixed
point is the same (``R = 0``), no time is capped, and the target stays close to the simplex
because the step is short. Smaller η is steadier and slower. On the V=4, L=3 toy law it is what
makes the one-step map learn (``tests/test_distill_learning.py``,
``benchmarks/results/distillers.md``).

``step = None``: **the paper's target** :math:`\hat D_s + \mu(\partial_s + b_s\cdot\nabla_x)\hat\delta`,
with rows ``τ_t > tau_max`` treated by the named option ``boundary``:

``"hold"`` (default)
    the target is computed at ``(s, t(tau_max))`` and the student at ``(s, t)`` is fitted to it:
    trains the one-step map directly, with a bias
    :math:`\delta_{s,t} - \delta_{s,t_\max}` (small when the flow has settled by ``t_max``).
``"cap"``
    the row is moved to ``(s, min(t, t(tau_max)))``: student *and* target at the capped time.
    Unbiased for the times it trains, but :math:`\hat\delta_{\cdot,1}` (the one-step map) is learned
    only by the network's continuity in ``t``.
``"drop"``
    rows with ``τ_t > tau_max`` get zero off-diagonal weight (no signal near the data end at all).

``tau_max`` (default 0.99, model time) bounds the factor by μ_{s,t(tau_max)}; larger values
amplify JVP and teacher errors by μ. ``boundary`` and ``tau_max`` are used only when ``step`` is
None.

The JVP is taken in ``(τ_s, x)`` along ``(τ'(s), b_s)``. With a finite-difference backend rows
whose stencil would leave [0, 1] in τ use a one-sided stencil (``row_shift``).
"""

from __future__ import annotations

import math

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
    :math:`\bar\delta = \hat\delta + \min(1, \eta/\mu_\tau)(\bar\delta_{\text{paper}} - \hat\delta)`;
    with ``step=None`` the paper's
    :math:`\bar\delta = \hat D_s(x) + \mu_{s,t}(\partial_s\hat\delta_{s,t} + \nabla_x\hat\delta_{s,t}\cdot b_s)(x)`.

    ``projection``: ``"clip"`` (default), ``"sparsemax"`` or ``"mse"``; ``step``: the step length
    η > 0 in model time τ, or None; ``boundary`` and ``tau_max`` (model time): the policy for the
    singular factor near ``t = 1`` when ``step`` is None.
    """

    name = "eulerian"

    def __init__(
        self,
        flow: Flow,
        teacher: Denoiser | None = None,
        pairs: TimePairSampler | None = None,
        projection: str = "clip",
        jvp: JVPBackend | None = None,
        step: float | None = 0.05,
        boundary: str = "hold",
        tau_max: float = 0.99,
    ) -> None:
        super().__init__(flow, teacher=teacher, pairs=pairs, projection=projection, jvp=jvp)
        if step is not None and not (math.isfinite(step) and step > 0):
            raise ValueError(
                f"step must be a positive finite step length in model time τ (e.g. 0.05), or None for the "
                f"paper's target with a boundary policy; got {step}"
            )
        if boundary not in BOUNDARY_POLICIES:
            raise ValueError(f"boundary must be one of {BOUNDARY_POLICIES}, got {boundary!r}")
        if not 0.0 < tau_max < 1.0:
            raise ValueError(f"tau_max must lie in (0, 1) because the Eulerian factor is infinite at τ = 1; got {tau_max}")
        if tau_max <= self.jvp.margin:
            raise ValueError(f"tau_max = {tau_max} must exceed the JVP backend's margin {self.jvp.margin}")
        self.step = None if step is None else float(step)
        self.boundary = boundary
        self.tau_max = float(tau_max)

    def _capped(self, rows: TimePairs) -> tuple[Tensor, Tensor, Tensor]:
        """(t, tau_t) with τ_t capped at tau_max, and the mask of the rows that were capped."""
        over = rows.tau_t > self.tau_max
        tau_cap = torch.full_like(rows.tau_t, self.tau_max)
        t_cap = self.flow.schedule.t_of_tau(tau_cap)
        return torch.where(over, t_cap, rows.t), torch.where(over, tau_cap, rows.tau_t), over

    def student_times(self, rows: TimePairs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if self.step is None and self.boundary == "cap":
            t, tau_t, _ = self._capped(rows)
            return torch.minimum(rows.s, t), t, torch.minimum(rows.tau_s, tau_t), tau_t
        return rows.s, rows.t, rows.tau_s, rows.tau_t

    def target(self, flow_map: FlowMap, x: Float[Tensor, "b L D"], rows: TimePairs) -> Target:
        s, t, tau_s, tau_t = rows.s, rows.t, rows.tau_s, rows.tau_t
        weight = None
        if self.step is None:  # the paper's target: τ_t capped at tau_max, rows beyond it per `boundary`
            t, tau_t, over = self._capped(rows)
            weight = (~over).to(x.dtype) if self.boundary == "drop" else None
        s, tau_s = torch.minimum(s, t), torch.minimum(tau_s, tau_t)
        slope = self.flow.schedule.dtau_dt(s).to(tau_s.dtype)  # τ'(s)  [b]

        d_s = self.teacher_probs(flow_map, x, s, tau_s)  # D̂_s(x)  [b, L, V]
        b_s = self.flow.interpolant.velocity_from_denoiser(x, s, flow_map.space.embed(d_s))  # b_s(x)  [b, L, D]

        shift = None
        if self.jvp.margin > 0:  # one-sided stencils where a central one would leave [0, 1] in τ
            reach = 2.0 * self.jvp.margin * slope
            shift = (tau_s < reach).to(tau_s.dtype) - (tau_s + reach > 1.0).to(tau_s.dtype)

        def probs_in_tau_x(ts: Tensor, xx: Tensor) -> Tensor:
            return flow_map.delta.probs(xx, self.flow.t_of_tau_differentiable(ts), t, tau_s=ts, tau_t=tau_t)

        # δ̂_{s,t}(x) and (∂_s + b_s·∇_x) δ̂_{s,t}(x) = τ'(s) ∂_τs δ̂ + ∇_x δ̂ · b_s
        current, transport = self.jvp(probs_in_tau_x, (tau_s, x), (slope, b_s), row_shift=shift)
        mu = eulerian_factor(self.flow.interpolant, s, t)  # [b]; 0 at s = t, inf at t = 1
        mu = torch.where(s < t, mu, torch.zeros_like(mu)).to(d_s.dtype)
        if self.step is None:
            target = d_s + expand_time(mu, d_s) * transport
        else:
            mu_tau = mu * slope.to(mu.dtype)  # the factor in τ units
            lam = (self.step / mu_tau).clamp(max=1.0)  # min(1, η/μ_τ)  [b]
            length = torch.minimum(mu, self.step / slope.to(mu.dtype))  # λ·μ = min(μ, η/τ'(s)), finite at t = 1
            target = current + expand_time(lam, d_s) * (d_s - current) + expand_time(length, d_s) * transport
        return Target(probs=target, weight=weight, n_jvp=1, n_forward=1)

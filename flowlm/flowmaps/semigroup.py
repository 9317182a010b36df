r"""Semigroup distillation: :math:`X_{s,t} = X_{u,t}\circ X_{s,u}` written on δ.

For ``s ≤ u ≤ t`` the exact two-time denoiser satisfies (DESIGN §1)

.. math::
    \delta_{s,t}(x) = w\,\delta_{s,u}(x) + (1 - w)\,\delta_{u,t}(X_{s,u}(x)),\qquad
    w = \frac{\rho_u - \rho_s}{\rho_t - \rho_s}
      = \frac{\alpha_t(\beta_u\alpha_s - \alpha_u\beta_s)}{\alpha_u(\beta_t\alpha_s - \alpha_t\beta_s)}

(Linear: :math:`w = (1-t)(u-s)/((1-u)(t-s))`; ``w = 0`` at ``t = 1``, ``w → 0`` as ``u → s``).
The target :math:`\bar\delta` is the right-hand side with the student's δ̂ and its flow map
:math:`\hat X_{s,u}`. Cost: two extra student passes, no JVP. The target is a convex
combination of two points of the simplex, so no projection is needed.
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

__all__ = ["SemigroupDistiller", "safe_semigroup_weight"]


def safe_semigroup_weight(
    interpolant: Interpolant, s: Float[Tensor, " b"], u: Float[Tensor, " b"], t: Float[Tensor, " b"]
) -> Float[Tensor, " b"]:
    """``interpolant.semigroup_weight(s, u, t)`` with the 0/0 of a zero gap (s = t) replaced by 1/2."""
    w = interpolant.semigroup_weight(s, u, t)
    return torch.where(torch.isfinite(w) & (t > s), w, torch.full_like(w, 0.5)).clamp(0.0, 1.0)


class SemigroupDistiller(Distiller):
    r"""Target :math:`\bar\delta = w\,\hat\delta_{s,u}(x) + (1-w)\,\hat\delta_{u,t}(\hat X_{s,u}(x))`."""

    name = "semigroup"

    def __init__(
        self,
        interpolant: Interpolant,
        schedule: TimeSchedule,
        teacher: Denoiser | None = None,
        pairs: TimePairSampler | None = None,
        jvp: JVPBackend | None = None,
    ) -> None:
        super().__init__(interpolant, schedule, teacher=teacher, pairs=pairs, projection=None, jvp=jvp)

    def target(
        self,
        student: TwoTimeDenoiser,
        x: Float[Tensor, "b L D"],
        s: Float[Tensor, " b"],
        u: Float[Tensor, " b"],
        t: Float[Tensor, " b"],
        space: StateSpace,
    ) -> Target:
        p_su = delta_probs(student, x, s, u)  # δ̂_{s,u}(x)            [b, L, V]
        x_u = self.interpolant.flow_map_from_delta(x, s, u, space.embed(p_su))  # X̂_{s,u}(x)  [b, L, D]
        p_ut = delta_probs(student, x_u, u, t)  # δ̂_{u,t}(X̂_{s,u}(x))   [b, L, V]
        w = expand_time(safe_semigroup_weight(self.interpolant, s, u, t), p_su)  # [b, 1, 1]
        return Target(probs=w * p_su + (1.0 - w) * p_ut, n_jvp=0, n_forward=2)

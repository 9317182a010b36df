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
from flowlm.flow import Flow
from flowlm.flowmaps.distiller import Distiller, Target
from flowlm.flowmaps.time_pairs import TimePairs, TimePairSampler
from flowlm.flowmaps.two_time import FlowMap
from flowlm.interpolants.base import Interpolant, expand_time

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

    def __init__(self, flow: Flow, teacher: Denoiser | None = None, pairs: TimePairSampler | None = None) -> None:
        super().__init__(flow, teacher=teacher, pairs=pairs, projection=None, jvp=None)

    def target(self, flow_map: FlowMap, x: Float[Tensor, "b L D"], rows: TimePairs) -> Target:
        s, u, t = rows.s, rows.u, rows.t
        x_u, p_su = flow_map.X(x, s, u, tau_s=rows.tau_s, tau_t=rows.tau_u, return_delta=True)  # X̂_{s,u}(x), δ̂_{s,u}(x)
        p_ut = flow_map.delta.probs(x_u, u, t, tau_s=rows.tau_u, tau_t=rows.tau_t)  # δ̂_{u,t}(X̂_{s,u}(x))  [b, L, V]
        w = expand_time(safe_semigroup_weight(self.flow.interpolant, s, u, t), p_su)  # [b, 1, 1]
        return Target(probs=w * p_su + (1.0 - w) * p_ut, n_jvp=0, n_forward=2)

r"""The Gaussian evidence shared by every exact oracle.

Given a clean one-hot token :math:`x_1 = e_v`, the interpolant gives
:math:`x_t \mid x_1 \sim \mathcal N(\beta x_1, \alpha^2 I)`, so

.. math::
    \log p(x_t = x \mid x_1 = e_v) = -\frac{\lVert x - \beta e_v\rVert^2}{2\alpha^2}
    = \frac{\beta}{\alpha^2}\,x_v + (\text{terms free of } v)

(``‖e_v‖ = 1`` for every v). Bayes' rule then weights each candidate by
:math:`\exp(\kappa\cdot\text{score})` with evidence scale :math:`\kappa(t) = \beta/\alpha^2`
(0 at t = 0, ∞ at t = 1).

At t = 1 (α = 0) the posterior is the limit κ → ∞: all mass on the highest-scoring candidates,
ties broken by the prior. It is represented with finite numbers by capping κ at ``1/eps`` of the
dtype and shifting the scores so the best one is 0 (a softmax-invariant shift); beyond the cap
the posterior differs from the exact one only for score gaps below the dtype's resolution.
"""

from __future__ import annotations

import math
import typing

import torch
from jaxtyping import Float
from torch import Tensor

from flowlm.interpolants.base import Interpolant

__all__ = ["evidence_scale", "log_floor", "tempered_scores"]


def log_floor(dtype: torch.dtype) -> float:
    """log of the smallest positive normal number of ``dtype`` (float64: ≈ −708): the finite
    stand-in for log 0 in oracle logits."""
    return math.log(torch.finfo(dtype).tiny)


@typing.no_type_check  # hot path: called per ODE evaluation
def evidence_scale(interpolant: Interpolant, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """κ(t) = β/α², capped at 1/eps(dtype) (the cap is reached at and just below t = 1)."""
    a, b = interpolant.alpha(t), interpolant.beta(t)
    cap = 1.0 / torch.finfo(t.dtype).eps
    return (b / (a * a)).clamp(max=cap)


@typing.no_type_check  # hot path: called per ODE evaluation
def tempered_scores(
    scores: Float[Tensor, "B *rest K"], scale: Float[Tensor, "B *scale"]
) -> Float[Tensor, "B *rest K"]:
    """κ·(score − max score) over the last axis, clamped below at 3·log_floor (a value whose
    softmax weight against the best candidate is exactly 0 in the dtype): finite, ≤ 0. ``scale`` is
    ``[B]`` or a prefix of the score's leading axes (``[B, L]`` per-token scales for ``[B, L, V]`` scores)."""
    shifted = scores - scores.amax(dim=-1, keepdim=True)  # [..., K], <= 0
    kappa = scale.reshape(scale.shape + (1,) * (scores.ndim - scale.ndim))
    return (kappa * shifted).clamp(min=3.0 * log_floor(scores.dtype))

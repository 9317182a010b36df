r"""Projection policies for targets that can leave the probability simplex.

The semigroup target is a convex combination of two-time denoiser outputs, hence always on
the simplex. The Lagrangian and Eulerian targets add a derivative term,
:math:`\bar\delta = D + c\cdot\partial\hat\delta`, whose entries can be negative or exceed 1
(the entries still sum to 1 because :math:`\partial\hat\delta` sums to 0). Cross-entropy needs a
distribution, so the distiller takes a named policy:

``"clip"``
    :math:`p = \max(\bar\delta, 0)/\sum\max(\bar\delta, 0)`, then CE. Cheap; biased wherever the
    target leaves the simplex (it adds mass to the remaining entries proportionally).
``"sparsemax"``
    :math:`p = \arg\min_{q\in\Delta}\lVert q - \bar\delta\rVert_2` (Euclidean projection,
    sort-based, O(V log V)), then CE. The closest distribution; shifts all active entries by one
    constant rather than rescaling them; also biased off the simplex.
``"mse"``
    no projection: :math:`\sum_v(\hat\delta_v - \bar\delta_v)^2` on the probabilities. Unbiased
    fixed point (the loss is zero exactly at the target) but a weaker, saturating gradient when
    the softmax is confident, and a different loss scale from the diagonal CE.

Every policy leaves a target that is already on the simplex unchanged (for "clip" and
"sparsemax"), so all three share the exact flow map as a fixed point.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

__all__ = ["PROJECTIONS", "clip_to_simplex", "sparsemax_projection", "soft_cross_entropy", "target_loss"]

PROJECTIONS = ("clip", "mse", "sparsemax")


def clip_to_simplex(p: Float[Tensor, "*batch V"]) -> Float[Tensor, "*batch V"]:
    """max(p, 0) renormalized over the last dimension (uniform where nothing positive is left)."""
    q = p.clamp(min=0.0)
    z = q.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(q, 1.0 / q.shape[-1])
    return torch.where(z > 0, q / z.clamp(min=torch.finfo(q.dtype).tiny), uniform)


def sparsemax_projection(p: Float[Tensor, "*batch V"]) -> Float[Tensor, "*batch V"]:
    r"""Euclidean projection onto the simplex along the last dimension:
    :math:`\max(p - \theta, 0)` with θ chosen so the result sums to 1 (sort-based, exact)."""
    V = p.shape[-1]
    z, _ = torch.sort(p, dim=-1, descending=True)  # [..., V]
    css = z.cumsum(dim=-1) - 1.0  # [..., V]
    k = torch.arange(1, V + 1, device=p.device, dtype=p.dtype)  # [V]
    support = (z - css / k) > 0  # [..., V]; a prefix of True
    n = support.sum(dim=-1, keepdim=True).clamp(min=1)  # [..., 1]
    theta = css.gather(-1, n - 1) / n.to(p.dtype)  # [..., 1]
    return (p - theta).clamp(min=0.0)


def _position_mean(values: Tensor, positions: Tensor | None) -> Tensor:
    """Mean over positions ``[B, L] → [B]``, or over the positions where ``positions`` is True
    (rows with none count 0)."""
    if positions is None:
        return values.mean(dim=-1)
    w = positions.to(values.dtype)
    return (values * w).sum(dim=-1) / w.sum(dim=-1).clamp(min=1.0)


def soft_cross_entropy(
    logits: Float[Tensor, "B L V"], target: Float[Tensor, "B L V"], positions: Bool[Tensor, "B L"] | None = None
) -> Float[Tensor, " B"]:
    """−Σ_v target_v · log softmax(logits)_v, mean over positions (over the True ``positions`` when
    given, e.g. the free ones of a prompt): one value per sequence."""
    logp = F.log_softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=-1)
    return _position_mean(-(target.to(logp.dtype) * logp).sum(dim=-1), positions)


def target_loss(
    logits: Float[Tensor, "B L V"], target: Float[Tensor, "B L V"], projection: str | None,
    positions: Bool[Tensor, "B L"] | None = None,
) -> Float[Tensor, " B"]:
    """Per-sequence loss of the student's logits against a stop-gradient target (mean over the
    True ``positions`` when given).

    ``projection=None`` means the target is known to lie on the simplex (plain soft CE).
    """
    if projection is None:
        return soft_cross_entropy(logits, target, positions)
    if projection == "clip":
        return soft_cross_entropy(logits, clip_to_simplex(target), positions)
    if projection == "sparsemax":
        return soft_cross_entropy(logits, sparsemax_projection(target), positions)
    if projection == "mse":
        probs = torch.softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=-1)
        return _position_mean((probs - target.to(probs.dtype)).square().sum(dim=-1), positions)
    raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")

r"""The denoiser abstraction and the FLM objective.

A *denoiser* maps a noisy state and an interpolation time to per-token logits:
``den(x: [B, L, D], t: [B]) -> logits [B, L, V]``; ``softmax(logits)`` estimates
:math:`D_t(x) = \mathbb E[x_1 \mid x_t = x]`, a point on the probability simplex per token.
Exact oracles (:mod:`flowlm.oracles`) and trained networks both satisfy this protocol.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from flowlm.interpolants.base import Interpolant
from flowlm.states import StateSpace

__all__ = ["Denoiser", "softcap", "flm_loss", "velocity", "denoised_probs", "probs_from_logits"]


@runtime_checkable
class Denoiser(Protocol):
    """``den(x, t) -> logits`` with ``x: [B, L, V]``, ``t: [B]`` (interpolation time)."""

    vocab_size: int

    def __call__(self, x: Float[Tensor, "B L D"], t: Float[Tensor, " B"]) -> Float[Tensor, "B L V"]: ...


def softcap(z: Float[Tensor, "*shape"], cap: float | None) -> Float[Tensor, "*shape"]:
    """Smooth logit cap ``cap·tanh(z/cap)`` (identity when ``cap`` is None or 0)."""
    if not cap:
        return z
    return cap * torch.tanh(z / cap)


def flm_loss(
    logits: Float[Tensor, "B L V"],
    tokens: Int[Tensor, "B L"],
    mask: Bool[Tensor, "B L"] | None = None,
) -> Float[Tensor, ""]:
    """FLM loss: token-level cross-entropy against the clean token, mean over non-padding tokens.

    No time weighting. ``mask`` marks the tokens that count (True = real token).
    """
    work = torch.promote_types(logits.dtype, torch.float32)  # bf16 → float32; float64 stays exact
    ce = F.cross_entropy(logits.to(work).flatten(0, 1), tokens.flatten(), reduction="none").view(tokens.shape)
    if mask is None:
        return ce.mean()
    n = mask.sum()
    if not torch.compiler.is_compiling() and int(n) == 0:
        raise ValueError("flm_loss: the mask selects no token; every sequence is padding")
    return (ce * mask).sum() / n


def probs_from_logits(logits: Float[Tensor, "*shape V"], dtype: torch.dtype) -> Float[Tensor, "*shape V"]:
    """softmax over the last axis, computed in ``logits.dtype`` promoted to at least float32
    (so bf16 logits are safe and float64 oracles stay exact), returned in ``dtype``."""
    work = torch.promote_types(logits.dtype, torch.float32)
    return torch.softmax(logits.to(work), dim=-1).to(dtype)


def denoised_probs(den: Denoiser, x: Float[Tensor, "B L D"], t: Float[Tensor, " B"]) -> Float[Tensor, "B L V"]:
    """softmax of the denoiser's logits: D_t(x) on the simplex, in the dtype of ``x``. ``x`` is a
    state of any :class:`~flowlm.states.StateSpace` (``D = V`` one-hot, ``D = d`` projected)."""
    return probs_from_logits(den(x, t), x.dtype)


def velocity(
    den: Denoiser,
    interpolant: Interpolant,
    x: Float[Tensor, "B L D"],
    t: Float[Tensor, " B"],
    space: StateSpace | None = None,
) -> Float[Tensor, "B L D"]:
    """b_t(x) = (α'/α)·x + α·ρ'·embed(D_t(x)) (Linear, one-hot: (D − x)/(1 − t)). Requires t < 1."""
    probs = denoised_probs(den, x, t)
    return interpolant.velocity_from_denoiser(x, t, space.embed(probs) if space is not None else probs)

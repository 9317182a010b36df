r"""The denoiser abstractions and the FLM objective.

A *denoiser* maps a noisy state and an interpolation time to per-token logits; their softmax
estimates :math:`D_t(x) = \mathbb E[x_1 \mid x_t = x]`, a point on the probability simplex per
token. A *two-time denoiser* does the same for a pair of times: its softmax estimates
:math:`\delta_{s,t}(x)` (DESIGN §1; the flow map is built from it by
:class:`flowlm.flowmaps.FlowMap`).

Both are abstract-then-final base classes (equinox style): a subclass implements only
:meth:`Denoiser.logits` (resp. :meth:`TwoTimeDenoiser.logits`); ``probs`` (the softmax, or its
embedding in a state space) is concrete and is the one way the library reads a denoiser.
Network wrappers override ``probs`` with a chunked head that never forms ``[B, L, V]`` logits
(:mod:`flowlm.nets.wrappers`). Exact oracles (:mod:`flowlm.oracles`), the toy MLPs and the
network wrappers are all subclasses, so each stands in for the others.

Shapes: ``x: [B, L, D]`` (a state of a :class:`~flowlm.states.StateSpace`, ``D = V`` one-hot),
times ``[B]`` (interpolation time). A component that already holds the model time τ passes it
on as ``tau=`` (networks use it instead of converting ``t``; exact oracles ignore it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from flowlm.flow import Flow
from flowlm.states import StateSpace

__all__ = ["Denoiser", "TwoTimeDenoiser", "softcap", "softmax_probs", "flm_loss", "velocity"]


def softmax_probs(logits: Float[Tensor, "*shape V"], dtype: torch.dtype) -> Float[Tensor, "*shape V"]:
    """softmax over the last axis, computed in ``logits.dtype`` promoted to at least float32
    (bf16 logits are safe, float64 oracles stay exact), returned in ``dtype``."""
    work = torch.promote_types(logits.dtype, torch.float32)
    return torch.softmax(logits.to(work), dim=-1).to(dtype)


def _maybe_embed(probs: Tensor, space: StateSpace | None) -> Tensor:
    return probs if space is None else space.embed(probs)


class Denoiser(ABC):
    """``den.logits(x, t) -> [B, L, V]``; ``den(x, t)`` is the same call.

    Attributes a subclass sets: ``vocab_size`` (V) and, when it was built for one path,
    ``interpolant`` (oracles) or ``flow`` (networks), so that :meth:`flowlm.Flow.check` can refuse
    it on another flow.
    """

    vocab_size: int

    @abstractmethod
    def logits(
        self, x: Float[Tensor, "B L D"], t: Float[Tensor, "B *tokens"], *, tau: Float[Tensor, "B *tokens"] | None = None
    ) -> Float[Tensor, "B L V"]:
        """Logits of D_t(x); ``tau`` = τ(t) when the caller already holds it."""

    def __call__(self, x: Tensor, t: Tensor, *, tau: Tensor | None = None) -> Tensor:
        return self.logits(x, t, tau=tau)

    def probs(
        self,
        x: Float[Tensor, "B L D"],
        t: Float[Tensor, "B *tokens"],
        *,
        tau: Float[Tensor, "B *tokens"] | None = None,
        space: StateSpace | None = None,
    ) -> Float[Tensor, "B L K"]:
        """D_t(x) = softmax(logits) ``[B, L, V]`` in the dtype of ``x``, or ``space.embed`` of it
        ``[B, L, D]`` (what a state update needs)."""
        return _maybe_embed(softmax_probs(self.logits(x, t, tau=tau), x.dtype), space)


class TwoTimeDenoiser(ABC):
    """``delta.logits(x, s, t) -> [B, L, V]`` (s ≤ t, interpolation times); ``delta(x, s, t)`` is the
    same call. Attributes as for :class:`Denoiser`."""

    vocab_size: int

    @abstractmethod
    def logits(
        self,
        x: Float[Tensor, "B L D"],
        s: Float[Tensor, "B *tokens"],
        t: Float[Tensor, "B *tokens"],
        *,
        tau_s: Float[Tensor, "B *tokens"] | None = None,
        tau_t: Float[Tensor, "B *tokens"] | None = None,
    ) -> Float[Tensor, "B L V"]:
        """Logits of δ_{s,t}(x); ``tau_s, tau_t`` = τ(s), τ(t) when the caller holds them."""

    def __call__(
        self, x: Tensor, s: Tensor, t: Tensor, *, tau_s: Tensor | None = None, tau_t: Tensor | None = None
    ) -> Tensor:
        return self.logits(x, s, t, tau_s=tau_s, tau_t=tau_t)

    def probs(
        self,
        x: Float[Tensor, "B L D"],
        s: Float[Tensor, "B *tokens"],
        t: Float[Tensor, "B *tokens"],
        *,
        tau_s: Float[Tensor, "B *tokens"] | None = None,
        tau_t: Float[Tensor, "B *tokens"] | None = None,
        space: StateSpace | None = None,
    ) -> Float[Tensor, "B L K"]:
        """δ_{s,t}(x) = softmax(logits) ``[B, L, V]`` in the dtype of ``x``, or ``space.embed`` of it."""
        return _maybe_embed(softmax_probs(self.logits(x, s, t, tau_s=tau_s, tau_t=tau_t), x.dtype), space)


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


def velocity(
    den: Denoiser,
    flow: Flow,
    x: Float[Tensor, "B L D"],
    t: Float[Tensor, "B *tokens"],
    space: StateSpace | None = None,
) -> Float[Tensor, "B L D"]:
    """b_t(x) = (α'/α)·x + α·ρ'·embed(D_t(x)) (Linear, one-hot: (D − x)/(1 − t)). Requires t < 1."""
    flow.check(den, "denoiser")
    return flow.interpolant.velocity_from_denoiser(x, t, den.probs(x, t, space=space))

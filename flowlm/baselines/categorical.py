r"""Categorical draws in float64, temperature and nucleus (top-p) warping.

Draws use the exponential race (equivalent to Gumbel-max): with :math:`E_v\sim\mathrm{Exp}(1)` i.i.d.,
:math:`\arg\max_v p_v/E_v` is distributed as :math:`p`. It runs in float64 (float32 draws visibly
change the Gen PPL of a masked diffusion model, REFERENCE.md §2) and never picks a zero-probability
entry (``0/E = 0``).

Warping, in the order applied: temperature :math:`T` (``softmax(ℓ/T)``; ``T = 0`` is the argmax,
ties to the lowest id), then top-p: keep the smallest set of most probable tokens whose mass is
:math:`\ge p` (the token that crosses ``p`` is kept; ties broken by lower id first), renormalize.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["sample_categorical", "top_p_filter", "warp_logits"]


def sample_categorical(
    probs: Float[Tensor, "*batch K"], generator: torch.Generator | None = None
) -> Int[Tensor, "*batch"]:
    """One draw per row of ``probs`` (rows need not be normalized; nonnegative, not all zero), in float64."""
    p = probs.to(torch.float64)
    race = torch.empty_like(p).exponential_(generator=generator)  # E ~ Exp(1), float64
    return (p / race).argmax(dim=-1)


def top_p_filter(probs: Float[Tensor, "*batch K"], top_p: float) -> Float[Tensor, "*batch K"]:
    """Nucleus filter: zero all but the smallest set of most probable entries with mass ≥ ``top_p``, renormalize.

    ``top_p = 1`` returns ``probs`` normalized. Sorting is stable (equal probabilities: lower id first).
    """
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    p = probs / probs.sum(dim=-1, keepdim=True)
    if top_p >= 1.0:
        return p
    sorted_p, order = torch.sort(p, dim=-1, descending=True, stable=True)
    mass_before = sorted_p.cumsum(dim=-1) - sorted_p  # mass of the strictly more probable entries
    keep_sorted = mass_before < top_p  # the first entry is always kept
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    p = torch.where(keep, p, torch.zeros_like(p))
    return p / p.sum(dim=-1, keepdim=True)


def warp_logits(
    logits: Float[Tensor, "*batch K"], temperature: float = 1.0, top_p: float = 1.0
) -> Float[Tensor, "*batch K"]:
    """Sampling probabilities (float64) from logits: softmax(ℓ/T), then :func:`top_p_filter`.

    ``temperature = 0`` gives the one-hot of the argmax (greedy decoding). ``-inf`` logits stay at probability 0.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    z = logits.to(torch.float64)
    if temperature == 0:
        return torch.zeros_like(z).scatter_(-1, z.argmax(dim=-1, keepdim=True), 1.0)
    p = torch.softmax(z / temperature, dim=-1)
    return top_p_filter(p, top_p)

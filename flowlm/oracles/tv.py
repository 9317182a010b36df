"""Sample quality against an exact law: total variation over all V^L sequences."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

__all__ = ["total_variation"]


def total_variation(tokens: Int[Tensor, "n L"], law: Any) -> float:
    """½ Σ_x |p̂(x) − p(x)| over all ``V**L`` sequences, with p̂ the empirical law of ``tokens`` and
    p the exact law (an oracle with ``vocab_size``, ``length`` and ``log_prob``, e.g.
    :class:`~flowlm.oracles.FiniteSequences` or :class:`~flowlm.oracles.FactorizedCategorical`).
    Sampling noise alone gives about ``½·sqrt(V**L / n)`` for a spread-out law."""
    V, L = int(law.vocab_size), int(law.length)
    if tokens.ndim != 2 or tokens.shape[1] != L:
        raise ValueError(f"tokens must have shape [n, {L}], got {tuple(tokens.shape)}")
    if V**L > 2**24:
        raise ValueError(f"V**L = {V}**{L} sequences is too many to enumerate; use a smaller toy law")
    place = V ** torch.arange(L - 1, -1, -1, device=tokens.device)  # [L]
    codes = (tokens.long() * place).sum(-1)  # [n]
    grids = torch.meshgrid(*[torch.arange(V, device=tokens.device)] * L, indexing="ij")
    every = torch.stack([g.reshape(-1) for g in grids], dim=-1)  # [V**L, L], lexicographic = code order
    p = law.log_prob(every).exp().to(torch.float64)  # [V**L]
    emp = torch.bincount(codes, minlength=V**L).to(torch.float64) / tokens.shape[0]
    return 0.5 * float((emp - p.to(emp.device)).abs().sum())

"""Sample quality against an exact law: total variation over all V^L sequences."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

__all__ = ["all_sequences", "total_variation", "total_variation_to_probs"]


def all_sequences(vocab_size: int, length: int, device: torch.device | str | None = None) -> Int[Tensor, "N L"]:
    """All ``N = V**L`` token sequences ``[N, L]`` in lexicographic order (row index = Σ_l tok_l·V^(L−1−l))."""
    grids = torch.meshgrid(*[torch.arange(vocab_size, device=device)] * length, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=-1)


def total_variation_to_probs(tokens: Int[Tensor, "n L"], law_probs: Tensor, vocab_size: int) -> float:
    """½ Σ_x |p̂(x) − p(x)| with p̂ the empirical law of ``tokens`` and ``law_probs [V**L]`` the exact
    probabilities of :func:`all_sequences` (in its order)."""
    place = vocab_size ** torch.arange(tokens.shape[1] - 1, -1, -1, device=tokens.device)  # [L]
    codes = (tokens.long() * place).sum(-1)  # [n], the row of each sequence in all_sequences
    counts = torch.bincount(codes, minlength=law_probs.numel()).to(torch.float64)
    return 0.5 * float((counts / counts.sum() - law_probs.to(counts)).abs().sum())


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
    p = law.log_prob(all_sequences(V, L, tokens.device)).exp().to(torch.float64)  # [V**L]
    return total_variation_to_probs(tokens, p, V)

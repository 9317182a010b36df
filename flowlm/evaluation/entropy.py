r"""Unigram entropy of samples: a cheap detector of repetitive (mode-collapsed) generations.

For sample ``i`` with token counts :math:`c_{i,v}` over its :math:`n_i` (unmasked) positions,

.. math::
    H_i = -\sum_v \frac{c_{i,v}}{n_i} \log \frac{c_{i,v}}{n_i} \quad \text{(nats)},

so ``0 ≤ H_i ≤ log min(n_i, V)``: 0 for a sample that repeats one token, ``log n`` when all tokens
differ. It depends on the sample length, so compare samples only with real text cut to the same
length and tokenized by the same tokenizer (the reference row of every report does that).
Generative perplexity alone rewards repetition ("the the the ..." scores well); low entropy
exposes it.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = ["unigram_entropy", "mean_unigram_entropy"]


def unigram_entropy(
    tokens: Int[Tensor, "B L"], mask: Bool[Tensor, "B L"] | None = None
) -> Float[Tensor, " B"]:
    """Per-sample unigram entropy ``H_i`` in nats (float64), over positions where ``mask`` is True.

    Raises ``ValueError`` for an empty batch, negative token ids, or a sample with no counted token.
    """
    if tokens.numel() == 0 or tokens.shape[1] == 0:
        raise ValueError(
            f"unigram_entropy: got an empty batch of shape {tuple(tokens.shape)}; pass [batch, length] token ids"
        )
    if int(tokens.min()) < 0:
        raise ValueError("unigram_entropy: token ids must be >= 0 (padding should be masked, not negative)")
    if mask is None:
        mask = torch.ones_like(tokens, dtype=torch.bool)
    if mask.shape != tokens.shape:
        raise ValueError(f"unigram_entropy: mask shape {tuple(mask.shape)} != tokens shape {tuple(tokens.shape)}")
    n = mask.sum(dim=1)  # [B]
    if bool((n == 0).any()):
        raise ValueError(
            f"unigram_entropy: sample {int((n == 0).nonzero()[0])} has no unmasked token; entropy is undefined"
        )
    vocab = int(tokens.max()) + 1
    counts = torch.zeros(tokens.shape[0], vocab, dtype=torch.float64, device=tokens.device)  # [B, V]
    counts.scatter_add_(1, tokens, mask.to(torch.float64))
    p = counts / n.unsqueeze(1)  # [B, V]
    return -torch.special.xlogy(p, p).sum(dim=1)  # [B]


def mean_unigram_entropy(tokens: Int[Tensor, "B L"], mask: Bool[Tensor, "B L"] | None = None) -> float:
    """The batch mean of :func:`unigram_entropy` (nats), as reported in tables."""
    return float(unigram_entropy(tokens, mask).mean())

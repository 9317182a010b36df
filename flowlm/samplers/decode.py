"""Turning final denoiser probabilities into tokens."""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["argmax_decode"]


def argmax_decode(probs: Float[Tensor, "B L V"]) -> Int[Tensor, "B L"]:
    """tokens[b, l] = argmax_v probs[b, l, v] (the paper's decoding; ties → lowest id)."""
    if probs.ndim != 3:
        raise ValueError(f"probs must have shape [batch, length, vocab], got {tuple(probs.shape)}")
    return probs.argmax(dim=-1)

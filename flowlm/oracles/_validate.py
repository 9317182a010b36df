"""Argument checks shared by the oracles (thin wrappers around :mod:`flowlm._checks`)."""

from __future__ import annotations

import contextlib
import contextvars
import typing
from collections.abc import Iterator

import torch
from torch import Tensor

from flowlm._checks import check_finite, check_state, check_times, check_token_ids


_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("flowlm_oracle_inputs_trusted", default=False)


@contextlib.contextmanager
def trusted_inputs() -> Iterator[None]:
    """Skip the per-call checks of oracle inputs inside a solver loop whose inputs were validated
    once at its entry (each check costs host syncs on every ODE evaluation)."""
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


@typing.no_type_check  # called on every oracle evaluation
def check_call(name: str, x: Tensor, t: Tensor, vocab_size: int, length: int | None = None) -> None:
    """``x: [B, L, V]`` finite with V = ``vocab_size`` (and L = ``length``), ``t: [B]`` or ``[B, L]`` in [0, 1]."""
    if _TRUSTED.get():
        return
    check_state(f"{name}: x", x, vocab_size)
    if length is not None and x.shape[1] != length:
        raise ValueError(
            f"{name}: x has sequence length {x.shape[1]} but the data law has length {length}; "
            "oracles are defined for one fixed length"
        )
    check_times(f"{name}: t", t, x.shape[0], x.shape[1])


def check_probability_vector(name: str, p: Tensor, atol: float = 1e-6) -> None:
    """Entries finite, ≥ 0, summing to 1 along the last axis."""
    check_finite(name, p)
    if bool((p < 0).any()):
        raise ValueError(f"{name} has negative entries (min {float(p.min()):.3g}); probabilities must be >= 0")
    total = p.sum(-1)
    if bool(((total - 1).abs() > atol).any()):
        raise ValueError(
            f"{name} must sum to 1 along the last axis (got sums in [{float(total.min()):.6g}, "
            f"{float(total.max()):.6g}]); normalize it, e.g. p / p.sum(-1, keepdim=True)"
        )


def check_tokens(name: str, tokens: Tensor, length: int, vocab_size: int) -> None:
    """Integer ``[n, length]`` with ids in [0, vocab_size)."""
    if not torch.is_tensor(tokens) or tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of token ids, got {getattr(tokens, 'dtype', type(tokens))}")
    if tokens.ndim != 2 or tokens.shape[1] != length:
        raise ValueError(f"{name} must have shape [n, {length}], got {tuple(tokens.shape)}")
    check_token_ids(name, tokens, vocab_size)

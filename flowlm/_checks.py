"""Input validation shared by every public entry point.

Checks are skipped while ``torch.compile`` traces (they would force a host sync and a graph
break); call them at API boundaries, not inside hot loops.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _tracing() -> bool:
    return torch.compiler.is_compiling()


def check_unit_interval(name: str, t: Tensor) -> None:
    """Raise ``ValueError`` unless every entry of ``t`` is finite and inside [0, 1]."""
    if _tracing():
        return
    if not torch.is_tensor(t):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not torch.is_floating_point(t):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}; use t.float()")
    if t.numel() == 0:
        return
    if bool(((t >= 0.0) & (t <= 1.0)).all()):  # one host sync on the good path (NaN compares False)
        return
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf; times must be finite values in [0, 1]")
    lo, hi = float(t.min()), float(t.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1] (0 = noise, 1 = data), got values in [{lo:.6g}, {hi:.6g}]; "
            "clamp or rescale your times"
        )


def check_finite(name: str, x: Tensor) -> None:
    """Raise ``ValueError`` if ``x`` holds a NaN or an inf."""
    if _tracing():
        return
    if not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN/inf value(s); check the inputs that produced it")


def check_state(name: str, x: Tensor, vocab_size: int | None = None) -> None:
    """A sequence state must be ``[B, L, V]`` (V = ``vocab_size`` when given) and finite."""
    if _tracing():
        return
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape [batch, length, vocab], got shape {tuple(x.shape)}")
    if vocab_size is not None and x.shape[-1] != vocab_size:
        raise ValueError(
            f"{name} has vocabulary size {x.shape[-1]} in its last dimension but the model expects "
            f"{vocab_size}; re-encode the data with the model's tokenizer"
        )
    check_finite(name, x)


def check_batch_times(name: str, t: Tensor, batch: int) -> None:
    """Per-sequence times must be ``[B]`` and inside [0, 1]."""
    if _tracing():
        return
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(f"{name} must have shape [{batch}] (one time per sequence), got {tuple(t.shape)}")
    check_unit_interval(name, t)


def check_token_ids(name: str, tokens: Tensor, vocab_size: int) -> None:
    """Raise ``ValueError`` unless every id in ``tokens`` lies in [0, ``vocab_size``)."""
    if _tracing() or tokens.numel() == 0:
        return
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(
            f"{name}: token ids must lie in [0, {vocab_size}), got range [{lo}, {hi}]; "
            "was the data encoded with another tokenizer?"
        )


def check_times(name: str, t: Tensor, batch: int, length: int) -> None:
    """Times must be ``[B]`` (one per sequence) or ``[B, L]`` (one per token) and inside [0, 1]."""
    if _tracing():
        return
    if not torch.is_tensor(t) or t.shape not in ((batch,), (batch, length)):
        raise ValueError(
            f"{name} must have shape [{batch}] (one time per sequence) or [{batch}, {length}] (one time per "
            f"token), got {tuple(t.shape) if torch.is_tensor(t) else type(t).__name__}"
        )
    check_unit_interval(name, t)

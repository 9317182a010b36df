r"""Rotary position embedding (RoPE).

Channel pairs ``(x_i, x_{i+d/2})`` of a query/key at position ``l`` are rotated by the angle
:math:`l\,\omega_i` with :math:`\omega_i = \text{base}^{-2i/d}` ("rotate-half" layout):

.. math::
    \text{rope}(x)_l = x_l \cos(l\omega) + \text{rotate\_half}(x_l)\sin(l\omega),
    \qquad \text{rotate\_half}(a, b) = (-b, a).

Dot products of rotated queries and keys then depend only on the offset between positions.
"""

from __future__ import annotations

import typing

import torch
from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["RotaryEmbedding", "apply_rotary"]


def _rotate_half(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


@typing.no_type_check  # runs inside torch.compile
def apply_rotary(
    x: Float[Tensor, "B H L Dh"], cos: Float[Tensor, "L Dh"], sin: Float[Tensor, "L Dh"]
) -> Float[Tensor, "B H L Dh"]:
    """x·cos + rotate_half(x)·sin (tables broadcast over batch and heads)."""
    return x * cos + _rotate_half(x) * sin


class RotaryEmbedding(nn.Module):
    """Precomputed cos/sin tables for ``max_length`` positions and head width ``head_dim`` (even)."""

    def __init__(self, head_dim: int, max_length: int, base: float = 10_000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {head_dim}; choose width/heads even")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # [Dh/2]
        angles = torch.arange(max_length, dtype=torch.float64)[:, None] * inv_freq[None, :]  # [L, Dh/2]
        angles = torch.cat((angles, angles), dim=-1)  # [L, Dh]
        self.max_length = int(max_length)
        # float64 tables (cast per call); not persistent: recomputed from the config, never checkpointed
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, length: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The ``[length, head_dim]`` cos and sin tables in ``dtype``."""
        if length > self.max_length:
            raise ValueError(
                f"sequence length {length} exceeds the model's max_length {self.max_length}; "
                "build the model with a larger DiTConfig.max_length"
            )
        return self.cos[:length].to(dtype), self.sin[:length].to(dtype)

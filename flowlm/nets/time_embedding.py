r"""Time conditioning: a sinusoidal embedding of model time τ ∈ [0, 1] followed by an MLP.

.. math::
    \text{sin\_emb}(\tau) = [\cos(\omega_1\tau),..,\cos(\omega_{k}\tau), \sin(\omega_1\tau),..,\sin(\omega_{k}\tau)],
    \qquad \omega_i \text{ geometric from } 1 \text{ to } \omega_{\max}=1000,\; k = \text{dim}/2

τ is used as is (no ×1000 rescaling): the frequencies are chosen for the unit interval instead.
:class:`TimeEmbedder` maps it through ``Linear(dim, width) → SiLU → Linear(width, width)``.
"""

from __future__ import annotations

import math
import typing

import torch
from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["sinusoidal_embedding", "TimeEmbedder"]


def sinusoidal_embedding(
    tau: Float[Tensor, " B"], dim: int, max_freq: float = 1000.0
) -> Float[Tensor, "B {dim}"]:
    """[cos(ω τ), sin(ω τ)] with ``dim/2`` frequencies ω geometric in [1, ``max_freq``]."""
    return _sinusoidal(tau, dim, max_freq)


@typing.no_type_check  # runs inside torch.compile (runtime type checks give false errors there)
def _sinusoidal(tau: Tensor, dim: int, max_freq: float = 1000.0) -> Tensor:
    half = dim // 2
    dtype = torch.promote_types(tau.dtype, torch.float32)  # at least float32; float64 stays float64
    freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), half, device=tau.device, dtype=dtype))
    angles = tau.to(dtype)[:, None] * freqs[None, :]  # [B, dim/2]
    return torch.cat((angles.cos(), angles.sin()), dim=-1)


class TimeEmbedder(nn.Module):
    """τ [B] → c [B, width]: sinusoidal embedding (``dim`` channels) then a two-layer SiLU MLP."""

    def __init__(self, width: int, dim: int = 128) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dim must be even, got {dim}")
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, width), nn.SiLU(), nn.Linear(width, width))
        nn.init.normal_(self.mlp[0].weight, std=0.02)
        nn.init.normal_(self.mlp[2].weight, std=0.02)
        nn.init.zeros_(self.mlp[0].bias)
        nn.init.zeros_(self.mlp[2].bias)

    @property
    def last(self) -> nn.Linear:
        """The output layer (zeroed for the second embedder of a distilled student)."""
        return self.mlp[2]

    @typing.no_type_check  # runs inside torch.compile (runtime type checks give false errors there)
    def forward(self, tau: Float[Tensor, " B"]) -> Float[Tensor, "B W"]:
        emb = _sinusoidal(tau, self.dim).to(self.mlp[0].weight.dtype)  # [B, dim]
        return self.mlp(emb)

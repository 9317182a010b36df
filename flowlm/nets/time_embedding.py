r"""Time conditioning: sinusoidal features of model time τ ∈ [0, 1] followed by a two-layer MLP.

The authors' embedding (DESIGN §2, REFERENCE §1), with ``k = features/2 = 128`` frequencies:

.. math::
    \omega_i = \exp\!\big(-\ln(10^4)\,i/k\big),\quad i = 0..k-1,\qquad
    \phi(\tau) = [\cos(\omega_0\tau),..,\cos(\omega_{k-1}\tau),\ \sin(\omega_0\tau),..,\sin(\omega_{k-1}\tau)]

(cos half first, τ unscaled, so the angles lie in ``[0, 1]`` rad), then
:class:`TimeEmbedder` ``emb(τ) = W_2\,\mathrm{SiLU}(W_1\phi(\tau) + b_1) + b_2`` with
``W_1: [cond, features]``, ``W_2: [cond, cond]`` (parameter names ``mlp.0.*``, ``mlp.2.*`` as in
the authors' checkpoints). τ may carry any leading shape: ``[B]`` (one time per sequence) or
``[B, L]`` (per-token times) give ``[B, cond]`` or ``[B, L, cond]``.
"""

from __future__ import annotations

import math
import typing

import torch
from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["sinusoidal_embedding", "TimeEmbedder"]


def sinusoidal_embedding(
    tau: Float[Tensor, "*batch"], dim: int = 256, max_period: float = 10_000.0
) -> Float[Tensor, "*batch {dim}"]:
    r"""``[cos(ω τ), sin(ω τ)]`` with ``dim/2`` frequencies :math:`\omega_i = \text{max\_period}^{-2i/\text{dim}}`."""
    return _sinusoidal(tau, dim, max_period)


@typing.no_type_check  # runs inside torch.compile (runtime type checks give false errors there)
def _sinusoidal(tau: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    half = dim // 2
    dtype = torch.promote_types(tau.dtype, torch.float32)  # at least float32; float64 stays float64
    i = torch.arange(half, device=tau.device, dtype=dtype)
    freqs = torch.exp(-math.log(max_period) * i / half)  # [dim/2], from 1 down to ~1e-4
    angles = tau.to(dtype)[..., None] * freqs  # [..., dim/2]
    return torch.cat((angles.cos(), angles.sin()), dim=-1)


class TimeEmbedder(nn.Module):
    """τ ``[...]`` → ``[..., cond]``: ``features`` sinusoids, then ``Linear(features, cond) → SiLU → Linear(cond, cond)``."""

    def __init__(self, cond: int = 128, features: int = 256) -> None:
        super().__init__()
        if features % 2:
            raise ValueError(f"the number of sinusoidal time features must be even, got {features}")
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(features, cond), nn.SiLU(), nn.Linear(cond, cond))
        nn.init.normal_(self.mlp[0].weight, std=0.02)
        nn.init.normal_(self.mlp[2].weight, std=0.02)
        nn.init.zeros_(self.mlp[0].bias)
        nn.init.zeros_(self.mlp[2].bias)

    @property
    def last(self) -> nn.Linear:
        """The output layer (zeroed for the second embedder of a distilled student)."""
        return self.mlp[2]

    @typing.no_type_check  # runs inside torch.compile (runtime type checks give false errors there)
    def forward(self, tau: Float[Tensor, "*batch"]) -> Float[Tensor, "*batch C"]:
        emb = _sinusoidal(tau, self.features).to(self.mlp[0].weight.dtype)  # [..., features]
        return self.mlp(emb)

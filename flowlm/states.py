r"""Where the flow's state lives.

The flow runs on one-hot sequences in :math:`\mathbb R^{L\times V}`. A network that reads its
input only through :math:`h = x E` (``E: [V, d]``) can instead carry the projected state
:math:`h`, because every update of the samplers and distillers is affine in
:math:`(x, D)` and so commutes with the projection:
:math:`(c_x x + c_D D)E = c_x h + c_D (D E)`.

A :class:`StateSpace` says how to make states of one kind:

* ``one_hot(tokens)``  clean data x1 (or x1·E),
* ``embed(probs)``     a point of the simplex (a denoiser output) mapped into the state space,
* ``noise(B, L)``      a draw of x0 ~ N(0, I) (or of x0·E ~ N(0, EᵀE)).

:class:`OneHotSpace` is the plain V-wide space; the projected space lives with the network
(:mod:`flowlm.nets`), which owns ``E``. Samplers, oracles and distillers take a space argument
and default to :class:`OneHotSpace`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from flowlm._checks import check_token_ids

__all__ = ["StateSpace", "OneHotSpace"]


@runtime_checkable
class StateSpace(Protocol):
    vocab_size: int

    def one_hot(self, tokens: Int[Tensor, "B L"]) -> Float[Tensor, "B L D"]: ...

    def embed(self, probs: Float[Tensor, "B L V"]) -> Float[Tensor, "B L D"]: ...

    def noise(
        self, batch: int, length: int, *, device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None,
    ) -> Float[Tensor, "B L D"]: ...


class OneHotSpace:
    """The V-wide state space: x ∈ R^{L×V}; ``embed`` is the identity."""

    def __init__(self, vocab_size: int) -> None:
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        self.vocab_size = int(vocab_size)

    def one_hot(self, tokens: Int[Tensor, "B L"], dtype: torch.dtype = torch.float32) -> Float[Tensor, "B L V"]:
        check_token_ids("tokens", tokens, self.vocab_size)
        return F.one_hot(tokens, self.vocab_size).to(dtype)

    def embed(self, probs: Float[Tensor, "B L V"]) -> Float[Tensor, "B L V"]:
        return probs

    def noise(
        self, batch: int, length: int, *, device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None,
    ) -> Float[Tensor, "B L V"]:
        return torch.randn(batch, length, self.vocab_size, device=device, dtype=dtype, generator=generator)

    def __repr__(self) -> str:
        return f"OneHotSpace(vocab_size={self.vocab_size})"

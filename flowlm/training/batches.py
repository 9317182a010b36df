"""Deterministic batch sources.

A *batch source* is any object with ``get(step, rank=0, world_size=1) -> tokens [B_local, L]``
that depends only on its arguments, so a resumed run sees exactly the batches it would have seen,
and the ``world_size`` shards of a step together form the global batch of that step.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Int
from torch import Tensor

__all__ = ["BatchSource", "TensorBatchSource"]


@runtime_checkable
class BatchSource(Protocol):
    def get(self, step: int, rank: int = 0, world_size: int = 1) -> Int[Tensor, "B L"]: ...


class TensorBatchSource:
    """Batches of ``batch_size`` rows of a ``[N, L]`` token tensor, one seeded permutation per epoch.

    Step ``k`` takes positions ``k·B … k·B + B − 1`` of the endless stream
    ``perm_0 ‖ perm_1 ‖ …`` (``perm_e`` = a permutation of ``range(N)`` seeded by ``(seed, e)``);
    rank ``r`` of ``W`` gets the ``r``-th of ``W`` equal slices.
    """

    def __init__(self, tokens: Int[Tensor, "N L"], batch_size: int, seed: int = 0) -> None:
        if tokens.ndim != 2 or tokens.shape[0] == 0:
            raise ValueError(f"tokens must be a non-empty [N, L] tensor, got shape {tuple(tokens.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tokens = tokens
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._perms: dict[int, Tensor] = {}

    def _perm(self, epoch: int) -> Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.tokens.shape[0], generator=g)}  # keep one epoch cached
        return self._perms[epoch]

    def get(self, step: int, rank: int = 0, world_size: int = 1) -> Int[Tensor, "B L"]:
        if self.batch_size % world_size:
            raise ValueError(
                f"global batch {self.batch_size} is not divisible by world size {world_size}; "
                "choose a batch size that is a multiple of the number of processes"
            )
        local = self.batch_size // world_size
        N = self.tokens.shape[0]
        start = step * self.batch_size + rank * local
        pos = torch.arange(start, start + local)  # positions in the endless stream
        idx = torch.empty(local, dtype=torch.long)
        for epoch in pos.div(N, rounding_mode="floor").unique().tolist():
            sel = pos.div(N, rounding_mode="floor") == epoch
            idx[sel] = self._perm(int(epoch))[pos[sel] % N]
        return self.tokens[idx]

    def __repr__(self) -> str:
        return f"TensorBatchSource(N={self.tokens.shape[0]}, L={self.tokens.shape[1]}, batch_size={self.batch_size})"

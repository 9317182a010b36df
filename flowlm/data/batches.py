r"""Deterministic batch sources: what the training loop consumes.

A *batch source* is any object with ``get(step, rank=0, world_size=1) -> tokens [B_local, L]``
that depends only on its arguments (and on a position set by :meth:`BlockBatchSource.seek`), so a
resumed run sees exactly the batches it would have seen, and the ``world_size`` shards of a step
together form the global batch of that step.

:class:`BlockBatchSource` is the one stream law every block source here follows. The ``N`` blocks
``[N, L]`` are visited as the endless stream ``perm_0 ‖ perm_1 ‖ …`` (``perm_e`` a permutation of
``range(N)`` seeded by ``(seed, e)``); a *position* ``(epoch, index)`` is the stream offset
``o = epoch·N + index``. The global batch of step ``k`` is the ``B`` stream entries from
``o_k = o_anchor + (k − k_anchor)·B`` (the anchor is ``(0, (0, 0))`` unless :meth:`seek` moved it),
and rank ``r`` of ``W`` gets the ``r``-th of ``W`` equal contiguous slices of it, so the ranks of
a step read disjoint blocks and all ranks together cover every epoch exactly once.

The position is what a checkpoint stores (``position(step)``; restored with ``seek``): resuming
with another batch size continues the stream where it stopped instead of skipping or repeating
data. Blocks come from a tensor (:class:`TensorBatchSource`) or from memory-mapped token shards
(:class:`flowlm.data.shards.ShardBatchSource`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Int
from torch import Tensor

__all__ = ["BatchSource", "StreamPosition", "BlockBatchSource", "TensorBatchSource"]


@runtime_checkable
class BatchSource(Protocol):
    def get(self, step: int, rank: int = 0, world_size: int = 1) -> Int[Tensor, "B L"]: ...


@dataclass(frozen=True)
class StreamPosition:
    """Where the stream stands: ``index`` blocks of epoch ``epoch``'s permutation are consumed."""

    epoch: int
    index: int

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> StreamPosition:
        return cls(int(d["epoch"]), int(d["index"]))


class BlockBatchSource:
    """The stream law of the module docstring over ``num_blocks`` blocks of ``seq_len`` tokens.

    Subclasses implement ``_read(idx: [n] LongTensor) -> [n, L] LongTensor`` (blocks by index).
    """

    num_blocks: int
    seq_len: int

    def __init__(self, num_blocks: int, batch_size: int, seed: int = 0) -> None:
        if num_blocks < 1:
            raise ValueError(f"a batch source needs at least one block, got {num_blocks}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_blocks = int(num_blocks)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._anchor_step = 0
        self._anchor_offset = 0
        self._perms: dict[int, Tensor] = {}

    def _read(self, idx: Int[Tensor, " n"]) -> Int[Tensor, "n L"]:
        raise NotImplementedError

    def _perm(self, epoch: int) -> Int[Tensor, " N"]:
        """The permutation of epoch ``epoch`` (one epoch cached: O(N) memory)."""
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.num_blocks, generator=g)}
        return self._perms[epoch]

    # ---------------------------------------------------------------------------- positions
    def _offset(self, step: int) -> int:
        return self._anchor_offset + (step - self._anchor_step) * self.batch_size

    def position(self, step: int) -> StreamPosition:
        """The position at the start of step ``step`` (before its batch is read)."""
        o = self._offset(step)
        return StreamPosition(o // self.num_blocks, o % self.num_blocks)

    def seek(self, step: int, position: StreamPosition | dict[str, int]) -> None:
        """Make step ``step`` start at ``position`` (what a resumed run does with its checkpoint's)."""
        if isinstance(position, dict):
            position = StreamPosition.from_dict(position)
        if position.epoch < 0 or not 0 <= position.index < self.num_blocks:
            raise ValueError(
                f"stream position {position} does not fit a stream of {self.num_blocks} blocks; "
                "was the checkpoint written for another corpus or sequence length?"
            )
        self._anchor_step = int(step)
        self._anchor_offset = position.epoch * self.num_blocks + position.index

    # -------------------------------------------------------------------------------- batches
    def indices(self, step: int, rank: int = 0, world_size: int = 1) -> Int[Tensor, " Bl"]:
        """Block indices of rank ``rank``'s slice of step ``step``'s global batch, ``[B/W]``."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if self.batch_size % world_size:
            raise ValueError(
                f"global batch {self.batch_size} does not split evenly over {world_size} ranks (not divisible "
                f"by world size {world_size}); choose a batch size that is a multiple of the number of processes"
            )
        local = self.batch_size // world_size
        start = self._offset(step) + rank * local
        if start < 0:
            raise ValueError(f"step {step} lies before the start of the stream")
        pos = torch.arange(start, start + local)  # offsets in the endless stream
        epochs = pos.div(self.num_blocks, rounding_mode="floor")
        idx = torch.empty(local, dtype=torch.long)
        for epoch in epochs.unique().tolist():
            sel = epochs == epoch
            idx[sel] = self._perm(int(epoch))[pos[sel] % self.num_blocks]
        return idx

    def get(self, step: int, rank: int = 0, world_size: int = 1) -> Int[Tensor, "Bl L"]:
        """Rows ``rank·B/W … (rank+1)·B/W − 1`` of the global batch of ``step`` (a CPU LongTensor)."""
        return self._read(self.indices(step, rank, world_size))


class TensorBatchSource(BlockBatchSource):
    """The stream law over the rows of a ``[N, L]`` token tensor held in memory."""

    def __init__(self, tokens: Int[Tensor, "N L"], batch_size: int, seed: int = 0) -> None:
        if tokens.ndim != 2 or tokens.shape[0] == 0:
            raise ValueError(f"tokens must be a non-empty [N, L] tensor, got shape {tuple(tokens.shape)}")
        super().__init__(tokens.shape[0], batch_size, seed)
        self.tokens = tokens
        self.seq_len = int(tokens.shape[1])

    def _read(self, idx: Int[Tensor, " n"]) -> Int[Tensor, "n L"]:
        return self.tokens[idx]

    def __repr__(self) -> str:
        return f"TensorBatchSource(N={self.tokens.shape[0]}, L={self.tokens.shape[1]}, batch_size={self.batch_size})"

"""A packed token dataset that serves batches deterministic in ``(seed, step)``.

:class:`PackedDataset` is the ``BatchSource`` the training loop consumes: ``get(step, rank,
world_size)`` returns the rank's slice of the global batch of step ``step``. The global batch of
step ``s`` holds samples ``s·B … s·B + B − 1`` of an infinite stream that visits the blocks in a
fresh seeded permutation each epoch, so

* the same ``(seed, step)`` gives the same batch in any process, at any time (exact resume: no
  iterator state to save);
* ranks partition the global batch (rank ``r`` of ``W`` gets rows ``r·B/W … (r+1)·B/W − 1``), so
  a DDP run sees the same data as a single-process run with the same global batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from flowlm.data.corpus import load_documents
from flowlm.data.packing import PackingError, encode_documents, pack_ids, split_blocks, split_documents
from flowlm.data.tokenizers import Tokenizer
from flowlm.data.batches import TensorBatchSource

__all__ = ["PackedDataset", "DataSplits", "build_datasets"]


class PackedDataset(TensorBatchSource):
    """Blocks ``[N, L]`` served as global batches of ``batch_size``, reshuffled every epoch.

    The batch law is :class:`flowlm.data.batches.BlockBatchSource`'s (step ``k`` = positions
    ``k·B … k·B + B − 1`` of ``perm_0 ‖ perm_1 ‖ …``, one seeded permutation per epoch); this class
    adds the evaluation iterator and the packing checks.
    """

    def __init__(self, blocks: Int[Tensor, "N L"], batch_size: int, seed: int = 0) -> None:
        if blocks.ndim != 2 or blocks.shape[0] < 1:
            raise PackingError(f"need a non-empty [N, L] block tensor, got shape {tuple(blocks.shape)}")
        super().__init__(blocks.long().contiguous(), batch_size, seed)

    @property
    def blocks(self) -> Int[Tensor, "N L"]:
        return self.tokens

    def __len__(self) -> int:
        return self.num_blocks

    def iter_blocks(self, batch_size: int) -> Iterator[Int[Tensor, "b L"]]:
        """All blocks once, in order, in batches of ``batch_size`` (for evaluation)."""
        for i in range(0, self.num_blocks, batch_size):
            yield self.blocks[i : i + batch_size]

    def __repr__(self) -> str:
        return f"PackedDataset(blocks={self.num_blocks}, seq_len={self.seq_len}, batch_size={self.batch_size}, seed={self.seed})"


@dataclass
class DataSplits:
    train: PackedDataset
    val: PackedDataset | None


def build_datasets(
    tokenizer: Tokenizer,
    seq_len: int,
    batch_size: int,
    *,
    path: str | os.PathLike | None = None,
    docs: list[str] | None = None,
    seed: int = 0,
    val_fraction: float = 0.05,
    split_by: str = "block",
    encoded: list[Tensor] | None = None,
) -> DataSplits:
    """Load the corpus (``path``; ``None`` = embedded) or take ``docs``, pack it, split it.

    ``split_by="block"`` (default) or ``"document"``; see :mod:`flowlm.data.packing`.
    ``encoded`` (``encode_documents(docs, tokenizer)``, e.g. from a cache) skips the encoding.
    """
    if encoded is None:
        encoded = encode_documents(docs if docs is not None else load_documents(path), tokenizer)
    if split_by == "block":
        blocks = pack_ids(encoded, seq_len)
        if blocks.shape[0] == 0:
            raise PackingError(
                f"the corpus is shorter than one sequence of {seq_len} tokens; give more text or "
                f"a shorter sequence (--set seq_len=...)"
            )
        train, val = split_blocks(blocks, val_fraction, seed)
    elif split_by == "document":
        tr, va = split_documents(len(encoded), val_fraction, seed)
        train = pack_ids([encoded[i] for i in tr], seq_len)
        val = pack_ids([encoded[i] for i in va], seq_len)
        if train.shape[0] == 0:
            raise PackingError(f"the training documents are shorter than one sequence of {seq_len} tokens")
    else:
        raise ValueError(f"split_by must be 'block' or 'document', got {split_by!r}")
    return DataSplits(
        train=PackedDataset(train, batch_size, seed),
        val=PackedDataset(val, batch_size, seed + 1) if val.shape[0] else None,
    )

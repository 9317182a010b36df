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
from flowlm.data.batches import BlockBatchSource, TensorBatchSource

__all__ = ["PackedDataset", "DataSplits", "build_datasets", "shard_datasets"]


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
    """Training and validation batch sources (in-memory :class:`PackedDataset` or streamed shards)."""

    train: BlockBatchSource
    val: BlockBatchSource | None


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

    A prepared shard folder as ``path`` is streamed instead (:func:`shard_datasets`'s splits; it must
    have been prepared with ``tokenizer``).

    ``split_by="block"`` (default) or ``"document"``; see :mod:`flowlm.data.packing`.
    ``encoded`` (``encode_documents(docs, tokenizer)``, e.g. from a cache) skips the encoding.
    """
    if encoded is None and docs is None:
        from flowlm.data.shards import TokenShards, is_shard_folder, shard_splits

        if is_shard_folder(path):  # a prepared shard folder streams from disk
            shards = TokenShards(path)  # type: ignore[arg-type]
            if shards.tokenizer_spec != tokenizer.spec():
                raise PackingError(f"the shards in {path} were prepared with another tokenizer "
                                   f"({shards.tokenizer_spec.get('kind')}) than the one given ({tokenizer.kind})")
            train, val = shard_splits(shards, seq_len, batch_size, seed=seed, val_fraction=val_fraction)
            return DataSplits(train=train, val=val)
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


def shard_datasets(
    folder: str | os.PathLike,
    seq_len: int,
    batch_size: int,
    *,
    seed: int = 0,
    val_fraction: float = 0.05,
    tokenizer_kind: str | None = None,
) -> tuple[Tokenizer, DataSplits, str]:
    """``(tokenizer, splits, content_hash)`` of a prepared shard folder (``flowlm data prepare``).

    The tokenizer is the one the shards were written with; ``tokenizer_kind`` (the run's) must name
    the same kind. Splits: the last ``val_fraction`` of the blocks are held out
    (:func:`flowlm.data.shards.shard_splits`; the run's ``split_by`` does not apply: shards hold one
    stream); both sides stream from the memory-mapped shards.
    """
    from flowlm.data.shards import TokenShards, shard_splits

    shards = TokenShards(folder)
    kind = shards.tokenizer_spec.get("kind")
    if tokenizer_kind is not None and kind != tokenizer_kind:
        raise PackingError(
            f"the shards in {folder} were prepared with the {kind} tokenizer but the run uses {tokenizer_kind}; "
            f"prepare them again with --tokenizer {tokenizer_kind}, or train with --set tokenizer={kind}"
        )
    train, val = shard_splits(shards, seq_len, batch_size, seed=seed, val_fraction=val_fraction)
    return shards.tokenizer(), DataSplits(train=train, val=val), shards.content_hash

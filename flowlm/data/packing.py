"""Packing token streams into fixed-length blocks, and the train/validation split.

Scheme (GPT-style concatenate-and-chunk, no padding inside the data):

1. every document becomes ``[BOS] + encode(doc) + [EOS]``;
2. the documents are concatenated, in order, into one stream;
3. the stream is cut into consecutive non-overlapping blocks of ``L`` tokens; the last partial
   block is dropped (at most ``L − 1`` tokens lost).

A block may therefore start mid-document and hold a document boundary ``EOS BOS``; the model
learns those boundaries as tokens, as GPT-2 and the paper's OWT runs do.

The split is deterministic in its seed: ``by="block"`` holds out a seeded random subset of the
blocks, ``by="document"`` holds out whole documents (packed separately, so no block straddles
train and validation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from flowlm.data.tokenizers import Tokenizer

__all__ = ["pack_ids", "encode_documents", "pack_documents", "split_blocks", "split_documents", "PackingError"]


class PackingError(ValueError):
    """A corpus too short for the requested block length or split."""


def encode_documents(docs: Sequence[str], tokenizer: Tokenizer) -> list[Int[Tensor, " n"]]:
    """``[BOS] + encode(doc) + [EOS]`` for each document, as LongTensors."""
    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    return [torch.tensor([bos, *tokenizer.encode(d), eos], dtype=torch.long) for d in docs]


def pack_ids(token_lists: Sequence[Sequence[int] | Tensor], length: int) -> Int[Tensor, "N L"]:
    """Concatenate ``token_lists`` and cut the stream into ``N = ⌊total / L⌋`` blocks of ``L``."""
    if length < 1:
        raise PackingError(f"block length must be >= 1, got {length}")
    parts = [torch.as_tensor(ids, dtype=torch.long).reshape(-1) for ids in token_lists]
    stream = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)  # [T]
    n = stream.numel() // length
    return stream[: n * length].reshape(n, length).clone()  # [N, L]


def pack_documents(docs: Sequence[str], tokenizer: Tokenizer, length: int) -> Int[Tensor, "N L"]:
    """Encode (with BOS/EOS) and pack ``docs`` into blocks of ``length`` tokens."""
    return pack_ids(encode_documents(docs, tokenizer), length)


def split_blocks(
    blocks: Int[Tensor, "N L"], val_fraction: float, seed: int
) -> tuple[Int[Tensor, "Ntr L"], Int[Tensor, "Nva L"]]:
    """Hold out ``max(1, round(val_fraction·N))`` blocks chosen by a seeded permutation.

    Both parts keep the original block order. ``val_fraction = 0`` gives an empty validation set.
    """
    n = blocks.shape[0]
    if not 0.0 <= val_fraction < 1.0:
        raise PackingError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = 0 if val_fraction == 0 else max(1, round(val_fraction * n))
    if n - n_val < 1:
        raise PackingError(
            f"the corpus packs into only {n} block(s) of {blocks.shape[1]} tokens, too few for a "
            f"train/validation split; give more text or a shorter sequence (--set seq_len=...)"
        )
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[perm[:n_val]] = True
    return blocks[~is_val], blocks[is_val]


def split_documents(n_docs: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of document indices; at least one document on each side when ``val_fraction > 0``."""
    if not 0.0 <= val_fraction < 1.0:
        raise PackingError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = 0 if val_fraction == 0 else max(1, round(val_fraction * n_docs))
    if n_docs - n_val < 1:
        raise PackingError(
            f"a by-document split needs at least 2 documents, got {n_docs}; split by block instead"
        )
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n_docs, generator=g).tolist()
    return sorted(perm[n_val:]), sorted(perm[:n_val])

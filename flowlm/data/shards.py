r"""Prepared token shards: a folder written by ``flowlm data prepare`` (:mod:`flowlm.data.prepare`),
read back with bounded memory.

Layout of a prepared folder::

    index.json          format, tokenizer spec, vocab_size, dtype, shard list, content hash
    shard-00000.bin     raw little-endian token ids (uint16 when V ≤ 65536, else uint32), no header
    shard-00001.bin     ...
    .prepare.json       the preparation's settings and finished shards (what a resumed prepare reads)

The token stream ``T`` is the concatenation of the shards in order; it holds every document as
``[BOS] + encode(doc) + [EOS]``, the framing of :func:`flowlm.data.packing.encode_documents`, so
``T`` equals the in-memory stream of the same corpus. Training cuts ``T`` into the
``N = ⌊|T| / L⌋`` consecutive blocks of ``L`` tokens (block ``b`` = ``T[b·L : (b+1)·L]``, which may
straddle two shards), exactly as :func:`flowlm.data.packing.pack_ids` does in memory.

Memory: each shard is memory-mapped (``mmap`` + ``np.frombuffer``, read-only) and a read touches
only the pages of the blocks it asks for; :meth:`TokenShards.release` drops the mapped pages from
the process (``madvise(MADV_DONTNEED)``; they stay in the OS page cache), and
:class:`ShardBatchSource` calls it after every batch, so the resident memory of a training process
does not grow with the number of blocks read (``tests/test_shards.py`` measures it).
"""

from __future__ import annotations

import bisect
import json
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from flowlm.data.batches import BlockBatchSource
from flowlm.data.corpus import CorpusError

__all__ = [
    "INDEX_NAME",
    "SHARD_FORMAT",
    "is_shard_folder",
    "read_index",
    "token_dtype",
    "TokenShards",
    "ShardBatchSource",
    "shard_splits",
]

INDEX_NAME = "index.json"
SHARD_FORMAT = "flowlm-shards-1"


def token_dtype(vocab_size: int) -> np.dtype:
    """``uint16`` when every id ``< vocab_size`` fits in 16 bits (V ≤ 65536), else ``uint32``."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def is_shard_folder(path: str | os.PathLike | None) -> bool:
    """``True`` when ``path`` is a folder holding a prepared-shard ``index.json``."""
    return path is not None and (Path(path).expanduser() / INDEX_NAME).is_file()


def read_index(folder: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``index.json`` of a prepared folder (checked for format and required keys)."""
    path = Path(folder).expanduser() / INDEX_NAME
    if not path.is_file():
        raise CorpusError(f"{folder} is not a prepared shard folder (no {INDEX_NAME}); create one with "
                          f"`flowlm data prepare --data PATH --tokenizer gpt2 --out {folder}`")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CorpusError(f"{path} is not valid JSON ({e}); re-run `flowlm data prepare` into a fresh folder") from None
    if index.get("format") != SHARD_FORMAT:
        raise CorpusError(f"{path} has format {index.get('format')!r}, expected {SHARD_FORMAT!r}")
    missing = [k for k in ("tokenizer", "vocab_size", "dtype", "shards", "content_hash") if k not in index]
    if missing:
        raise CorpusError(f"{path} lacks {', '.join(missing)}; re-run `flowlm data prepare` into a fresh folder")
    return index


class TokenShards:
    """The token stream ``T`` of a prepared folder, memory-mapped shard by shard.

    ``len(shards)`` is ``|T|``; ``shards.read(a, b)`` returns ``T[a:b]`` as a fresh ``[b − a]``
    numpy array of the shard dtype. Shards are mapped lazily on first read.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder).expanduser()
        self.index = read_index(self.folder)
        self.dtype = np.dtype(self.index["dtype"])
        self.vocab_size = int(self.index["vocab_size"])
        self.files = [self.folder / s["file"] for s in self.index["shards"]]
        self.counts = [int(s["tokens"]) for s in self.index["shards"]]
        for f, n in zip(self.files, self.counts):
            size = f.stat().st_size if f.is_file() else None
            if size != n * self.dtype.itemsize:
                raise CorpusError(
                    f"shard {f} is {'missing' if size is None else f'{size} bytes'}, the index says "
                    f"{n} tokens × {self.dtype.itemsize} bytes; re-run `flowlm data prepare` with the same --out"
                )
        self.starts = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)]).tolist()  # [S + 1]
        self._maps: dict[int, tuple[mmap.mmap, np.ndarray]] = {}
        self._touched: set[int] = set()

    def __len__(self) -> int:
        return self.starts[-1]

    @property
    def content_hash(self) -> str:
        return str(self.index["content_hash"])

    @property
    def tokenizer_spec(self) -> dict[str, Any]:
        return dict(self.index["tokenizer"])

    def tokenizer(self) -> Any:
        """The tokenizer the shards were written with (rebuilt from the index's spec)."""
        from flowlm.data.tokenizers import tokenizer_from_spec

        return tokenizer_from_spec(self.tokenizer_spec)

    def _array(self, i: int) -> np.ndarray:
        if i not in self._maps:
            with open(self.files[i], "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.counts[i] else None
            arr = np.frombuffer(mm, dtype=self.dtype) if mm is not None else np.zeros(0, self.dtype)
            self._maps[i] = (mm, arr)  # type: ignore[assignment]
        self._touched.add(i)
        return self._maps[i][1]

    def shard(self, i: int) -> np.ndarray:
        """Shard ``i`` as a read-only memory-mapped ``[n_i]`` array (no copy)."""
        return self._array(i)

    def read(self, start: int, stop: int) -> np.ndarray:
        """``T[start:stop]`` (a copy, ``[stop − start]``), spanning shard boundaries as needed."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"token range [{start}, {stop}) outside the stream of {len(self)} tokens")
        out = np.empty(stop - start, dtype=self.dtype)
        i = bisect.bisect_right(self.starts, start) - 1
        pos = start
        while pos < stop:
            lo = pos - self.starts[i]
            hi = min(stop, self.starts[i + 1]) - self.starts[i]
            if hi > lo:
                out[pos - start : pos - start + hi - lo] = self._array(i)[lo:hi]
                pos += hi - lo
            i += 1
        return out

    def release(self) -> None:
        """Drop the pages read so far from this process's resident memory (the OS keeps them cached)."""
        for i in self._touched:
            mm = self._maps[i][0]
            if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                mm.madvise(mmap.MADV_DONTNEED)
        self._touched.clear()

    def __repr__(self) -> str:
        return f"TokenShards({str(self.folder)!r}, tokens={len(self)}, shards={len(self.files)}, dtype={self.dtype})"


class ShardBatchSource(BlockBatchSource):
    """Blocks ``first_block … first_block + num_blocks − 1`` of a prepared stream, served by the stream
    law of :class:`flowlm.data.batches.BlockBatchSource` (seeded permutation per epoch, ranks get
    disjoint slices, ``position``/``seek`` for exact resume).

    Block ``b`` (0-based within this source) is ``T[(first_block + b)·L : (first_block + b + 1)·L]``.
    ``get`` reads only the ``B/W`` blocks of its rank and releases the mapped pages afterwards.
    """

    def __init__(
        self,
        shards: TokenShards | str | os.PathLike,
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        *,
        first_block: int = 0,
        num_blocks: int | None = None,
    ) -> None:
        self.shards = shards if isinstance(shards, TokenShards) else TokenShards(shards)
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        total = len(self.shards) // seq_len
        if num_blocks is None:
            num_blocks = total - first_block
        if num_blocks < 1 or first_block < 0 or first_block + num_blocks > total:
            raise CorpusError(
                f"{self.shards.folder} holds {len(self.shards)} tokens = {total} blocks of {seq_len}; "
                f"blocks [{first_block}, {first_block + num_blocks}) do not fit (prepare more text or use a "
                "shorter sequence, --set seq_len=...)"
            )
        super().__init__(num_blocks, batch_size, seed)
        self.seq_len = int(seq_len)
        self.first_block = int(first_block)

    def _read(self, idx: Int[Tensor, " n"]) -> Int[Tensor, "n L"]:
        L = self.seq_len
        out = np.empty((len(idx), L), dtype=np.int64)
        for row, b in enumerate(idx.tolist()):
            start = (self.first_block + b) * L
            out[row] = self.shards.read(start, start + L)
        self.shards.release()
        return torch.from_numpy(out)

    def read_blocks(self, start: int, stop: int) -> Int[Tensor, "n L"]:
        """Blocks ``start … stop − 1`` of this source, in order (``[stop − start, L]``)."""
        return self._read(torch.arange(start, min(stop, self.num_blocks)))

    def iter_blocks(self, batch_size: int) -> Iterator[Int[Tensor, "b L"]]:
        """All blocks once, in order, in batches of ``batch_size`` (for evaluation)."""
        for i in range(0, self.num_blocks, batch_size):
            yield self.read_blocks(i, i + batch_size)

    def __len__(self) -> int:
        return self.num_blocks

    def __repr__(self) -> str:
        return (f"ShardBatchSource({str(self.shards.folder)!r}, blocks={self.first_block}+{self.num_blocks}, "
                f"seq_len={self.seq_len}, batch_size={self.batch_size}, seed={self.seed})")


def shard_splits(
    folder: str | os.PathLike | TokenShards, seq_len: int, batch_size: int, *, seed: int = 0, val_fraction: float = 0.0
) -> tuple[ShardBatchSource, ShardBatchSource | None]:
    """``(train, val)`` over a prepared folder: the last ``max(1, round(val_fraction·N))`` of the
    ``N`` blocks are held out (``val = None`` when ``val_fraction = 0``), the rest is training data.

    A tail split keeps memory bounded (no index list of held-out blocks) and never shares a block
    between the two sides.
    """
    shards = folder if isinstance(folder, TokenShards) else TokenShards(folder)
    if not 0.0 <= val_fraction < 1.0:
        raise CorpusError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(shards) // seq_len
    n_val = 0 if val_fraction == 0 else max(1, round(val_fraction * n))
    if n - n_val < 1:
        raise CorpusError(
            f"{shards.folder} holds {len(shards)} tokens = {n} blocks of {seq_len}, too few for training with "
            f"{n_val} held-out block(s); prepare more text or use a shorter sequence (--set seq_len=...)"
        )
    train = ShardBatchSource(shards, seq_len, batch_size, seed, first_block=0, num_blocks=n - n_val)
    val = ShardBatchSource(shards, seq_len, batch_size, seed + 1, first_block=n - n_val, num_blocks=n_val) if n_val else None
    return train, val

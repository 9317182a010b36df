r"""``flowlm data prepare``: tokenize a corpus with several processes into memory-mapped token shards.

:func:`prepare_shards` reads the inputs (:mod:`flowlm.data.inputs`) as a stream of document pieces
and groups consecutive pieces into *jobs* of about ``shard_tokens`` tokens (planned in characters
from the chars-per-token ratio of the first ~256k characters). Job ``j`` becomes
``shard-{j:05d}.bin``: a worker process tokenizes its pieces, frames each document as
``[BOS] + encode(doc) + [EOS]`` (as :func:`flowlm.data.packing.encode_documents` does), writes the ids
(``uint16`` when V ≤ 65536, else ``uint32``) to a temporary file, fsyncs it and renames it into place,
so a shard file exists only when it is complete. The parent records each finished shard in
``.prepare.json`` (atomically) and writes ``index.json`` (:mod:`flowlm.data.shards`) at the end.

Resuming: re-running the same command on the same ``--out`` checks that the inputs (paths, sizes,
modification times), the tokenizer and the settings are unchanged, keeps every finished shard,
removes leftover temporary files and redoes only the missing shards; the result is byte-identical
to an uninterrupted run. A folder that is already complete is left as it is.

The index's ``content_hash`` is a sha256 over the per-shard sha256 of the document text each shard
holds, so two folders prepared from the same text with the same settings carry the same hash.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from flowlm._io import atomic_write, atomic_write_json
from flowlm.data.corpus import CorpusError
from flowlm.data.inputs import InputFile, Segment, input_bytes, inputs_fingerprint, iter_segments, resolve_inputs
from flowlm.data.shards import INDEX_NAME, SHARD_FORMAT, read_index, token_dtype
from flowlm.data.tokenizers import Tokenizer, build_tokenizer, spec_digest, tokenizer_from_spec

__all__ = ["prepare_shards", "DEFAULT_SHARD_TOKENS", "STATE_NAME"]

DEFAULT_SHARD_TOKENS = 1 << 26  # 67M tokens: 128 MiB per uint16 shard
STATE_NAME = ".prepare.json"
_ESTIMATE_CHARS = 1 << 18


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically with ordinary permissions (:func:`flowlm._io.atomic_write_json`)."""
    atomic_write_json(path, obj, indent=1, sort_keys=True)


# ------------------------------------------------------------------------------ worker side
_TOKENIZER: Tokenizer | None = None


def _init_worker(spec: dict[str, Any]) -> None:
    global _TOKENIZER
    if _TOKENIZER is None or spec_digest(_TOKENIZER.spec()) != spec_digest(spec):  # a forked worker inherits it
        _TOKENIZER = tokenizer_from_spec(spec)


def _frame(tok: Tokenizer, seg: Segment) -> list[int]:
    return ([tok.bos_id] if seg.first else []) + tok.encode(seg.text) + ([tok.eos_id] if seg.last else [])


def _write_shard(j: int, segments: list[Segment], out: str, dtype: str) -> dict[str, Any]:
    """Tokenize ``segments`` into ``out/shard-{j:05d}.bin`` (temporary file + fsync + rename)."""
    tok = _TOKENIZER
    assert tok is not None, "worker not initialized"
    name = f"shard-{j:05d}.bin"
    h = hashlib.sha256()
    counts = {"tokens": 0, "documents": 0, "bytes": 0}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            for seg in segments:
                raw = seg.text.encode("utf-8")
                h.update(b"%d%d%d:" % (seg.first, seg.last, len(raw)))
                h.update(raw)
                ids = np.asarray(_frame(tok, seg), dtype=dtype)
                f.write(ids.tobytes())
                counts["tokens"] += ids.size
                counts["documents"] += seg.last
                counts["bytes"] += len(raw)

    atomic_write(Path(out) / name, write)  # temporary file + fsync + rename
    n_tokens, n_docs, n_bytes = counts["tokens"], counts["documents"], counts["bytes"]
    return {"file": name, "tokens": n_tokens, "documents": n_docs, "bytes": n_bytes, "sha256": h.hexdigest()}


# ------------------------------------------------------------------------------ parent side
def _fit_tokenizer(kind: str, inputs: list[InputFile], text_column: str, vocab_size: int | None) -> Tokenizer:
    if kind not in ("char", "bpe"):
        return build_tokenizer(kind, vocab_size=vocab_size)
    # fitted tokenizers see the whole corpus (in memory): meant for small corpora, as in `flowlm train`
    docs, cur = [], []
    for seg in iter_segments(inputs, text_column):
        cur.append(seg.text)
        if seg.last:
            docs.append("".join(cur))
            cur = []
    if not docs:
        raise CorpusError(f"{inputs[0].path} holds no text; give it some documents")
    return build_tokenizer(kind, "\n\n".join(docs), vocab_size=vocab_size)


def _chars_per_token(tok: Tokenizer, inputs: list[InputFile], text_column: str, max_chars: int) -> float:
    chars = tokens = 0
    for seg in iter_segments(inputs, text_column, max_chars):
        chars += len(seg.text)
        tokens += len(_frame(tok, seg))
        if chars >= _ESTIMATE_CHARS:
            break
    if tokens == 0:
        raise CorpusError(f"{inputs[0].path if len(inputs) == 1 else 'the inputs'} hold no text "
                          "(every document is empty); give them some text")
    return max(chars, 1) / tokens


def _jobs(inputs: list[InputFile], text_column: str, max_chars: int, chars_per_job: int):
    job: list[Segment] = []
    size = 0
    for seg in iter_segments(inputs, text_column, max_chars):
        job.append(seg)
        size += len(seg.text)
        if size >= chars_per_job:
            yield job
            job, size = [], 0
    if job:
        yield job


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{k}: folder has {old.get(k)!r}, now {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def prepare_shards(
    data: str | os.PathLike,
    out: str | os.PathLike,
    tokenizer: str = "gpt2",
    *,
    workers: int | None = None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    text_column: str = "text",
    vocab_size: int | None = None,
    progress: bool = True,
    max_chars: int = 1 << 20,
) -> dict[str, Any]:
    """Tokenize ``data`` into token shards in ``out`` (resumable); returns the index (``index.json``).

    Args:
        data: a text/JSONL/Parquet file, a folder, a glob or a ``datasets`` ``save_to_disk`` folder.
        out: the shard folder (created; a folder holding other files is refused).
        tokenizer: ``gpt2`` | ``bert`` (fixed vocabularies) or ``char`` | ``bpe`` (fitted to the whole
            corpus in memory, for small corpora).
        workers: tokenizer processes (default: the usable CPUs); 1 runs in this process.
        shard_tokens: about this many tokens per shard (planned by characters).
        text_column: the field/column holding the text of JSONL, Parquet and ``datasets`` inputs.
        vocab_size: the BPE target size (``bpe`` only).
        max_chars: the longest piece of a text file handed to one tokenizer call.
    """
    if shard_tokens < 1:
        raise CorpusError(f"--shard-tokens must be >= 1, got {shard_tokens}")
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if workers < 1:
        raise CorpusError(f"--workers must be >= 1, got {workers}")
    inputs = resolve_inputs(data)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise CorpusError(f"--out {out} is a file; give a folder for the shards")
    state_path, index_path = out / STATE_NAME, out / INDEX_NAME
    if out.is_dir() and any(out.iterdir()) and not state_path.is_file():
        raise CorpusError(f"--out {out} holds other files and no {STATE_NAME}; choose a new or empty folder "
                          "(nothing was changed)")

    tok = _fit_tokenizer(tokenizer, inputs, text_column, vocab_size)
    spec = tok.spec()
    dtype = token_dtype(tok.vocab_size)
    settings = {"tokenizer": tok.kind, "tokenizer_digest": spec_digest(spec), "vocab_size": tok.vocab_size,
                "dtype": dtype.name, "shard_tokens": int(shard_tokens), "text_column": text_column,
                "max_chars": int(max_chars), "inputs": inputs_fingerprint(inputs)}
    if state_path.is_file():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        diffs = _differences(state.get("settings", {}), settings)
        if diffs:
            raise CorpusError(f"{out} holds shards prepared with other inputs or settings ({'; '.join(diffs)}); "
                              "re-run with the same arguments to resume, or choose a new --out")
        if index_path.is_file():
            index = read_index(out)
            if all((out / sh["file"]).is_file() and (out / sh["file"]).stat().st_size == sh["tokens"] * dtype.itemsize
                   for sh in index["shards"]):
                return index  # already complete
            index_path.unlink()  # a shard went missing or was damaged: redo it below
    else:
        out.mkdir(parents=True, exist_ok=True)
        state = {"settings": settings, "chars_per_shard": None, "done": {}}
    if state["chars_per_shard"] is None:
        state["chars_per_shard"] = max(1, round(shard_tokens * _chars_per_token(tok, inputs, text_column, max_chars)))
        _write_json(state_path, state)
    for stale in out.glob(".*.tmp"):  # partial shards of an interrupted run: redone below
        stale.unlink()

    def finished(j: int) -> bool:
        rec = state["done"].get(str(j))
        f = out / f"shard-{j:05d}.bin"
        return rec is not None and f.is_file() and f.stat().st_size == rec["tokens"] * dtype.itemsize

    from tqdm.auto import tqdm

    global _TOKENIZER
    _TOKENIZER = tok  # the in-process worker's (and, under fork, every worker's) tokenizer
    pool = None
    if workers > 1:  # started before any other thread (the progress bar's): fork on Linux, spawn elsewhere
        method = "fork" if sys.platform == "linux" else "spawn"
        pool = mp.get_context(method).Pool(workers, initializer=_init_worker, initargs=(spec,))
    bar = tqdm(total=input_bytes(inputs), unit="B", unit_scale=True, desc="flowlm data prepare",
               disable=not progress, file=sys.stderr,
               mininterval=0.5 if sys.stderr.isatty() else 30)  # a log file gets a line every 30 s
    n_jobs = 0
    inflight: deque = deque()

    def record(res: dict[str, Any], j: int) -> None:
        state["done"][str(j)] = res
        _write_json(state_path, state)
        bar.update(res["bytes"])
        bar.set_postfix(shards=len(state["done"]), refresh=False)

    def drain(block: bool) -> None:
        """Record every finished job (in any order: a shard is kept as soon as it is done)."""
        while True:
            ready = [item for item in inflight if item[1].ready()]
            if ready or not block:
                break
            inflight[0][1].wait(0.05)
        for item in ready:
            inflight.remove(item)
            record(item[1].get(), item[0])

    try:
        for j, job in enumerate(_jobs(inputs, text_column, max_chars, state["chars_per_shard"])):
            n_jobs = j + 1
            if finished(j):
                bar.update(state["done"][str(j)]["bytes"])
            elif pool is None:
                record(_write_shard(j, job, str(out), dtype.str), j)
            else:
                inflight.append((j, pool.apply_async(_write_shard, (j, job, str(out), dtype.str))))
                while len(inflight) >= 2 * workers:  # bounded: at most 2 jobs of text per worker in flight
                    drain(block=True)
        while inflight:
            drain(block=True)
        if pool is not None:
            pool.close()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()  # no-op after close(); stops the workers on an error or an interrupt
            pool.join()
    if n_jobs == 0:
        raise CorpusError(f"{data} holds no text (every document is empty); give it some text")

    shards = [state["done"][str(j)] for j in range(n_jobs)]
    content = hashlib.sha256("".join(s["sha256"] for s in shards).encode()).hexdigest()[:16]
    index = {
        "format": SHARD_FORMAT,
        "tokenizer": spec,
        "tokenizer_name": tok.kind,
        "vocab_size": tok.vocab_size,
        "dtype": dtype.name,
        "bos_id": tok.bos_id,
        "eos_id": tok.eos_id,
        "shards": [{k: s[k] for k in ("file", "tokens", "documents", "sha256")} for s in shards],
        "total_tokens": sum(s["tokens"] for s in shards),
        "documents": sum(s["documents"] for s in shards),
        "text_bytes": sum(s["bytes"] for s in shards),
        "content_hash": content,
        "inputs": [str(f.path.resolve()) for f in inputs],
        "text_column": text_column,
    }
    _write_json(index_path, index)
    return index

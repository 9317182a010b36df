r"""The raw inputs of ``flowlm data prepare``, read as a stream of document pieces.

``--data`` may be

* a text file (one document: the whole file, as :func:`flowlm.data.corpus.load_documents` reads it),
* a folder of ``.txt`` / ``.jsonl`` / ``.parquet`` files (sorted by name),
* a glob (``"data/*.jsonl"``, quoted; sorted matches),
* a JSONL file (one JSON object per line; the document is its ``text_column`` field),
* a Parquet file (the document is each row's ``text_column``; read batch by batch with pyarrow),
* a Hugging Face ``datasets`` folder written by ``save_to_disk`` (a ``Dataset``, or a
  ``DatasetDict`` of which the ``train`` split is read).

:func:`iter_segments` yields :class:`Segment`\ s: pieces of documents of at most about
``max_chars`` characters, in document order. A long text file is cut only where a newline sits
between two non-space characters (``"x\nY"``): no GPT-2/BPE pre-token, WordPiece word or character
crosses such a point, so tokenizing the pieces and concatenating equals tokenizing the whole file
(``tests/test_shards.py`` checks it). Whitespace-only documents are dropped, as in
:func:`~flowlm.data.corpus.load_documents`.
"""

from __future__ import annotations

import glob as globlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flowlm.data.corpus import CorpusError

__all__ = ["Segment", "InputFile", "resolve_inputs", "iter_segments", "inputs_fingerprint", "input_bytes"]

_TABLE_SUFFIXES = {".jsonl": "jsonl", ".parquet": "parquet"}
_FOLDER_SUFFIXES = (".txt", ".jsonl", ".parquet")


@dataclass(frozen=True)
class Segment:
    """A piece of one document: ``first`` = it opens the document (gets BOS), ``last`` = it closes it (EOS)."""

    text: str
    first: bool
    last: bool


@dataclass(frozen=True)
class InputFile:
    """One input: ``kind`` is ``text``, ``jsonl``, ``parquet`` or ``hf`` (a ``save_to_disk`` folder)."""

    kind: str
    path: Path


def _is_hf_folder(p: Path) -> bool:
    return p.is_dir() and any((p / n).is_file() for n in ("dataset_info.json", "state.json", "dataset_dict.json"))


def _classify(p: Path) -> InputFile:
    if _is_hf_folder(p):
        return InputFile("hf", p)
    return InputFile(_TABLE_SUFFIXES.get(p.suffix.lower(), "text"), p)


def resolve_inputs(data: str | os.PathLike) -> list[InputFile]:
    """The input files named by ``data`` (a file, a folder, a ``save_to_disk`` folder or a glob)."""
    text = os.fspath(data)
    if any(c in text for c in "*?["):
        matches = sorted(Path(m) for m in globlib.glob(os.path.expanduser(text), recursive=True))
        files = [m for m in matches if m.is_file() or _is_hf_folder(m)]
        if not files:
            raise CorpusError(f"the glob {text!r} matches no files; check the pattern (quote it in the shell)")
        return [_classify(f) for f in files]
    p = Path(text).expanduser()
    if not p.exists():
        raise CorpusError(f"input {p} does not exist; pass --data with a text/JSONL/Parquet file, a folder, a glob "
                          "or a `datasets` save_to_disk folder")
    if p.is_dir():
        if _is_hf_folder(p):
            return [InputFile("hf", p)]
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in _FOLDER_SUFFIXES)
        if not files:
            raise CorpusError(f"folder {p} holds no .txt, .jsonl or .parquet files (and is not a `datasets` "
                              "save_to_disk folder)")
        return [_classify(f) for f in files]
    return [_classify(p)]


def inputs_fingerprint(inputs: list[InputFile]) -> list[list]:
    """``[[kind, path, size, mtime_ns], ...]``: cheap identity of the inputs (a resumed prepare checks it)."""
    out = []
    for f in inputs:
        paths = sorted(q for q in f.path.rglob("*") if q.is_file()) if f.path.is_dir() else [f.path]
        size = sum(q.stat().st_size for q in paths)
        mtime = max((q.stat().st_mtime_ns for q in paths), default=0)
        out.append([f.kind, str(f.path.resolve()), size, mtime])
    return out


def input_bytes(inputs: list[InputFile]) -> int | None:
    """Total size of text/JSONL inputs (a progress total); ``None`` when another kind is present."""
    if any(f.kind not in ("text", "jsonl") for f in inputs):
        return None
    return sum(f.path.stat().st_size for f in inputs)


# ------------------------------------------------------------------------------------- readers
def _safe_cut(buf: str) -> int:
    """The last index ``i`` with ``buf[i−1] == "\\n"`` and ``buf[i−2]``, ``buf[i]`` not whitespace; 0 if none."""
    j = buf.rfind("\n", 0, len(buf) - 1)
    while j > 0:
        if not buf[j - 1].isspace() and not buf[j + 1].isspace():
            return j + 1
        j = buf.rfind("\n", 0, j)
    return 0


def _text_segments(path: Path, max_chars: int) -> Iterator[Segment]:
    pending: list[str] = []  # read but not yet emitted
    first, seen_text = True, False
    try:
        with open(path, encoding="utf-8") as f:  # universal newlines, as Path.read_text
            while True:
                chunk = f.read(max_chars)
                pending.append(chunk)
                seen_text = seen_text or (bool(chunk) and not chunk.isspace())
                if not chunk:
                    break
                if not seen_text:
                    continue
                buf = "".join(pending)
                cut = _safe_cut(buf) if len(buf) >= max_chars else 0
                if cut:
                    yield Segment(buf[:cut], first, False)
                    first = False
                    pending = [buf[cut:]]
                else:
                    pending = [buf]
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{path} is not valid UTF-8 (byte {e.start} of a read chunk: {e.object[e.start:e.start + 1]!r}); "
            f"convert it first, e.g. `iconv -f latin1 -t utf-8 {path} > {path.stem}.utf8.txt`"
        ) from None
    rest = "".join(pending)
    if seen_text:
        yield Segment(rest, first, True)


def _column_error(path: Path, column: str, available: list[str]) -> CorpusError:
    return CorpusError(f"{path} has no column {column!r}; it has {', '.join(map(repr, available)) or 'none'}; "
                       "choose one with --text-column")


def _jsonl_segments(path: Path, column: str) -> Iterator[Segment]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{path} line {n} is not JSON ({e.msg}); JSONL needs one object per line") from None
            if not isinstance(obj, dict):
                raise CorpusError(f"{path} line {n} is a JSON {type(obj).__name__}, not an object with a text field")
            if column not in obj:
                raise _column_error(path, column, list(obj))
            text = obj[column]
            if not isinstance(text, str):
                raise CorpusError(f"{path} line {n}: field {column!r} is a {type(text).__name__}, not a string")
            if text.strip():
                yield Segment(text, True, True)


def _parquet_segments(path: Path, column: str) -> Iterator[Segment]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CorpusError("reading Parquet needs pyarrow: `pip install pyarrow` (or `pip install flowlm[data]`)") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid for non-Parquet files
        raise CorpusError(f"{path} is not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    if column not in names:
        raise _column_error(path, column, names)
    for batch in pf.iter_batches(columns=[column], batch_size=1024):
        for text in batch.column(0).to_pylist():
            if isinstance(text, str) and text.strip():
                yield Segment(text, True, True)


def _hf_segments(path: Path, column: str) -> Iterator[Segment]:
    try:
        import datasets
    except ImportError:
        raise CorpusError("reading a `datasets` folder needs the datasets package: `pip install flowlm[data]`") from None
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise CorpusError(f"{path} is a DatasetDict without a 'train' split (it has {', '.join(ds)}); "
                              "save the split you want with save_to_disk and pass that folder")
        ds = ds["train"]
    if column not in ds.column_names:
        raise _column_error(path, column, list(ds.column_names))
    for batch in ds.select_columns([column]).iter(batch_size=1024):
        for text in batch[column]:
            if isinstance(text, str) and text.strip():
                yield Segment(text, True, True)


def iter_segments(inputs: list[InputFile], text_column: str = "text", max_chars: int = 1 << 20) -> Iterator[Segment]:
    """Every document of ``inputs`` in order, as :class:`Segment` pieces (see the module docstring)."""
    for f in inputs:
        if f.kind == "text":
            yield from _text_segments(f.path, max_chars)
        elif f.kind == "jsonl":
            yield from _jsonl_segments(f.path, text_column)
        elif f.kind == "parquet":
            yield from _parquet_segments(f.path, text_column)
        else:
            yield from _hf_segments(f.path, text_column)

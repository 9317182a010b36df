"""flowlm.evaluation: Gen PPL, unigram entropy, degeneracy flags, records, the evaluator LM.

Values are checked against hand computations (``math.log`` on explicit probability tables);
the real offline evaluator (SmolLM2-135M GGUF) is loaded once for the slow tests.
"""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flowlm.evaluation import (
    DEFAULT_EVALUATOR,
    EvalRecord,
    Evaluator,
    EvaluatorNotFoundError,
    degeneracy_flags,
    evaluate_samples,
    file_hash,
    gen_ppl,
    load_evaluator,
    load_record,
    load_records,
    mean_unigram_entropy,
    unigram_entropy,
)

# ---------------------------------------------------------------------------------------------
# a fake evaluator: a bigram LM over {<s>, a, b, c} with an explicit probability table

BOS, ALPHABET = 0, "abc"
# P[prev, next]; rows sum to 1; <s> is never predicted
P = torch.tensor(
    [
        [0.0, 0.5, 0.3, 0.2],  # after <s>
        [0.0, 0.25, 0.75, 0.0 + 1e-300],  # after a (c almost impossible, never used)
        [0.0, 0.9, 0.05, 0.05],  # after b
        [0.0, 0.4, 0.4, 0.2],  # after c
    ],
    dtype=torch.float64,
)


class BigramLM(torch.nn.Module):
    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.logits = table.clamp_min(1e-300).log()  # [V, V], float64

    def forward(self, input_ids, attention_mask=None):
        return self.logits[input_ids]  # [B, T, V]


def encode(text: str) -> list[int]:
    return [1 + ALPHABET.index(c) for c in text]


def fake_evaluator(prefix_id=BOS, max_length=64, table=P) -> Evaluator:
    return Evaluator(
        name="bigram", model=BigramLM(table), encode=encode, prefix_id=prefix_id, max_length=max_length,
        device=torch.device("cpu"),
    )


def test_gen_ppl_matches_hand_computation():
    ev = fake_evaluator()
    # "ab":  -log P[<s>,a] - log P[a,b] = -log .5 - log .75          (2 tokens)
    # "bba": -log .3 - log P[b,b] - log P[b,a] = -log .3 - log .05 - log .9   (3 tokens)
    nll_ab = -(math.log(0.5) + math.log(0.75))
    nll_bba = -(math.log(0.3) + math.log(0.05) + math.log(0.9))
    res = gen_ppl(["ab", "bba"], ev, batch_size=1)
    assert res.ppl == pytest.approx(math.exp((nll_ab + nll_bba) / 5), rel=1e-6)
    assert res.mean_sample_ppl == pytest.approx((math.exp(nll_ab / 2) + math.exp(nll_bba / 3)) / 2, rel=1e-6)
    assert res.sample_tokens == (2, 3)
    assert res.sample_nll == pytest.approx((nll_ab / 2, nll_bba / 3), rel=1e-6)
    assert res.n_truncated == res.n_empty == 0
    # batching and the sort by length do not change the numbers or their order
    again = gen_ppl(["ab", "bba"], ev, batch_size=8)
    assert again.sample_nll == pytest.approx(res.sample_nll, rel=1e-6)


def test_gen_ppl_without_prefix_scores_from_the_second_token():
    ev = fake_evaluator(prefix_id=None)
    res = gen_ppl(["bba"], ev)  # scores b->b and b->a only
    assert res.sample_tokens == (2,)
    assert res.ppl == pytest.approx(math.exp(-(math.log(0.05) + math.log(0.9)) / 2), rel=1e-6)


def test_gen_ppl_of_continuations_scores_only_after_the_prompt():
    ev = fake_evaluator()
    # prompt "ab", continuation "ba": only b->b and b->a count; prompt "a", continuation "b": a->b
    res = gen_ppl(["ba", "b"], ev, prefixes=["ab", "a"], batch_size=1)
    nll_1 = -(math.log(0.05) + math.log(0.9))
    nll_2 = -math.log(0.75)
    assert res.sample_tokens == (2, 1)
    assert res.sample_nll == pytest.approx((nll_1 / 2, nll_2), rel=1e-6)
    assert res.ppl == pytest.approx(math.exp((nll_1 + nll_2) / 3), rel=1e-6)
    # an empty prompt is plain Gen PPL
    assert gen_ppl(["bba"], ev, prefixes=[""]).ppl == pytest.approx(gen_ppl(["bba"], ev).ppl, rel=1e-12)
    with pytest.raises(ValueError, match="one prefix string per text"):
        gen_ppl(["ab"], ev, prefixes=["a", "b"])


def test_gen_ppl_truncates_to_the_evaluator_context():
    ev = fake_evaluator(max_length=3)  # <s> + 2 tokens
    res = gen_ppl(["abab", "c"], ev)
    assert res.sample_tokens == (2, 1)
    assert res.n_truncated == 1
    expected = -(math.log(0.5) + math.log(0.75) + math.log(0.2))
    assert res.ppl == pytest.approx(math.exp(expected / 3), rel=1e-6)


@given(st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=12), min_size=1, max_size=6), st.integers(1, 4))
def test_uniform_evaluator_has_perplexity_equal_to_its_vocabulary(texts, batch_size):
    uniform = torch.full((4, 4), 1 / 3, dtype=torch.float64)
    uniform[:, 0] = 0.0
    res = gen_ppl(texts, fake_evaluator(table=uniform), batch_size=batch_size)
    assert res.ppl == pytest.approx(3.0, rel=1e-6)
    assert res.mean_sample_ppl == pytest.approx(3.0, rel=1e-6)
    assert res.n_tokens == sum(map(len, texts))


@given(st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=10), min_size=1, max_size=6))
def test_corpus_ppl_is_a_token_weighted_geometric_mean_of_sample_ppls(texts):
    res = gen_ppl(texts, fake_evaluator(), batch_size=2)
    per = [math.exp(x) for x in res.sample_nll]
    assert min(per) * (1 - 1e-9) <= res.ppl <= max(per) * (1 + 1e-9)
    weighted = sum(k * x for k, x in zip(res.sample_tokens, res.sample_nll)) / res.n_tokens
    assert math.log(res.ppl) == pytest.approx(weighted, rel=1e-9, abs=1e-12)
    # AM >= GM: the per-sample mean is never below exp(mean of per-sample log-ppl)
    assert res.mean_sample_ppl >= math.exp(sum(res.sample_nll) / len(per)) * (1 - 1e-9)


def test_gen_ppl_bad_input_gives_clear_errors():
    ev = fake_evaluator()
    with pytest.raises(ValueError, match="no samples"):
        gen_ppl([], ev)
    with pytest.raises(ValueError, match="sample 1 .* no token to score"):
        gen_ppl(["ab", ""], ev)
    with pytest.raises(TypeError, match="not a single string"):
        gen_ppl("ab", ev)
    # (beartype's hook, on in the tests, rejects it first; without it the message says what to do)
    with pytest.raises(TypeError, match="decode token ids|texts"):
        gen_ppl([[1, 2]], ev)
    with pytest.raises(ValueError, match="all 2 samples are empty"):
        gen_ppl(["", ""], ev, skip_empty=True)
    res = gen_ppl(["ab", ""], ev, skip_empty=True)
    assert res.n_empty == 1 and res.sample_tokens == (2,)
    with pytest.raises(ValueError, match="max_length"):
        fake_evaluator(max_length=1)


# ---------------------------------------------------------------------------------------------
# unigram entropy


def test_unigram_entropy_of_known_distributions():
    tokens = torch.tensor([[0, 0, 1, 1], [0, 1, 2, 3], [5, 5, 5, 5], [0, 0, 0, 7]])
    h = unigram_entropy(tokens)
    expected = [math.log(2), math.log(4), 0.0, -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]
    assert h.dtype == torch.float64
    assert h.tolist() == pytest.approx(expected, abs=1e-12)
    assert mean_unigram_entropy(tokens) == pytest.approx(sum(expected) / 4, abs=1e-12)


def test_unigram_entropy_ignores_masked_positions():
    tokens = torch.tensor([[3, 4, 9, 9, 9]])
    mask = torch.tensor([[True, True, False, False, False]])
    assert unigram_entropy(tokens, mask).item() == pytest.approx(math.log(2), abs=1e-12)


@given(st.lists(st.integers(0, 20), min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_unigram_entropy_bounds_and_invariances(seq, rnd):
    tokens = torch.tensor([seq])
    h = unigram_entropy(tokens).item()
    distinct = len(set(seq))
    assert -1e-12 <= h <= math.log(distinct) + 1e-12
    # permuting positions or relabelling tokens changes nothing
    perm = seq[:]
    rnd.shuffle(perm)
    labels = list(range(21))
    rnd.shuffle(labels)
    assert unigram_entropy(torch.tensor([perm])).item() == pytest.approx(h, abs=1e-12)
    assert unigram_entropy(torch.tensor([[labels[x] for x in seq]])).item() == pytest.approx(h, abs=1e-12)


def test_unigram_entropy_bad_input():
    with pytest.raises(ValueError, match="empty batch"):
        unigram_entropy(torch.zeros(0, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="no unmasked token"):
        unigram_entropy(torch.tensor([[1, 2], [3, 4]]), torch.tensor([[True, True], [False, False]]))
    with pytest.raises(ValueError, match=">= 0"):
        unigram_entropy(torch.tensor([[1, -1]]))


def test_degeneracy_flags():
    assert degeneracy_flags(5.0, 40.0, reference_entropy=5.2) == []
    assert degeneracy_flags(2.0, 40.0, reference_entropy=5.2) == ["low_entropy"]
    assert degeneracy_flags(5.0, 800.0, reference_entropy=5.2) == ["high_gen_ppl"]
    assert degeneracy_flags(5.0, float("nan")) == ["high_gen_ppl"]
    assert degeneracy_flags(1.0, 10.0) == []  # no reference: entropy alone is not judged


def test_evaluate_samples_flags_repetitive_samples():
    ev = fake_evaluator()
    vocab_tokens = torch.tensor([[1, 2, 3, 1, 2, 3], [3, 2, 1, 3, 2, 1]])
    ref = mean_unigram_entropy(vocab_tokens)  # log 3
    rep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 2]])
    texts = ["aaaaaa", "aaaaab"]
    m = evaluate_samples(texts, rep, ev, reference_entropy=ref)
    assert "low_entropy" in m["flags"] and m["degenerate"]
    assert m["entropy"] < 0.8 * ref
    assert m["gen_ppl"] == pytest.approx(gen_ppl(texts, ev).ppl)
    json.dumps(m, allow_nan=False)  # JSON-ready
    ok = evaluate_samples(["abcabc", "cbacba"], vocab_tokens, ev, reference_entropy=ref)
    assert "low_entropy" not in ok["flags"]
    with pytest.raises(ValueError, match="texts\\[i\\] must decode tokens\\[i\\]"):
        evaluate_samples(["abc"], vocab_tokens, ev)


# ---------------------------------------------------------------------------------------------
# records


def test_record_round_trip_and_strict_json(tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights-1")
    rec = EvalRecord(
        method="FMLM",
        metrics={"gen_ppl": 42.0, "entropy": float("nan"), "flags": []},
        evaluator="bigram",
        n_samples=8,
        steps=2,
        nfe=2,
        seed=0,
        sampler={"name": "flow-map", "gamma": 0.0},
        checkpoint=str(ckpt),
        checkpoint_hash=file_hash(ckpt),
        config={"lr": 3e-4, "path": tmp_path},
        wall_time_s=4.0,
    )
    path = rec.save(tmp_path / "records" / "fmlm-2.json")
    data = json.loads(path.read_text())
    assert data["metrics"]["entropy"] is None  # strict JSON: NaN -> null
    assert data["wall_time_per_sample_s"] == pytest.approx(0.5)
    assert data["config"]["path"] == str(tmp_path)
    back = load_record(path)
    assert (back.method, back.steps, back.nfe, back.seed, back.n_samples) == ("FMLM", 2, 2, 0, 8)
    assert back.checkpoint_hash == rec.checkpoint_hash
    assert [r.method for r in load_records(path.parent)] == ["FMLM"]


def test_file_hash_tracks_content(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    c.write_bytes(b"other")
    assert file_hash(a) == file_hash(b) != file_hash(c)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        file_hash(tmp_path / "missing.pt")


def test_load_record_rejects_non_records(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not an evaluation record"):
        load_record(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_record(tmp_path / "y.json")


# ---------------------------------------------------------------------------------------------
# evaluator loading


def test_unknown_evaluator_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EvaluatorNotFoundError, match="no such directory"):
        load_evaluator(str(tmp_path / "no-such-dir"))
    with pytest.raises(EvaluatorNotFoundError, match="could not load the evaluator 'no-such-org/no-such-lm'"):
        load_evaluator("no-such-org/no-such-lm")
    with pytest.raises(EvaluatorNotFoundError, match="non-empty string"):
        load_evaluator("  ")
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(EvaluatorNotFoundError, match="built-in offline evaluators"):
        load_evaluator(str(tmp_path / "empty-model"))


@pytest.fixture(scope="module")
def smollm():
    # first load dequantizes the GGUF (~20 s) and caches it under $FLOWLM_CACHE; later loads < 5 s
    return load_evaluator(DEFAULT_EVALUATOR, device="cpu")


@pytest.mark.slow
def test_offline_evaluator_prefers_english_to_word_salad(smollm):
    assert load_evaluator("SmolLM2-135M", device="cpu") is smollm  # alias, in-process cache
    assert smollm.prefix_id == 0  # <|endoftext|>, the document separator of its pre-training data
    english = [
        "The quick brown fox jumps over the lazy dog. It was a sunny day and the children were playing "
        "in the park while their parents talked on the benches.",
        "She opened the door, looked outside, and decided that it was too cold to go for a walk.",
    ]
    rng = random.Random(0)
    salad = []
    for s in english:
        words = s.split()
        rng.shuffle(words)
        salad.append(" ".join(words))
    good, bad = gen_ppl(english, smollm), gen_ppl(salad, smollm)
    assert good.sample_tokens == bad.sample_tokens or abs(good.n_tokens - bad.n_tokens) <= 4
    assert good.ppl < 40 and bad.ppl > 10 * good.ppl
    # padding + attention mask: batching mixed lengths gives each sample's unbatched score
    texts = english + ["To be, or not to be: that is the question."]
    one = gen_ppl(texts, smollm, batch_size=1)
    many = gen_ppl(texts, smollm, batch_size=3)
    assert many.sample_nll == pytest.approx(one.sample_nll, rel=1e-4)


@pytest.mark.slow
def test_a_model_directory_works_as_evaluator(smollm):
    # the on-disk cache of the built-in evaluator is a plain save_pretrained folder
    from flowlm._io import cache_root

    (folder,) = (cache_root() / "evaluators").glob("smollm2-135m-*")
    as_dir = load_evaluator(str(folder), device="cpu")
    assert as_dir.name == str(folder) and as_dir.prefix_id == smollm.prefix_id
    text = ["Now is the winter of our discontent made glorious summer by this sun of York."]
    assert gen_ppl(text, as_dir).ppl == pytest.approx(gen_ppl(text, smollm).ppl, rel=1e-5)


r"""Generative perplexity: how likely a frozen evaluator LM finds the generated text.

For samples decoded to text :math:`s_1..s_n`, each is re-tokenized by the evaluator,
:math:`w^{(i)} = (w_0, w_1, .., w_{K_i})` with :math:`w_0` the evaluator's document-start token
(``<|endoftext|>`` for GPT-2/SmolLM, else BOS, else EOS; see
:attr:`~flowlm.evaluation.evaluators.Evaluator.prefix_id`), truncated to the evaluator's context
``max_length`` (prefix included). Every token after the prefix is scored:

.. math::
    \mathrm{NLL}_i = -\sum_{k=1}^{K_i} \log p(w_k \mid w_{<k}), \qquad
    \text{Gen PPL} = \exp\Big(\frac{\sum_i \mathrm{NLL}_i}{\sum_i K_i}\Big)

(corpus level: every scored token weighs the same), and the per-sample mean
:math:`\frac1n \sum_i \exp(\mathrm{NLL}_i / K_i)`.

EOS handling: samples arrive as text, i.e. after the flowlm tokenizer's ``decode``, which drops its
BOS/EOS/PAD tokens (a sample that crosses a document boundary is scored as one text). The
evaluator's document-start token is prepended (so the first word is scored in context "start of a
document") and no EOS is appended: fixed-length samples are cut mid-text, and the evaluator is not
asked to predict an ending. A sample with no scored token (empty text) is an error unless
``skip_empty=True``, in which case it is left out and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from flowlm.evaluation.evaluators import Evaluator

__all__ = ["GenPPL", "gen_ppl", "score_tokens", "encode_for_scoring"]


@dataclass(frozen=True)
class GenPPL:
    """Generative perplexity of a set of samples.

    Attributes:
        ppl: corpus-level ``exp(Σ NLL / Σ K)``.
        mean_sample_ppl: mean over samples of ``exp(NLL_i / K_i)``.
        sample_nll: mean NLL per scored token of each scored sample (nats).
        sample_tokens: ``K_i``, the number of scored evaluator tokens of each scored sample.
        n_truncated: samples cut to the evaluator's context.
        n_empty: samples left out because they had no token to score (``skip_empty=True``).
        evaluator: the evaluator's name.
    """

    ppl: float
    mean_sample_ppl: float
    sample_nll: tuple[float, ...]
    sample_tokens: tuple[int, ...]
    n_truncated: int
    n_empty: int
    evaluator: str

    @property
    def n_tokens(self) -> int:
        return sum(self.sample_tokens)

    @property
    def mean_nll(self) -> float:
        """``Σ NLL / Σ K`` (nats per evaluator token); ``ppl = exp(mean_nll)``."""
        return math.log(self.ppl)

    def as_dict(self) -> dict:
        return {
            "gen_ppl": self.ppl,
            "gen_ppl_sample_mean": self.mean_sample_ppl,
            "mean_nll": self.mean_nll,
            "n_scored_samples": len(self.sample_tokens),
            "n_evaluator_tokens": self.n_tokens,
            "n_truncated": self.n_truncated,
            "n_empty": self.n_empty,
            "evaluator": self.evaluator,
        }


def encode_for_scoring(text: str, evaluator: Evaluator) -> tuple[list[int], bool]:
    """``[prefix] + encode(text)`` cut to ``evaluator.max_length``; returns (ids, truncated)."""
    ids = evaluator.encode(text)
    if evaluator.prefix_id is not None:
        ids = [evaluator.prefix_id, *ids]
    truncated = len(ids) > evaluator.max_length
    return ids[: evaluator.max_length], truncated


@torch.no_grad()
def score_tokens(
    evaluator: Evaluator, ids: Int[Tensor, "B T"], mask: Bool[Tensor, "B T"]
) -> Float[Tensor, "B T-1"]:
    r"""Per-token NLL :math:`-\log p(w_k \mid w_{<k})` for ``k = 1..T-1``, zero where ``mask[:, k]`` is False.

    ``mask`` marks real (non-padding) tokens; padding must be on the right. Computed in float32.
    """
    out = evaluator.model(input_ids=ids, attention_mask=mask.long())
    logits = out.logits if hasattr(out, "logits") else out  # [B, T, V_e]
    logits = logits[:, :-1].float()  # [B, T-1, V_e]: position k-1 predicts token k
    target = ids[:, 1:]  # [B, T-1]
    nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")  # [B, T-1]
    return nll * mask[:, 1:]


def gen_ppl(
    texts: Sequence[str],
    evaluator: Evaluator,
    batch_size: int = 8,
    skip_empty: bool = False,
    prefixes: Sequence[str] | None = None,
) -> GenPPL:
    r"""Generative perplexity of ``texts`` under ``evaluator`` (see the module docstring for the formula).

    ``prefixes`` (one string per text): the Gen PPL of continuations given their prompts. Text ``i`` is
    scored as ``prefixes[i] + texts[i]`` and only the evaluator tokens after the first ``n_i`` count,
    where ``n_i`` is the length of the prefix's own encoding (a token that merges across the boundary
    counts with the continuation): :math:`\exp(\sum_i\sum_{k\ge n_i} -\log p(w_k\mid w_{<k}) / \sum_i K_i)`.

    Samples are sorted by length and scored ``batch_size`` at a time (right-padded, masked), under
    ``no_grad`` on ``evaluator.device``.

    Raises:
        ValueError: ``texts`` is empty or not a list of strings, or a sample has no token to score
            (and ``skip_empty`` is False), or every sample is empty.
    """
    if isinstance(texts, str):
        raise TypeError("gen_ppl: texts must be a sequence of strings (one per sample), not a single string")
    texts = list(texts)
    if not texts:
        raise ValueError("gen_ppl: no samples given; pass at least one decoded sample text")
    bad = [i for i, s in enumerate(texts) if not isinstance(s, str)]
    if bad:
        raise TypeError(
            f"gen_ppl: sample {bad[0]} is a {type(texts[bad[0]]).__name__}, not a str; decode token ids "
            "with the model's tokenizer first"
        )
    if batch_size < 1:
        raise ValueError(f"gen_ppl: batch_size must be >= 1, got {batch_size}")
    if prefixes is not None and (isinstance(prefixes, str) or len(prefixes) != len(texts)):
        raise ValueError(f"gen_ppl: give one prefix string per text ({len(texts)} texts)")

    encoded: list[list[int]] = []
    skips: list[int] = []  # NLL positions of the prompt, not scored
    n_truncated = n_empty = 0
    for i, text in enumerate(texts):
        skip = 0
        if prefixes is not None:
            skip = len(encode_for_scoring(prefixes[i], evaluator)[0]) - 1
            text = prefixes[i] + text
        ids, truncated = encode_for_scoring(text, evaluator)
        if len(ids) < 2 + skip:  # nothing after the prefix
            if not skip_empty:
                raise ValueError(
                    f"gen_ppl: sample {i} ({text!r}) has no token to score; generative perplexity is "
                    "undefined for empty text. Drop empty samples or pass skip_empty=True to leave them "
                    "out (they are counted in n_empty)"
                )
            n_empty += 1
            continue
        n_truncated += truncated
        encoded.append(ids)
        skips.append(skip)
    if not encoded:
        raise ValueError(f"gen_ppl: all {len(texts)} samples are empty; there is nothing to score")

    order = sorted(range(len(encoded)), key=lambda j: -len(encoded[j]))
    nll_sum = [0.0] * len(encoded)
    pad = evaluator.prefix_id if evaluator.prefix_id is not None else 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = len(encoded[idx[0]])  # the longest in this batch (sorted)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)  # [b, T]
        mask = torch.zeros((len(idx), width), dtype=torch.bool)  # [b, T]
        for row, j in enumerate(idx):
            ids[row, : len(encoded[j])] = torch.tensor(encoded[j])
            mask[row, : len(encoded[j])] = True
        nll = score_tokens(evaluator, ids.to(evaluator.device), mask.to(evaluator.device))  # [b, T-1]
        for row, j in enumerate(idx):
            nll_sum[j] = float(nll[row, skips[j]:].double().sum())

    counts = [len(ids) - 1 - skip for ids, skip in zip(encoded, skips)]
    mean_nll = sum(nll_sum) / sum(counts)
    per_sample = [s / k for s, k in zip(nll_sum, counts)]
    return GenPPL(
        ppl=math.exp(mean_nll),
        mean_sample_ppl=sum(math.exp(x) for x in per_sample) / len(per_sample),
        sample_nll=tuple(per_sample),
        sample_tokens=tuple(counts),
        n_truncated=n_truncated,
        n_empty=n_empty,
        evaluator=evaluator.name,
    )

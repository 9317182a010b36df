"""The metrics of one set of samples: Gen PPL + unigram entropy + degeneracy flags.

Degeneracy flags (strings in ``metrics["flags"]``):

* ``"low_entropy"``: mean unigram entropy below ``min_entropy_ratio`` (default 0.8) times that of
  held-out real text of the same length and tokenizer (repetitive, mode-collapsed samples);
* ``"high_gen_ppl"``: Gen PPL above ``max_gen_ppl`` (default 500) or not finite (noise).

A low Gen PPL with a ``low_entropy`` flag is not a good result; tables show the flags.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from jaxtyping import Bool, Int
from torch import Tensor

from flowlm.evaluation.entropy import unigram_entropy
from flowlm.evaluation.evaluators import Evaluator
from flowlm.evaluation.genppl import gen_ppl

__all__ = ["MAX_GEN_PPL", "MIN_ENTROPY_RATIO", "degeneracy_flags", "evaluate_samples"]

MAX_GEN_PPL = 500.0
MIN_ENTROPY_RATIO = 0.8


def degeneracy_flags(
    entropy: float,
    gen_ppl: float,
    reference_entropy: float | None = None,
    min_entropy_ratio: float = MIN_ENTROPY_RATIO,
    max_gen_ppl: float = MAX_GEN_PPL,
) -> list[str]:
    """Flags for samples whose entropy is far below the data's or whose Gen PPL is too high."""
    flags = []
    if reference_entropy is not None and entropy < min_entropy_ratio * reference_entropy:
        flags.append("low_entropy")
    if not math.isfinite(gen_ppl) or gen_ppl > max_gen_ppl:
        flags.append("high_gen_ppl")
    return flags


def evaluate_samples(
    texts: Sequence[str],
    tokens: Int[Tensor, "B L"],
    evaluator: Evaluator,
    mask: Bool[Tensor, "B L"] | None = None,
    reference_entropy: float | None = None,
    batch_size: int = 8,
    skip_empty: bool = True,
    min_entropy_ratio: float = MIN_ENTROPY_RATIO,
    max_gen_ppl: float = MAX_GEN_PPL,
) -> dict[str, Any]:
    """Score decoded samples: Gen PPL of ``texts`` and unigram entropy of the model's ``tokens``.

    ``texts[i]`` must be the decoding of ``tokens[i]`` (``mask`` marks the positions that count for
    entropy, e.g. non-padding). Empty texts are left out of Gen PPL and counted (``n_empty``)
    unless ``skip_empty=False``. Returns a JSON-ready dict (see
    :meth:`flowlm.evaluation.genppl.GenPPL.as_dict` for the Gen PPL keys) plus ``entropy``
    (mean, nats), ``entropy_std``, ``flags`` and ``degenerate``.
    """
    if len(texts) != tokens.shape[0]:
        raise ValueError(
            f"evaluate_samples: {len(texts)} texts but {tokens.shape[0]} token rows; texts[i] must decode tokens[i]"
        )
    ppl = gen_ppl(texts, evaluator, batch_size=batch_size, skip_empty=skip_empty)
    h = unigram_entropy(tokens, mask)  # [B]
    entropy = float(h.mean())
    flags = degeneracy_flags(entropy, ppl.ppl, reference_entropy, min_entropy_ratio, max_gen_ppl)
    return {
        **ppl.as_dict(),
        "entropy": entropy,
        "entropy_std": float(h.std()) if h.numel() > 1 else 0.0,
        "reference_entropy": reference_entropy,
        "flags": flags,
        "degenerate": bool(flags),
    }

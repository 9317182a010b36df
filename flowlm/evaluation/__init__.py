"""Evaluation of generated text: generative perplexity, unigram entropy, JSON records.

* :mod:`~flowlm.evaluation.evaluators`: load (and cache) the frozen evaluator LM; the default,
  SmolLM2-135M from a GGUF file, works offline.
* :mod:`~flowlm.evaluation.genppl`: corpus-level Gen PPL ``exp(Σ NLL / Σ tokens)`` and the
  per-sample mean.
* :mod:`~flowlm.evaluation.entropy`: per-sample unigram entropy (nats).
* :mod:`~flowlm.evaluation.metrics`: both together plus degeneracy flags.
* :mod:`~flowlm.evaluation.records`: one JSON record per evaluation.

Nothing here imports a network, a sampler or the training loop; ``transformers`` is imported only
when an evaluator is loaded.
"""

from flowlm.evaluation.entropy import mean_unigram_entropy, unigram_entropy
from flowlm.evaluation.evaluators import (
    BUILTIN_EVALUATORS,
    DEFAULT_EVALUATOR,
    Evaluator,
    EvaluatorNotFoundError,
    check_evaluator,
    load_evaluator,
)
from flowlm.evaluation.genppl import GenPPL, gen_ppl, score_tokens
from flowlm.evaluation.metrics import MAX_GEN_PPL, MIN_ENTROPY_RATIO, degeneracy_flags, evaluate_samples
from flowlm.evaluation.records import EvalRecord, file_hash, load_record, load_records

__all__ = [
    "BUILTIN_EVALUATORS",
    "DEFAULT_EVALUATOR",
    "Evaluator",
    "EvaluatorNotFoundError",
    "check_evaluator",
    "load_evaluator",
    "GenPPL",
    "gen_ppl",
    "score_tokens",
    "unigram_entropy",
    "mean_unigram_entropy",
    "MAX_GEN_PPL",
    "MIN_ENTROPY_RATIO",
    "degeneracy_flags",
    "evaluate_samples",
    "EvalRecord",
    "file_hash",
    "load_record",
    "load_records",
]

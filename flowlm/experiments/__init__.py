"""Experiments: harnesses that train, sample and compare, built on every layer below.

* :mod:`~flowlm.experiments.toy_distillers`: the three distillers side by side on a toy law with an
  exact likelihood (:func:`compare_distillers` → :class:`DistillerComparison`).

Experiments sit above training, data and evaluation (DESIGN §4); only the CLI imports them.
"""

from flowlm.experiments.toy_distillers import (
    ComparisonConfig,
    DistillerComparison,
    RunRecord,
    all_sequences,
    compare_distillers,
    sample_tv,
    total_variation,
)

__all__ = [
    "compare_distillers",
    "DistillerComparison",
    "ComparisonConfig",
    "RunRecord",
    "all_sequences",
    "total_variation",
    "sample_tv",
]

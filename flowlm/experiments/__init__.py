"""Experiments: harnesses that train, sample and compare, built on every layer below.

* :mod:`~flowlm.experiments.suites` / :mod:`~flowlm.experiments.runner`: ``flowlm experiment`` on real
  text — the ``distillers``, ``baselines``, ``ablations`` and ``guidance`` suites (:func:`run_suite` →
  :class:`SuiteResult`; :func:`estimate_suite` → :class:`SuiteEstimate`, the up-front run-time estimate).
* :mod:`~flowlm.experiments.toy_distillers`: the three distillers side by side on a toy law with an
  exact likelihood (:func:`compare_distillers` → :class:`DistillerComparison`).

Experiments sit above training, data and evaluation (DESIGN §4); only the CLI imports them.
"""

from flowlm.experiments.estimate import SuiteEstimate, estimate_suite
from flowlm.experiments.runner import ResultRow, StageResult, SuiteResult, SummaryRow, load_suite_result, run_suite
from flowlm.experiments.suites import SUITES, ExperimentError, Suite, build_suite
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
    "run_suite",
    "estimate_suite",
    "SuiteEstimate",
    "load_suite_result",
    "SuiteResult",
    "ResultRow",
    "SummaryRow",
    "StageResult",
    "SUITES",
    "Suite",
    "build_suite",
    "ExperimentError",
    "compare_distillers",
    "DistillerComparison",
    "ComparisonConfig",
    "RunRecord",
    "all_sequences",
    "total_variation",
    "sample_tv",
]

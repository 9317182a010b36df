"""Exact oracles: closed-form denoisers of toy data laws and their exact flow maps.

Each oracle is a :class:`~flowlm.denoisers.Denoiser` (the two-time one a
:class:`~flowlm.denoisers.TwoTimeDenoiser`) built for one interpolant, so it can stand in for a
trained network anywhere (samplers, distillers, tests); :func:`total_variation` scores samples
against the exact law.
"""

from flowlm.oracles.evidence import evidence_scale, log_floor, tempered_scores
from flowlm.oracles.factorized import FactorizedCategorical
from flowlm.oracles.finite_set import FiniteSequences
from flowlm.oracles.flow_map import ExactFlowMap, ExactTwoTimeDenoiser
from flowlm.oracles.tv import all_sequences, total_variation, total_variation_to_probs

__all__ = [
    "FactorizedCategorical",
    "FiniteSequences",
    "ExactFlowMap",
    "ExactTwoTimeDenoiser",
    "evidence_scale",
    "log_floor",
    "tempered_scores",
    "total_variation",
    "total_variation_to_probs",
    "all_sequences",
]

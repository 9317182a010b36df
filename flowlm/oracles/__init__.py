"""Exact oracles: closed-form denoisers of toy data laws and their exact flow maps.

Each oracle satisfies the :class:`~flowlm.denoisers.Denoiser` protocol, so it can stand in for a
trained network anywhere (samplers, distillers, tests).
"""

from flowlm.oracles.evidence import evidence_scale, log_floor, tempered_scores
from flowlm.oracles.factorized import FactorizedCategorical
from flowlm.oracles.finite_set import FiniteSequences
from flowlm.oracles.flow_map import ExactFlowMap, ExactTwoTimeDenoiser

__all__ = [
    "FactorizedCategorical",
    "FiniteSequences",
    "ExactFlowMap",
    "ExactTwoTimeDenoiser",
    "evidence_scale",
    "log_floor",
    "tempered_scores",
]

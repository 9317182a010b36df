"""Models: :class:`FLM` (flow language model) and :class:`FMLM` (its distilled flow map)."""

from flowlm.models.base import FlowModel
from flowlm.models.flm import FLM
from flowlm.models.fmlm import FMLM

__all__ = ["FlowModel", "FLM", "FMLM"]

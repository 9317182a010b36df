"""Models: :class:`FLM` (flow language model), :class:`FMLM` (its distilled flow map), and the
same-backbone baselines :class:`AR` (autoregressive) and :class:`MDLM` (masked diffusion)."""

from flowlm.models.ar import AR
from flowlm.models.base import FlowModel
from flowlm.models.flm import FLM
from flowlm.models.fmlm import FMLM
from flowlm.models.mdlm import MDLM

__all__ = ["FlowModel", "FLM", "FMLM", "AR", "MDLM"]

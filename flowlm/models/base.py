"""What FLM and FMLM share: a DiT, an interpolant, a t ↔ τ schedule and the state space."""

from __future__ import annotations

from torch import nn

from flowlm.interpolants import DecodingErrorSchedule, Interpolant, Linear, TimeSchedule
from flowlm.nets import DiT, DiTConfig, ProjectedSpace
from flowlm.states import OneHotSpace

__all__ = ["FlowModel"]


class FlowModel(nn.Module):
    """Abstract base: builds ``net`` (:class:`~flowlm.nets.DiT`), ``interpolant`` (default
    :class:`~flowlm.interpolants.Linear`), ``schedule`` (default
    :class:`~flowlm.interpolants.DecodingErrorSchedule` of the vocabulary and interpolant) and
    ``space`` (:class:`~flowlm.nets.ProjectedSpace` ``h = x @ E`` when ``projected``, else the
    V-wide :class:`~flowlm.states.OneHotSpace`)."""

    def __init__(
        self,
        config: DiTConfig,
        interpolant: Interpolant | None = None,
        schedule: TimeSchedule | None = None,
        projected: bool = True,
    ) -> None:
        super().__init__()
        self.config = config
        self.net = DiT(config)
        self.interpolant = interpolant if interpolant is not None else Linear()
        self.schedule = schedule if schedule is not None else DecodingErrorSchedule(config.vocab_size, self.interpolant)
        self.projected = bool(projected)
        self.space = ProjectedSpace(self.net) if projected else OneHotSpace(config.vocab_size)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

"""What FLM and FMLM share: a DiT, an interpolant, a t ↔ τ schedule and the state space."""

from __future__ import annotations

from typing import Any

import torch
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

    def _run_sampler(
        self, sampler: Any, network: Any, batch: int, length: int, generator: torch.Generator | None
    ) -> Any:
        """Draw x0 ~ the space's noise and run ``sampler(network, interpolant, schedule, x0, space)``
        with the network in eval mode (restored afterwards)."""
        if length > self.config.max_length:
            raise ValueError(f"length {length} exceeds the model's max_length {self.config.max_length}")
        was_training = self.net.training
        self.net.eval()
        try:
            x0 = self.space.noise(batch, length, device=self.net.E.device, dtype=self.net.E.dtype, generator=generator)
            return sampler(network, self.interpolant, self.schedule, x0, space=self.space)
        finally:
            self.net.train(was_training)

    def extra_repr(self) -> str:
        return f"interpolant={self.interpolant!r}, schedule={self.schedule!r}, projected={self.projected}"

    def save_pretrained(self, directory: Any, tokenizer: Any = None) -> Any:
        """Write this model in the Hugging Face Hub layout (``config.json`` + ``model.safetensors`` +
        ``tokenizer.json``); :func:`flowlm.hub.from_pretrained` reads it back. See :mod:`flowlm.hub.pretrained`."""
        from flowlm.hub.pretrained import save_pretrained

        return save_pretrained(self, directory, tokenizer)

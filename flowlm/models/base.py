"""What FLM and FMLM share: a DiT, a :class:`flowlm.Flow` (interpolant + t ↔ τ schedule), the state
space, and one ``sample`` signature."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from flowlm.flow import Flow
from flowlm.interpolants import Interpolant, Linear, TimeSchedule
from flowlm.nets import DiT, DiTConfig, ProjectedSpace
from flowlm.samplers import SamplerOutput
from flowlm.states import OneHotSpace

__all__ = ["FlowModel"]


class FlowModel(nn.Module):
    """Abstract base: builds ``net`` (:class:`~flowlm.nets.DiT`), holds ``flow`` and ``space``
    (:class:`~flowlm.nets.ProjectedSpace` ``h = x @ E`` when ``projected``, else the V-wide
    :class:`~flowlm.states.OneHotSpace`).

    ``flow`` defaults to the paper's flow, ``Flow.decoding_error(Linear(), config.vocab_size)``
    (stated here, and in the checkpoint's config). ``kind`` is ``"flm"`` or ``"fmlm"``: callers
    branch on it, never on the class name.
    """

    kind: ClassVar[str] = "flow"

    def __init__(self, config: DiTConfig, flow: Flow | None = None, projected: bool = True) -> None:
        super().__init__()
        self.config = config
        self.net = DiT(config)
        if flow is None:
            flow = Flow.decoding_error(Linear(), config.vocab_size)
        if not isinstance(flow, Flow):
            raise TypeError(f"flow must be a flowlm.Flow (e.g. Flow.decoding_error(Cosine(), V)), got {type(flow).__name__}")
        if flow.vocab_size is not None and flow.vocab_size != config.vocab_size:
            raise ValueError(f"the flow is for vocabulary {flow.vocab_size} but the network's is {config.vocab_size}")
        self.flow = flow
        self.projected = bool(projected)
        self.space = ProjectedSpace(self.net) if projected else OneHotSpace(config.vocab_size)

    @property
    def interpolant(self) -> Interpolant:
        return self.flow.interpolant

    @property
    def schedule(self) -> TimeSchedule:
        return self.flow.schedule

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def default_sampler(self, n_steps: int, gamma: float) -> Any:
        """The sampler used when ``sample`` gets none."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(
        self,
        batch: int,
        length: int,
        n_steps: int | None = None,
        *,
        sampler: Any = None,
        gamma: float = 0.0,
        prompt: Any = None,
        generator: torch.Generator | None = None,
    ) -> SamplerOutput:
        """Generate ``batch`` sequences of ``length`` tokens with ``n_steps`` steps of the model's
        default sampler (FLM: Euler; FMLM: the flow map, ``gamma`` re-noising), or with ``sampler``.
        The network runs in eval mode (restored afterwards). ``prompt``: a :class:`flowlm.Prompt` of
        ``length`` positions (batch 1 or ``batch``) held clean (t = τ = 1). Returns ``SamplerOutput``."""
        if sampler is None:
            if n_steps is None:
                raise ValueError("sample needs n_steps (or a sampler)")
            sampler = self.default_sampler(n_steps, gamma)
        elif n_steps is not None or gamma:
            raise ValueError("give either sampler= or n_steps/gamma, not both")
        if length > self.config.max_length:
            raise ValueError(f"length {length} exceeds the model's max_length {self.config.max_length}")
        if prompt is not None:
            from flowlm.prompt import Prompt

            if not isinstance(prompt, Prompt):
                raise TypeError(f"prompt must be a flowlm.Prompt (e.g. Prompt.prefix(ids, length)), got {type(prompt).__name__}")
            if prompt.length > self.config.max_length:
                raise ValueError(
                    f"the prompt has {prompt.length} positions but the model handles at most "
                    f"{self.config.max_length}; shorten it"
                )
            prompt = prompt.validate(self.vocab_size, batch, length).to(self.net.E.device)
        was_training = self.net.training
        self.net.eval()
        try:
            x0 = self.space.noise(batch, length, device=self.net.E.device, dtype=self.net.E.dtype, generator=generator)
            return sampler(self.model_fn, self.flow, x0, space=self.space, prompt=prompt, generator=generator)
        finally:
            self.net.train(was_training)

    @property
    def model_fn(self) -> Any:
        """What the samplers call: the denoiser (FLM) or the two-time denoiser (FMLM)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, flow={self.flow!r}, projected={self.projected}"

    def save_pretrained(self, directory: Any, tokenizer: Any = None) -> Any:
        """Write this model in the Hugging Face Hub layout (``config.json`` + ``model.safetensors`` +
        ``tokenizer.json``); :func:`flowlm.hub.from_pretrained` reads it back. See :mod:`flowlm.hub.pretrained`."""
        from flowlm.hub.pretrained import save_pretrained

        return save_pretrained(self, directory, tokenizer)

r"""FMLM: a flow-map language model, a two-time denoiser δ̂(x, s, t) distilled from an FLM.

The flow map is :math:`X_{s,t}(x) = (\alpha_t/\alpha_s)\,x + \alpha_t(\rho_t-\rho_s)\,\hat\delta_{s,t}(x)`
(DESIGN §1). :meth:`FMLM.from_teacher` copies the teacher's network, adds a second time embedder
for :math:`\tau_t` and zeroes its last layer, so at step 0 :math:`\hat\delta(x,s,t) = \hat D(x,s)`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from flowlm.flow import Flow
from flowlm.models.base import FlowModel
from flowlm.nets import DiTConfig, NetTwoTimeDenoiser

__all__ = ["FMLM"]


class FMLM(FlowModel):
    """A few-step generator. Attributes: ``net`` (two-time DiT), ``flow``, ``space``, ``delta``
    (``delta(x, s, t) -> logits``), ``vocab_size``, ``config``, ``kind = "fmlm"``."""

    kind = "fmlm"

    def __init__(self, config: DiTConfig, flow: Flow | None = None, projected: bool = True) -> None:
        if not config.two_time:
            config = config.replace(two_time=True)
        super().__init__(config, flow, projected)
        # a view of self.net, not a second registered submodule (state_dict keys stay net.*)
        object.__setattr__(self, "delta", NetTwoTimeDenoiser(self.net, self.flow, self.space))

    @classmethod
    def from_teacher(cls, flm: nn.Module) -> "FMLM":
        """Student initialized from a trained FLM: teacher weights + a zeroed second time embedder.

        The second embedder's last layer is zero, so emb₂(τ_t) = 0 and δ̂(x, s, t) = D̂(x, s) exactly.
        """
        student = cls(flm.config.replace(two_time=True), flm.flow, projected=flm.projected)
        teacher_state = copy.deepcopy(flm.net.state_dict())
        missing, unexpected = student.net.load_state_dict(teacher_state, strict=False)
        if unexpected or any(not k.startswith("sigma_map_prime.") for k in missing):
            raise RuntimeError(f"teacher/student mismatch: missing {missing}, unexpected {unexpected}")
        # the second embedder starts as a copy of the first (a sensible feature map) with a zero output layer
        student.net.sigma_map_prime.load_state_dict(copy.deepcopy(flm.net.sigma_map.state_dict()))
        nn.init.zeros_(student.net.sigma_map_prime.last.weight)
        nn.init.zeros_(student.net.sigma_map_prime.last.bias)
        return student.to(flm.net.E.device)

    def forward(self, x: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """δ̂ logits at interpolation times (s, t)."""
        return self.delta(x, s, t)

    @property
    def model_fn(self) -> NetTwoTimeDenoiser:
        return self.delta

    def default_sampler(self, n_steps: int, gamma: float) -> Any:
        """:class:`flowlm.flowmaps.FlowMapSampler` (γ: re-noising)."""
        from flowlm.flowmaps import FlowMapSampler

        return FlowMapSampler(n_steps, gamma)

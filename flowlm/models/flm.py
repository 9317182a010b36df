r"""FLM: a flow language model = interpolant + time schedule + network denoiser (+ sampler).

Training (DESIGN §1): per sequence draw model time :math:`\tau\sim U[0,1]` (stratified over the
batch), set :math:`t = t(\tau)`, build the noisy state in the model's state space

.. math::
    x_t = \alpha(t)\,x_0 + \beta(t)\,x_1 \quad(\text{projected: } h_t = \alpha(t)\,x_0E + \beta(t)\,E[\text{tokens}]),

and minimize the token-level cross-entropy of ``net(h_t, τ)`` against the clean tokens
(:func:`flowlm.denoisers.flm_loss`, no time weighting; computed by the chunked
:func:`flowlm.nets.linear_softcap_cross_entropy`, which never forms the ``[B, L, V]`` logits). With ``projected=True`` (default) the
noise is drawn directly as :math:`x_0E\sim\mathcal N(0,E^\top E)` (:class:`~flowlm.nets.ProjectedSpace`).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from flowlm.interpolants import Interpolant, TimeSchedule, stratified_uniform
from flowlm.interpolants.base import expand_time
from flowlm.models.base import FlowModel
from flowlm.nets import DiTConfig, NetDenoiser, linear_softcap_cross_entropy

__all__ = ["FLM"]


class FLM(FlowModel):
    """A flow language model.

    Attributes: ``net`` (:class:`~flowlm.nets.DiT`), ``space`` (where the flow's state lives),
    ``interpolant``, ``schedule`` (t ↔ τ), ``denoiser`` (``den(x, t) -> logits``), ``vocab_size``,
    ``config``.
    """

    def __init__(
        self,
        config: DiTConfig,
        interpolant: Interpolant | None = None,
        schedule: TimeSchedule | None = None,
        projected: bool = True,
    ) -> None:
        if config.two_time:
            raise ValueError("FLM needs a single-time DiT (two_time=False); two-time nets belong to FMLM")
        super().__init__(config, interpolant, schedule, projected)
        # a view of self.net, not a second registered submodule (state_dict keys stay net.*)
        object.__setattr__(self, "denoiser", NetDenoiser(self.net, self.schedule, self.space))

    def noisy_state(
        self, tokens: Int[Tensor, "B L"], t: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """x_t = α(t)·x0 + β(t)·x1 in the model's state space (``[B, L, d]`` projected, else ``[B, L, V]``)."""
        B, L = tokens.shape
        x1 = self.space.one_hot(tokens)  # [B, L, D]
        x0 = self.space.noise(B, L, device=tokens.device, dtype=x1.dtype, generator=generator)  # [B, L, D]
        a, b = self.interpolant.alpha(t).to(x1.dtype), self.interpolant.beta(t).to(x1.dtype)
        return x0.mul_(expand_time(a, x1)).addcmul_(expand_time(b, x1), x1)  # x0 is fresh: update in place

    def loss(
        self,
        tokens: Int[Tensor, "B L"],
        mask: Bool[Tensor, "B L"] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Any]]:
        """FLM loss on a batch of clean token sequences; returns ``(loss, metrics)``."""
        B = tokens.shape[0]
        dev = tokens.device
        tau = stratified_uniform(B, device=dev, generator=generator)  # [B], model time
        t = self.schedule.t_of_tau(tau.double()).float()  # [B], interpolation time
        xt = self.noisy_state(tokens, t, generator=generator)  # [B, L, D]
        features = self.net(self.denoiser.project(xt), tau, return_features=True)  # [B, L, d]
        # = flm_loss(net(h, τ), tokens, mask), without materializing [B, L, V] logits
        loss = linear_softcap_cross_entropy(
            features, self.net.head.weight, self.net.head.bias, tokens, mask, cap=self.config.out_softcap
        )
        return loss, {"loss": loss.detach()}

    def forward(self, tokens: Int[Tensor, "B L"], mask: Bool[Tensor, "B L"] | None = None) -> Tensor:
        """The scalar FLM loss (so ``FLM`` can be wrapped by data-parallel / compile tools)."""
        return self.loss(tokens, mask)[0]

    @torch.no_grad()
    def sample(
        self,
        batch: int,
        length: int,
        n_steps: int,
        sampler: Any = None,
        generator: torch.Generator | None = None,
    ):
        """Generate ``batch`` sequences of ``length`` tokens with ``n_steps`` sampler steps.

        Default sampler: :class:`flowlm.samplers.EulerSampler` on the model's state space.
        Returns the sampler's ``SamplerOutput(probs, tokens, nfe)``.
        """
        if sampler is None:
            from flowlm.samplers import EulerSampler

            sampler = EulerSampler(n_steps)
        return self._run_sampler(sampler, self.denoiser, batch, length, generator)

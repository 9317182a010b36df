r"""FLM: a flow language model = interpolant + time schedule + network denoiser (+ sampler).

Training (DESIGN §1): per sequence draw model time :math:`\tau\sim U[0,1]` (stratified over the
batch), set :math:`t = t(\tau)`, build the noisy state in the model's state space with
``flow.noisy(tokens, tau=τ, space=space)``

.. math::
    x_t = \alpha(t)\,x_0 + \beta(t)\,x_1 \quad(\text{projected: } h_t = \alpha(t)\,x_0E + \beta(t)\,E[\text{tokens}]),

and minimize the token-level cross-entropy of ``net(h_t, τ)`` (the drawn τ, no round trip) against the clean tokens
(:func:`flowlm.denoisers.flm_loss`, no time weighting; computed by the chunked
:func:`flowlm.nets.linear_softcap_cross_entropy`, which never forms the ``[B, L, V]`` logits). With ``projected=True`` (default) the
noise is drawn directly as :math:`x_0E\sim\mathcal N(0,E^\top E)` (:class:`~flowlm.nets.ProjectedSpace`).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from flowlm.flow import Flow
from flowlm.interpolants import stratified_uniform
from flowlm.models.base import FlowModel
from flowlm.nets import DiTConfig, NetDenoiser, linear_softcap_cross_entropy
from flowlm.prompt import Prompt, random_clean_mask

__all__ = ["FLM"]


class FLM(FlowModel):
    """A flow language model.

    Attributes: ``net`` (:class:`~flowlm.nets.DiT`), ``flow`` (interpolant + t ↔ τ schedule),
    ``space`` (where the flow's state lives), ``denoiser`` (``den(x, t) -> logits``),
    ``vocab_size``, ``config``, ``kind = "flm"``.
    """

    kind = "flm"

    def __init__(self, config: DiTConfig, flow: Flow | None = None, projected: bool = True) -> None:
        if config.two_time:
            raise ValueError("FLM needs a single-time DiT (two_time=False); two-time nets belong to FMLM")
        super().__init__(config, flow, projected)
        # a view of self.net, not a second registered submodule (state_dict keys stay net.*)
        object.__setattr__(self, "denoiser", NetDenoiser(self.net, self.flow, self.space))

    def loss(
        self,
        tokens: Int[Tensor, "B L"],
        mask: Bool[Tensor, "B L"] | None = None,
        generator: torch.Generator | None = None,
        condition_fraction: float = 0.0,
    ) -> tuple[Tensor, dict[str, Any]]:
        """FLM loss on a batch of clean token sequences; returns ``(loss, metrics)``.

        ``condition_fraction`` > 0 trains for prompts: that share of the sequences holds a random
        prefix, suffix or outside-of-a-span clean (:func:`flowlm.prompt.random_clean_mask`), with
        per-token τ = 1 (t = 1, state = the clean one-hot / E[token]) there, and those positions
        are left out of the loss. 0 (default) is the plain FLM loss."""
        B = tokens.shape[0]
        dev = tokens.device
        tau = stratified_uniform(B, device=dev, generator=generator)  # [B], model time
        metrics: dict[str, Any] = {}
        if condition_fraction:
            clean = random_clean_mask(B, tokens.shape[1], condition_fraction, device=dev, generator=generator)
            tau = torch.where(clean, torch.ones_like(tau)[:, None], tau[:, None])  # [B, L]: τ = 1 where clean
            path = self.flow.noisy(tokens, tau=tau, space=self.space, generator=generator, dtype=self.net.E.dtype)
            prompt = Prompt(tokens, clean)
            xt = prompt.hold(path.xt, prompt.clean_state(self.space, path.xt.dtype))
            mask = ~clean if mask is None else (mask & ~clean)
            metrics["clean_fraction"] = clean.float().mean()
        else:
            xt = self.flow.noisy(tokens, tau=tau, space=self.space, generator=generator, dtype=self.net.E.dtype).xt
        features = self.net(self.denoiser.project(xt), tau, return_features=True)  # [B, L, d], τ as drawn
        # = flm_loss(net(h, τ), tokens, mask), without materializing [B, L, V] logits
        loss = linear_softcap_cross_entropy(
            features, self.net.head.weight, self.net.head.bias, tokens, mask, cap=self.config.out_softcap
        )
        metrics["loss"] = loss.detach()
        return loss, metrics

    def forward(self, tokens: Int[Tensor, "B L"], mask: Bool[Tensor, "B L"] | None = None) -> Tensor:
        """The scalar FLM loss (so ``FLM`` can be wrapped by data-parallel / compile tools)."""
        return self.loss(tokens, mask)[0]

    @property
    def model_fn(self) -> NetDenoiser:
        return self.denoiser

    def default_sampler(self, n_steps: int, gamma: float) -> Any:
        """Euler on the τ grid (:class:`flowlm.samplers.EulerSampler`); γ is a flow-map option."""
        if gamma:
            raise ValueError(f"gamma (re-noising) applies to flow-map sampling (FMLM); an FLM samples with gamma=0, got {gamma}")
        from flowlm.samplers import EulerSampler

        return EulerSampler(n_steps)

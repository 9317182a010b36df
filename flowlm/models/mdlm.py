r"""MDLM: absorbing-state masked diffusion on the FLM's DiT (REFERENCE.md §2).

The network reads ``x_t`` as ids (``[MASK] = V``, the extra id of :mod:`flowlm.models.token_net`),
bidirectionally and with no time input; SUBS drops the mask logit and copies unmasked tokens. The loss
is :func:`flowlm.baselines.mdlm_loss` (weight 1/t on masked tokens, mean over the ``B·L`` tokens,
antithetic masking time ``t ~ U[ε, 1]``, ``t = 1`` all masked: the reverse of FLM's time), computed
by the chunked soft-capped CE with per-token weights (no ``[B, L, V]`` logits). Sampling:
:func:`flowlm.baselines.mdlm_sample` (ancestral, cached, float64 draws).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from flowlm.baselines.masked import LogLinearMasking, mask_tokens, mdlm_sample
from flowlm.models.token_net import TokenNetModel
from flowlm.nets import DiTConfig, linear_softcap_cross_entropy

__all__ = ["MDLM"]


class MDLM(TokenNetModel):
    """Masked diffusion baseline. ``kind = "mdlm"``; attributes ``net`` (bidirectional DiT over ``V + 1`` ids),
    ``config``, ``schedule`` (:class:`~flowlm.baselines.LogLinearMasking`)."""

    kind = "mdlm"
    causal = False

    def __init__(self, config: DiTConfig, eps: float = 1e-3) -> None:
        super().__init__(config)
        self.schedule = LogLinearMasking(eps)

    @property
    def mask_id(self) -> int:
        return self.extra_id

    def loss(
        self,
        tokens: Int[Tensor, "B L"],
        mask: Bool[Tensor, "B L"] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The MDLM NELBO estimate (a scalar). ``mask`` (True = counts) restricts it to real tokens:
        positions outside it are neither masked nor counted, and the mean runs over the counted tokens."""
        B = tokens.shape[0]
        t = self.schedule.sample_times(B, generator=generator, device=tokens.device)  # [B], masking time
        xt = mask_tokens(tokens, t, self.schedule, self.mask_id, generator)
        if mask is not None:
            xt = torch.where(mask, xt, tokens)
        masked = xt == self.mask_id
        n = tokens.numel() if mask is None else mask.sum()
        w = masked.float() * self.schedule.weight(t)[:, None] / n  # [B, L]
        V = self.vocab_size
        features = self.features(xt)
        return linear_softcap_cross_entropy(
            features, self.net.head.weight[:V], self.net.head.bias[:V], tokens, cap=self.config.out_softcap,
            token_weights=w,
        )

    def loss_and_metrics(self, tokens: Int[Tensor, "B L"], mask: Bool[Tensor, "B L"] | None = None,
                         generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Any]]:
        """``(loss, {"loss": …})``, the training loop's objective convention."""
        loss = self.loss(tokens, mask, generator)
        return loss, {"loss": loss.detach()}

    def forward(self, tokens: Int[Tensor, "B L"], mask: Bool[Tensor, "B L"] | None = None) -> Tensor:
        return self.loss(tokens, mask)

    def denoiser(self, xt: Int[Tensor, "B L"]) -> Float[Tensor, "B L V"]:
        """SUBS probabilities ``p_θ(x^ℓ | x_t)`` over the real tokens (one-hot at unmasked positions)."""
        probs = torch.softmax(self.logits(xt).float(), dim=-1)
        copy = torch.nn.functional.one_hot(xt.clamp(max=self.vocab_size - 1), self.vocab_size).to(probs.dtype)
        return torch.where((xt == self.mask_id)[..., None], probs, copy)

    @torch.no_grad()
    def sample(
        self,
        batch: int,
        length: int,
        *,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
    ):
        """``SamplerOutput(probs, tokens, nfe)`` with ``steps`` ancestral steps (default ``length``)."""
        if length > self.config.max_length:
            raise ValueError(f"length {length} exceeds the model's max_length {self.config.max_length}")
        was = self._eval()
        try:
            return mdlm_sample(self.denoiser, batch, length, self.vocab_size, steps if steps is not None else length,
                               schedule=self.schedule, temperature=temperature, top_p=top_p,
                               generator=generator, device=self.net.E.device)
        finally:
            self.net.train(was)

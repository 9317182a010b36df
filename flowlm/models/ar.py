r"""AR: the FLM's DiT with causal attention and no time input, trained by next-token cross-entropy.

Conventions (:mod:`flowlm.baselines.autoregressive`): the inputs are ``[BOS, x^0, …, x^{L−2}]`` with
``BOS = V`` (the extra id, :mod:`flowlm.models.token_net`), and position ℓ predicts ``x^ℓ`` over the ``V``
real tokens, so the loss covers every token, the first included:
:math:`\mathcal L = \frac1{BL}\sum -\log p_\theta(x^\ell\mid x^{<\ell})`, computed by the chunked
soft-capped cross-entropy (:func:`flowlm.nets.linear_softcap_cross_entropy`, no ``[B, L, V]`` logits).
Sampling: temperature, then top-p, float64 draws, ``nfe = length`` (no KV cache: each step reruns the prefix).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from flowlm.baselines.autoregressive import ar_inputs, ar_sample
from flowlm.models.token_net import TokenNetModel
from flowlm.nets import DiTConfig, linear_softcap_cross_entropy

__all__ = ["AR"]


class AR(TokenNetModel):
    """Autoregressive baseline. ``kind = "ar"``; attributes ``net`` (causal DiT over ``V + 1`` ids), ``config``."""

    kind = "ar"
    causal = True

    def __init__(self, config: DiTConfig) -> None:
        super().__init__(config)

    @property
    def bos_id(self) -> int:
        return self.extra_id

    def loss(
        self,
        tokens: Int[Tensor, "B L"],
        mask: Bool[Tensor, "B L"] | None = None,
        generator: torch.Generator | None = None,  # noqa: ARG002 - the AR loss is deterministic
    ) -> Tensor:
        """Mean next-token CE over the (``mask``-selected) tokens; a scalar."""
        features = self.features(ar_inputs(tokens, self.bos_id))  # [B, L, d]
        V = self.vocab_size
        return linear_softcap_cross_entropy(
            features, self.net.head.weight[:V], self.net.head.bias[:V], tokens, mask, cap=self.config.out_softcap
        )

    def loss_and_metrics(self, tokens: Int[Tensor, "B L"], mask: Bool[Tensor, "B L"] | None = None,
                         generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Any]]:
        """``(loss, {"loss": …})``, the training loop's objective convention."""
        loss = self.loss(tokens, mask, generator)
        return loss, {"loss": loss.detach()}

    def forward(self, tokens: Int[Tensor, "B L"], mask: Bool[Tensor, "B L"] | None = None) -> Tensor:
        return self.loss(tokens, mask)

    def next_logits(self, prefix: Int[Tensor, "B n"]) -> Tensor:
        """Logits ``[B, V]`` of the token after ``prefix`` (which starts with ``bos_id``)."""
        return self.head(self.features(prefix)[:, -1])

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
        """``SamplerOutput(probs, tokens, nfe)``: ancestral sampling; ``steps`` must be None or ``length``."""
        if steps is not None and steps != length:
            raise ValueError(f"an AR model takes one step per token: steps must be None or {length}, got {steps}")
        if length > self.config.max_length:
            raise ValueError(f"length {length} exceeds the model's max_length {self.config.max_length}")
        was = self._eval()
        try:
            return ar_sample(self.next_logits, batch, length, self.bos_id, temperature=temperature, top_p=top_p,
                             generator=generator, device=self.net.E.device)
        finally:
            self.net.train(was)

r"""What the AR and MDLM baselines share: the FLM's DiT read through token ids, with no time input.

Both baselines need one id beyond the ``V`` real tokens (``[BOS]`` for AR, ``[MASK]`` for MDLM), so the
network is ``DiT(config.replace(vocab_size=V + 1))``: its input matrix ``E`` has ``V + 1`` rows and the
input is the row lookup ``h = E[ids]`` (the same as ``one_hot(ids) @ E``, how the DiT reads every state).
Its output head also has ``V + 1`` rows; the extra logit is treated as −∞ (it is never a target and
never drawn), which is done by using only the first ``V`` rows of the head. There is no time
conditioning: the DiT's adaLN input is the constant embedding of τ = 0 (as in MDLM's reference code,
which feeds σ = 0), so the modulation is a learned constant.

``self.config`` is the user's config (``vocab_size = V`` real tokens); ``self.net.config`` has ``V + 1``.
"""

from __future__ import annotations

import typing

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from flowlm.nets import DiT, DiTConfig

__all__ = ["TokenNetModel"]


class TokenNetModel(nn.Module):
    """Base of :class:`~flowlm.models.AR` and :class:`~flowlm.models.MDLM` (``kind`` set by each)."""

    kind: str = ""
    causal: bool = False

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        if config.two_time:
            raise ValueError(f"{type(self).__name__} has no time input; build it with DiTConfig(two_time=False)")
        if config.causal != self.causal:
            config = config.replace(causal=self.causal)
        self.config = config
        self.net = DiT(config.replace(vocab_size=config.vocab_size + 1))

    @property
    def vocab_size(self) -> int:
        """The number of real tokens ``V`` (the extra id is ``V``)."""
        return self.config.vocab_size

    @property
    def extra_id(self) -> int:
        return self.config.vocab_size

    @typing.no_type_check
    def features(self, ids: Tensor) -> Tensor:
        """The DiT's last modulated hidden states ``[B, L, d]`` for input ids ``[B, L]`` (values in ``0..V``)."""
        if ids.shape[1] > self.config.max_length:
            raise ValueError(f"length {ids.shape[1]} exceeds the model's max_length {self.config.max_length}")
        h = nn.functional.embedding(ids, self.net.E)  # E[ids], [B, L, d]
        tau = torch.zeros(ids.shape[0], device=ids.device, dtype=h.dtype)  # no time conditioning
        return self.net(h, tau, return_features=True)

    def head(self, features: Float[Tensor, "*B d"]) -> Float[Tensor, "*B V"]:
        """Soft-capped logits over the ``V`` real tokens (the extra id's logit is dropped, i.e. −∞)."""
        V = self.vocab_size
        z = nn.functional.linear(features, self.net.head.weight[:V], self.net.head.bias[:V])
        cap = self.config.out_softcap
        return cap * torch.tanh(z / cap) if cap else z

    def logits(self, ids: Int[Tensor, "B L"]) -> Float[Tensor, "B L V"]:
        """``head(features(ids))``: logits over the real tokens at every position."""
        return self.head(self.features(ids))

    def _eval(self):
        was = self.net.training
        self.net.eval()
        return was

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, vocab_size={self.vocab_size} (+1 extra id)"

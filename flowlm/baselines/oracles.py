r"""Exact denoisers of a finite-set law :math:`p(x) = w_k` for :math:`x = x_k` (``K`` sequences), float64.

* :class:`FiniteSetMasked`: the MDLM posterior :math:`p(x^\ell = v \mid \text{unmasked tokens of } x_t)
  = \sum_k \bar w_k(x_t)\,[x_k^\ell = v]` with :math:`\bar w_k \propto w_k\,[x_k \text{ agrees with every
  unmasked token}]` (masking is independent of the content, so the time drops out); unmasked
  positions are one-hot (SUBS).
* :class:`FiniteSetAR`: the next-token conditionals :math:`p(x^\ell = v\mid x^{<\ell}) \propto
  \sum_k w_k\,[x_k^{<\ell} = x^{<\ell}]\,[x_k^\ell = v]`, as log-probabilities.

A state that no sequence of the set agrees with has no posterior: both raise ``ValueError``.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["FiniteSetMasked", "FiniteSetAR"]


class _FiniteSet:
    def __init__(self, sequences: Int[Tensor, "K L"], weights: Float[Tensor, " K"], vocab_size: int) -> None:
        if sequences.ndim != 2 or weights.shape != sequences.shape[:1]:
            raise ValueError(f"sequences [K, L] and weights [K] expected, got {tuple(sequences.shape)}, {tuple(weights.shape)}")
        if int(sequences.min()) < 0 or int(sequences.max()) >= vocab_size:
            raise ValueError(f"sequence ids must lie in [0, {vocab_size})")
        if bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError("weights must be nonnegative with a positive sum")
        self.sequences = sequences.long()
        self.weights = weights.double() / weights.double().sum()
        self.vocab_size = int(vocab_size)
        self.length = sequences.shape[1]

    def _one_hot(self) -> Tensor:
        return torch.nn.functional.one_hot(self.sequences, self.vocab_size).double()  # [K, L, V]

    @staticmethod
    def _normalize(w: Tensor, what: str) -> Tensor:
        z = w.sum(-1, keepdim=True)
        if bool((z <= 0).any()):
            raise ValueError(f"no sequence of the finite set agrees with {what}: the posterior is undefined there")
        return w / z


class FiniteSetMasked(_FiniteSet):
    """``den(xt [B, L]) -> probs [B, L, V]`` (float64), mask id = ``vocab_size``."""

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    def posterior(self, xt: Int[Tensor, "B L"]) -> Float[Tensor, "B K"]:
        """Weights of the sequences given the unmasked tokens of ``xt``."""
        agree = (xt[:, None, :] == self.mask_id) | (xt[:, None, :] == self.sequences.to(xt.device)[None])  # [B, K, L]
        return self._normalize(self.weights.to(xt.device) * agree.all(-1), "the unmasked tokens")

    def __call__(self, xt: Int[Tensor, "B L"]) -> Float[Tensor, "B L V"]:
        post = self.posterior(xt)  # [B, K]
        probs = torch.einsum("bk,klv->blv", post, self._one_hot().to(xt.device))
        copy = torch.nn.functional.one_hot(xt.clamp(max=self.vocab_size - 1), self.vocab_size).double()
        return torch.where((xt == self.mask_id)[..., None], probs, copy)


class FiniteSetAR(_FiniteSet):
    """``cond(prefix [B, n]) -> logits [B, V]`` (log-probabilities, float64; ``prefix[:, 0]`` is BOS = ``vocab_size``)."""

    @property
    def bos_id(self) -> int:
        return self.vocab_size

    def __call__(self, prefix: Int[Tensor, "B n"]) -> Float[Tensor, "B V"]:
        n = prefix.shape[1] - 1  # tokens after BOS
        if n >= self.length:
            raise ValueError(f"prefix has {n} tokens; the law's sequences have {self.length}")
        seqs = self.sequences.to(prefix.device)
        agree = (prefix[:, None, 1:] == seqs[None, :, :n]).all(-1)  # [B, K]
        w = self._normalize(self.weights.to(prefix.device) * agree, "the prefix")
        return torch.einsum("bk,kv->bv", w, self._one_hot().to(prefix.device)[:, n]).log()

    def teacher_forced(self, tokens: Int[Tensor, "B L"]) -> Float[Tensor, "B L V"]:
        """Logits of every position given the true prefix (the AR loss's input)."""
        bos = torch.full_like(tokens[:, :1], self.bos_id)
        return torch.stack([self(torch.cat((bos, tokens[:, :l]), 1)) for l in range(tokens.shape[1])], dim=1)

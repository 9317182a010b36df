r"""Exact denoiser of a factorized (per-position independent) categorical law.

Data law: :math:`x_1^l \sim \mathrm{Cat}(p^l)` independently for :math:`l = 1..L`. The Gaussian
evidence (:mod:`flowlm.oracles.evidence`) factorizes over positions, so

.. math::
    D_t(x)^l = \mathrm{softmax}_v\big(\log p^l_v + \tfrac{\beta}{\alpha^2}\,x^l_v\big).

At t = 1 (α = 0) the logits are the finite stand-in of the limit: all mass on
:math:`\arg\max_v x^l_v` (ties broken by :math:`p^l`); see :func:`~flowlm.oracles.evidence.tempered_scores`.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from flowlm.denoisers import Denoiser
from flowlm.interpolants.base import Interpolant
from flowlm.oracles._validate import check_call, check_probability_vector, check_tokens
from flowlm.oracles.evidence import evidence_scale, tempered_scores

__all__ = ["FactorizedCategorical"]


class FactorizedCategorical(Denoiser):
    """Exact Denoiser for independent per-position categoricals ``probs: [L, V]``.

    ``den(x: [B, L, V], t: [B] or [B, L]) -> logits [B, L, V]``, computed in the dtype of ``x``, for the
    given interpolant (required: the posterior depends on α and β). Per-token times: κ(t_l) per
    position; a clean position (t_l = 1) puts all its mass on argmax_v x^l_v (positions are
    independent, so a clean token does not change the others' law).

    >>> import torch
    >>> from flowlm.interpolants import Linear
    >>> den = FactorizedCategorical(torch.tensor([[0.7, 0.3]], dtype=torch.float64), Linear())
    >>> den(torch.zeros(1, 1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)).softmax(-1)
    tensor([[[0.7000, 0.3000]]], dtype=torch.float64)
    """

    def __init__(self, probs: Float[Tensor, "L V"], interpolant: Interpolant) -> None:
        if not isinstance(interpolant, Interpolant):
            raise TypeError(
                "FactorizedCategorical(probs, interpolant) needs the interpolant of its flow (the posterior "
                f"depends on α and β), e.g. Linear() or flow.interpolant; got {type(interpolant).__name__}"
            )
        if not torch.is_tensor(probs) or probs.ndim != 2:
            raise ValueError(
                f"probs must be a [length, vocab] tensor of per-position probabilities, got "
                f"{tuple(probs.shape) if torch.is_tensor(probs) else type(probs).__name__}"
            )
        if probs.shape[1] < 2:
            raise ValueError(f"the vocabulary needs at least 2 tokens, got probs of shape {tuple(probs.shape)}")
        probs = probs.to(torch.float64)
        check_probability_vector("probs", probs)
        self.marginals = probs / probs.sum(-1, keepdim=True)  # [L, V]: the per-position law p^l
        self.interpolant = interpolant
        self.length, self.vocab_size = probs.shape

    def logits(
        self, x: Float[Tensor, "B L V"], t: Float[Tensor, "B *tokens"], *, tau: Float[Tensor, "B *tokens"] | None = None
    ) -> Float[Tensor, "B L V"]:
        """Logits ``log p + κ(t)·(x − max_v x)`` with κ = β/α² (capped; see module docstring)."""
        check_call("FactorizedCategorical", x, t, self.vocab_size, self.length)
        log_p = self.marginals.to(x).clamp_min(torch.finfo(x.dtype).tiny).log()  # [L, V], >= log_floor
        kappa = evidence_scale(self.interpolant, t.to(x.dtype))  # [B] or [B, L]
        return log_p + tempered_scores(x, kappa)  # [B, L, V]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Int[Tensor, "n L"]:
        """``n`` independent sequences ``[n, L]`` (on the device of ``probs``)."""
        return torch.multinomial(self.marginals, n, replacement=True, generator=generator).T.contiguous()

    def log_prob(self, tokens: Int[Tensor, "n L"]) -> Float[Tensor, " n"]:
        """log p(tokens) = Σ_l log p^l_{tokens_l} (float64; −inf for impossible tokens)."""
        check_tokens("tokens", tokens, self.length, self.vocab_size)
        logp = self.marginals.to(tokens.device).log()  # [L, V]
        pos = torch.arange(self.length, device=tokens.device)
        return logp[pos, tokens].sum(-1)  # [n]

    def to(self, device: torch.device | str) -> "FactorizedCategorical":
        """Move ``marginals`` to ``device`` (in place; returns ``self``)."""
        self.marginals = self.marginals.to(device)
        return self

    def __repr__(self) -> str:
        return f"FactorizedCategorical(length={self.length}, vocab_size={self.vocab_size}, interpolant={self.interpolant!r})"

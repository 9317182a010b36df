r"""Exact denoiser of a weighted finite set of sequences (correlated tokens).

Data law: :math:`x_1 = \mathrm{onehot}(k)` with probability :math:`w_k`, for K sequences
:math:`k \in \{1..V\}^L`. The Gaussian evidence of a whole sequence is
:math:`\exp(\kappa\sum_l x^l_{k_l})` with :math:`\kappa = \beta/\alpha^2`
(:mod:`flowlm.oracles.evidence`), so the posterior over the set is a softmax and

.. math::
    \pi_k(x, t) = \mathrm{softmax}_k\big(\log w_k + \kappa \textstyle\sum_l x^l_{k_l}\big),\qquad
    D_t(x) = \sum_k \pi_k\,\mathrm{onehot}(k).

The returned logits are :math:`\log D` floored at log(tiny) of the dtype (so they stay finite
where D is 0). At t = 1 the posterior concentrates on the best-matching sequences.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from flowlm.denoisers import Denoiser
from flowlm.interpolants.base import Interpolant
from flowlm.oracles._validate import check_call, check_tokens
from flowlm.oracles.evidence import evidence_scale, log_floor, tempered_scores

__all__ = ["FiniteSequences"]


class FiniteSequences(Denoiser):
    """Exact Denoiser for a law on K sequences ``sequences: [K, L]`` with weights ``[K]``
    (``None`` = uniform; normalized internally; duplicates add up).

    ``den(x: [B, L, V], t: [B] or [B, L]) -> logits [B, L, V]``, computed in the dtype of ``x``.
    Per-token times: a position with ``t = 1`` is clean, a hard constraint on the posterior
    (:meth:`posterior`), so prompted sampling with this oracle draws the exact conditional law.
    """

    def __init__(
        self,
        sequences: Int[Tensor, "K L"],
        weights: Float[Tensor, " K"] | None,
        vocab_size: int,
        interpolant: Interpolant,
    ) -> None:
        if not isinstance(interpolant, Interpolant):
            raise TypeError(
                "FiniteSequences(sequences, weights, vocab_size, interpolant) needs the interpolant of its flow "
                f"(the posterior depends on α and β), e.g. Linear() or flow.interpolant; got {type(interpolant).__name__}"
            )
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        if not torch.is_tensor(sequences) or sequences.ndim != 2 or sequences.shape[0] < 1:
            raise ValueError(
                "sequences must be a non-empty integer tensor [K, L] (one row per sequence), got "
                f"{tuple(sequences.shape) if torch.is_tensor(sequences) else type(sequences).__name__}"
            )
        check_tokens("sequences", sequences, sequences.shape[1], vocab_size)
        K = sequences.shape[0]
        if weights is None:
            weights = torch.ones(K, dtype=torch.float64, device=sequences.device)
        weights = torch.as_tensor(weights, dtype=torch.float64, device=sequences.device)
        if weights.shape != (K,):
            raise ValueError(f"weights must have shape [{K}] (one per sequence), got {tuple(weights.shape)}")
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError("weights must be finite, >= 0 and not all zero")
        self.sequences = sequences.long()  # [K, L]
        self.weights = weights / weights.sum()  # [K]
        self.vocab_size = int(vocab_size)
        self.length = sequences.shape[1]
        self.interpolant = interpolant

    @property
    def probs_of_sequences(self) -> Float[Tensor, " K"]:
        """The normalized weights w_k."""
        return self.weights

    def posterior(self, x: Float[Tensor, "B L V"], t: Float[Tensor, "B *tokens"]) -> Float[Tensor, "B K"]:
        """π_k(x, t) = softmax_k(log w_k + κ Σ_l x^l_{k_l}); for per-token times ``[B, L]``
        softmax_k(log w_k + Σ_l κ(t_l) x^l_{k_l}) over the sequences that agree with the clean
        positions (t_l = 1), see :meth:`_per_token_scores`."""
        check_call("FiniteSequences", x, t, self.vocab_size, self.length)
        seqs = self.sequences.to(x.device)
        pos = torch.arange(self.length, device=x.device)
        log_w = self.weights.to(x).clamp_min(torch.finfo(x.dtype).tiny).log()  # [K]
        if t.ndim == 2:
            return torch.softmax(log_w + self._per_token_scores(x, t, seqs, pos), dim=-1)  # [B, K]
        scores = x[:, pos, seqs].sum(-1)  # [B, K]: Σ_l x[b, l, seq_k[l]]
        kappa = evidence_scale(self.interpolant, t.to(x.dtype))  # [B]
        return torch.softmax(log_w + tempered_scores(scores, kappa), dim=-1)  # [B, K]

    def _per_token_scores(self, x: Tensor, t: Tensor, seqs: Tensor, pos: Tensor) -> Tensor:
        r"""Scores ``[B, K]`` for per-token times ``t: [B, L]``:
        :math:`\sum_{l:\,t_l<1}\kappa(t_l)\,(x^l_{k_l} - \max_v x^l_v)` (softmax-invariant shift per
        position), and a clean position (:math:`t_l = 1`) is a hard constraint: a sequence whose
        token there is not :math:`\arg\max_v x^l_v` gets weight exactly 0 (a score far below the
        floor of every admissible one), so the posterior is the law restricted to the sequences
        that agree with the clean tokens."""
        floor = log_floor(x.dtype)
        clean = t >= 1.0  # [B, L]
        kappa = torch.where(clean, torch.zeros_like(t), evidence_scale(self.interpolant, t.to(x.dtype))).to(x.dtype)
        shifted = x[:, pos, seqs] - x.amax(-1)[:, None, :]  # [B, K, L], <= 0
        scores = (kappa[:, None, :] * shifted).sum(-1).clamp(min=3.0 * floor)  # [B, K]
        mismatch = (clean[:, None, :] & (shifted < 0)).any(-1)  # [B, K]
        return torch.where(mismatch, torch.full_like(scores, 8.0 * floor), scores)

    def logits(
        self, x: Float[Tensor, "B L V"], t: Float[Tensor, "B *tokens"], *, tau: Float[Tensor, "B *tokens"] | None = None
    ) -> Float[Tensor, "B L V"]:
        """Logits log D_t(x), D = Σ_k π_k onehot(k), floored at log(tiny)."""
        post = self.posterior(x, t)  # [B, K]
        B, K, L = post.shape[0], post.shape[1], self.length
        index = self.sequences.to(x.device).T.expand(B, L, K)  # [B, L, K]: token of sequence k at l
        denoised = torch.zeros_like(x).scatter_add_(-1, index, post[:, None, :].expand(B, L, K))  # [B, L, V]
        return denoised.clamp_min(torch.finfo(x.dtype).tiny).log()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Int[Tensor, "n L"]:
        """``n`` sequences drawn with probabilities w_k."""
        idx = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # [n]
        return self.sequences[idx]

    def log_prob(self, tokens: Int[Tensor, "n L"]) -> Float[Tensor, " n"]:
        """log Σ_k w_k·[tokens = seq_k] (−inf for sequences outside the set)."""
        check_tokens("tokens", tokens, self.length, self.vocab_size)
        match = (tokens[:, None, :] == self.sequences.to(tokens.device)[None]).all(-1)  # [n, K]
        return (match.to(torch.float64) @ self.weights.to(tokens.device)).log()

    def to(self, device: torch.device | str) -> "FiniteSequences":
        """Move the tensors to ``device`` (in place; returns ``self``)."""
        self.sequences, self.weights = self.sequences.to(device), self.weights.to(device)
        return self

    def __repr__(self) -> str:
        return (
            f"FiniteSequences(n_sequences={self.sequences.shape[0]}, length={self.length}, "
            f"vocab_size={self.vocab_size}, interpolant={self.interpolant!r})"
        )

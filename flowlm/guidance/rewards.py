r"""Differentiable rewards of soft tokens, for reward guidance through the flow map.

A reward is any callable ``r(p: [B, L, V]) -> [B]``: one scalar per sequence, differentiable in
``p``. ``p`` is a look-ahead :math:`\hat x_1 = \hat\delta_{t,1}(x_t)`, a point of the simplex per
token, or a point near it after an ascent step (rows sum to 1, entries may be slightly negative):
a reward must stay finite there (the built-ins clamp where they take a log).
:func:`evaluate_reward` calls a reward and checks its output (a clear error otherwise).

Built-in (no download): :class:`WordSetReward` — how much a set of tokens is present:

* ``mode="count"``: the expected number of positions holding a token of the set,
  :math:`r(p) = \sum_l m_l`, :math:`m_l = \sum_{v\in S} p_{l,v}`;
* ``mode="log_prob"``: the log-probability that at least one position holds one, positions
  independent under the soft tokens, :math:`r(p) = \log\big(1 - \prod_l (1 - m_l)\big)`
  (:math:`m_l` clamped to [0, 1]).

and :class:`BagOfTokensClassifier` — a tiny logistic regression on the mean bag of tokens, trained
on two sets of token sequences of a corpus (e.g. lines of one speaker vs the others):
:math:`r(p) = \log\sigma(w^\top \bar p + b)`, :math:`\bar p = \frac1L\sum_l p_l` (the expected
token frequencies of the soft tokens), i.e. the log-probability of the positive class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["Reward", "WordSetReward", "BagOfTokensClassifier", "evaluate_reward", "REWARD_MODES"]

Reward = Callable[[Tensor], Tensor]
REWARD_MODES = ("count", "log_prob")


def evaluate_reward(reward: Reward, probs: Float[Tensor, "B L V"]) -> Float[Tensor, " B"]:
    """``reward(probs)``, checked: a floating tensor of shape ``[B]`` (one value per sequence)."""
    value = reward(probs)
    B = probs.shape[0]
    if not torch.is_tensor(value) or not torch.is_floating_point(value):
        raise TypeError(f"a reward must return a floating tensor of shape [{B}] (one scalar per sequence), got "
                        f"{type(value).__name__ if not torch.is_tensor(value) else value.dtype}")
    if value.shape != (B,):
        raise ValueError(
            f"a reward must return one scalar per sequence, shape [{B}], got {tuple(value.shape)}; reduce over "
            "positions (e.g. .sum(-1)) inside the reward"
        )
    return value


class WordSetReward:
    """``WordSetReward(token_ids, vocab_size, mode="count")(p: [B, L, V]) -> [B]`` (module docstring).

    ``WordSetReward.from_words(tokenizer, words, mode)`` builds the set from words that the tokenizer
    encodes as one token (with or without a leading space); other words are listed in ``skipped``.
    """

    def __init__(self, token_ids: Iterable[int], vocab_size: int, mode: str = "count") -> None:
        ids = sorted({int(i) for i in token_ids})
        if not ids:
            raise ValueError("WordSetReward needs at least one token id")
        if ids[0] < 0 or ids[-1] >= vocab_size:
            raise ValueError(f"token ids must lie in [0, {vocab_size}), got range [{ids[0]}, {ids[-1]}]")
        if mode not in REWARD_MODES:
            raise ValueError(f"mode must be one of {REWARD_MODES}, got {mode!r}")
        self.token_ids, self.vocab_size, self.mode = ids, int(vocab_size), mode
        self.skipped: list[str] = []

    @classmethod
    def from_words(cls, tokenizer: Any, words: Iterable[str], mode: str = "count") -> "WordSetReward":
        ids, skipped = set(), []
        for w in words:
            found = [enc[0] for enc in (tokenizer.encode(w), tokenizer.encode(" " + w)) if len(enc) == 1]
            ids.update(found)
            if not found:
                skipped.append(w)
        if not ids:
            raise ValueError(f"none of the words {list(words)} is a single token of this tokenizer; pass token ids")
        reward = cls(ids, tokenizer.vocab_size, mode)
        reward.skipped = skipped
        return reward

    def mass(self, probs: Float[Tensor, "B L V"]) -> Float[Tensor, "B L"]:
        """m_l = Σ_{v∈S} p_{l,v}: the probability that position l holds a token of the set."""
        if probs.shape[-1] != self.vocab_size:
            raise ValueError(f"expected [B, L, {self.vocab_size}] probabilities, got {tuple(probs.shape)}")
        idx = torch.tensor(self.token_ids, device=probs.device)
        return probs.index_select(-1, idx).sum(-1)

    def __call__(self, probs: Float[Tensor, "B L V"]) -> Float[Tensor, " B"]:
        m = self.mass(probs)
        if self.mode == "count":
            return m.sum(-1)
        tiny = torch.finfo(m.dtype).tiny
        log_none = torch.log1p(-m.clamp(0.0, 1.0 - 1e-7)).sum(-1)  # log Π_l (1 − m_l)
        return torch.log((-torch.expm1(log_none)).clamp_min(tiny))

    def __repr__(self) -> str:
        return f"WordSetReward({len(self.token_ids)} tokens, mode={self.mode!r})"


class BagOfTokensClassifier:
    """``BagOfTokensClassifier(vocab_size).fit(positive, negative)``; then ``clf(p: [B, L, V]) -> [B]`` =
    log σ(w·mean_l p_l + b) (module docstring). ``fit`` takes token sequences ``[n, L]`` (any lengths
    per set) and runs full-batch L-BFGS on the L2-regularized logistic loss (float64, deterministic)."""

    def __init__(self, vocab_size: int, l2: float = 1e-3) -> None:
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        self.vocab_size, self.l2 = int(vocab_size), float(l2)
        self.weight = torch.zeros(self.vocab_size, dtype=torch.float64)
        self.bias = torch.zeros((), dtype=torch.float64)

    def features(self, tokens: Tensor) -> Tensor:
        """Mean one-hot bag ``[n, V]`` of token sequences ``[n, L]``."""
        if tokens.ndim != 2 or tokens.numel() == 0:
            raise ValueError(f"token sequences must be a non-empty [n, L] tensor, got shape {tuple(tokens.shape)}")
        if int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        return torch.nn.functional.one_hot(tokens.long(), self.vocab_size).double().mean(1)

    def fit(self, positive: Tensor, negative: Tensor, steps: int = 100) -> "BagOfTokensClassifier":
        feats = torch.cat([self.features(positive), self.features(negative)])  # [n, V]
        labels = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))]).double()
        w = torch.zeros(self.vocab_size + 1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            z = feats @ w[:-1] + w[-1]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, labels) + self.l2 * w[:-1].square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.weight, self.bias = w[:-1].detach(), w[-1].detach()
        return self

    def __call__(self, probs: Float[Tensor, "B L V"]) -> Float[Tensor, " B"]:
        if probs.shape[-1] != self.vocab_size:
            raise ValueError(f"expected [B, L, {self.vocab_size}] probabilities, got {tuple(probs.shape)}")
        z = probs.mean(1) @ self.weight.to(probs) + self.bias.to(probs)
        return torch.nn.functional.logsigmoid(z)

    def __repr__(self) -> str:
        return f"BagOfTokensClassifier(vocab_size={self.vocab_size}, l2={self.l2:g})"

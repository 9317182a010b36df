r"""Prompts and infilling: positions held clean with per-token times (DESIGN §6).

A :class:`Prompt` is a batch of token sequences ``tokens: [B, L]`` and a mask ``mask: [B, L]``
(True = held clean). Sampling with a prompt runs the ordinary flow on the other positions while
every clean position has interpolation time :math:`t_l = 1` and model time :math:`\tau_l = 1` and
keeps its clean state :math:`x^l = \mathrm{onehot}(c_l)` (projected: :math:`E[c_l]`) at every
step. For the exact denoiser of a law :math:`p` this is the exact denoiser of the conditional law:

.. math::
    D_t(x)^l = \mathbb E\big[x_1^l \,\big|\, x_t^{\bar M} = x^{\bar M},\ x_1^M = c\big],

because a token observed at :math:`t = 1` is the clean token itself (the Gaussian evidence
:math:`\exp(\beta x_v/\alpha^2)` becomes a hard constraint as :math:`\alpha \to 0`). So the flow on
the free positions :math:`\bar M` transports :math:`\mathcal N(0, I)` to
:math:`p(x_1^{\bar M} \mid x_1^M = c)`; that is what ``tests/test_prompts.py`` checks against
enumeration.

:class:`PromptedDenoiser` and :class:`PromptedTwoTimeDenoiser` wrap a model so that every call sees
the clean state at the masked positions and the per-token times
``where(mask, 1, t)``; the samplers use them (``sampler(den, flow, x0, prompt=prompt)``) and then
write the prompt into the returned probabilities and tokens. :func:`random_clean_mask` draws the
masks used to train for conditioning (random prefixes, suffixes and spans held clean).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from flowlm._checks import check_token_ids
from flowlm.denoisers import Denoiser, TwoTimeDenoiser
from flowlm.states import StateSpace

__all__ = [
    "Prompt",
    "PromptedDenoiser",
    "PromptedTwoTimeDenoiser",
    "prompted",
    "per_token_times",
    "random_clean_mask",
]


def _as_tokens(name: str, tokens: Any) -> Tensor:
    """A 1-D or 2-D integer tensor of token ids from a tensor or a (nested) list."""
    if not torch.is_tensor(tokens):
        try:
            tokens = torch.as_tensor(tokens, dtype=torch.long)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a tensor or a list of token ids, got {type(tokens).__name__}") from err
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {tokens.dtype}")
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise ValueError(f"{name} must have shape [length] or [batch, length], got {tuple(tokens.shape)}")
    return tokens.long()


@dataclass(frozen=True)
class Prompt:
    """Clean tokens ``tokens: [B, L]`` held where ``mask: [B, L]`` is True (other entries of
    ``tokens`` are ignored). ``B = 1`` broadcasts over any batch.

    Constructors: :meth:`prefix`, :meth:`suffix`, :meth:`infill`, :meth:`spans`.

    >>> import torch
    >>> p = Prompt.infill([5, 6], gap=2, right=[7])
    >>> p.tokens.tolist(), p.mask.tolist()
    ([[5, 6, 0, 0, 7]], [[True, True, False, False, True]])
    """

    tokens: Tensor  # [B, L] integer ids (checked in __post_init__ with errors that say what to fix)
    mask: Tensor  # [B, L] bool, True = held clean

    def __post_init__(self) -> None:
        if not torch.is_tensor(self.tokens) or self.tokens.dtype.is_floating_point or self.tokens.dtype in (
            torch.bool, torch.complex64, torch.complex128
        ):
            raise TypeError(
                f"Prompt.tokens must be an integer tensor of token ids [batch, length], got "
                f"{getattr(self.tokens, 'dtype', type(self.tokens).__name__)}"
            )
        if self.tokens.ndim != 2:
            raise ValueError(f"Prompt.tokens must have shape [batch, length], got {tuple(self.tokens.shape)}")
        if not torch.is_tensor(self.mask) or self.mask.dtype != torch.bool:
            raise TypeError(
                f"Prompt.mask must be a boolean tensor [batch, length] (True = held clean), got "
                f"{getattr(self.mask, 'dtype', type(self.mask).__name__)}"
            )
        if self.mask.shape != self.tokens.shape:
            raise ValueError(
                f"Prompt.mask has shape {tuple(self.mask.shape)} but Prompt.tokens has {tuple(self.tokens.shape)}; "
                "they must match (one flag per token)"
            )
        if self.tokens.numel() and int(self.tokens.min()) < 0:
            raise ValueError(f"Prompt.tokens: token ids must be >= 0, got {int(self.tokens.min())}")
        object.__setattr__(self, "tokens", self.tokens.long())
        object.__setattr__(self, "mask", self.mask.to(self.tokens.device))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def prefix(cls, tokens: Any, length: int) -> "Prompt":
        """The first ``n`` tokens held (``tokens: [n]`` or ``[B, n]``), ``length − n`` to generate."""
        tokens = _as_tokens("prefix tokens", tokens)
        return cls.spans(length, {0: tokens})

    @classmethod
    def suffix(cls, tokens: Any, length: int) -> "Prompt":
        """The last ``n`` tokens held, ``length − n`` to generate before them."""
        tokens = _as_tokens("suffix tokens", tokens)
        return cls.spans(length, {length - tokens.shape[1]: tokens})

    @classmethod
    def infill(cls, left: Any, gap: int, right: Any) -> "Prompt":
        """``left``, then ``gap`` tokens to generate, then ``right``; length ``len(left) + gap + len(right)``."""
        if isinstance(gap, bool) or not isinstance(gap, int) or gap < 1:
            raise ValueError(f"the gap must be a positive number of tokens, got {gap!r}")
        left, right = _as_tokens("left tokens", left), _as_tokens("right tokens", right)
        n_left, n_right = left.shape[1], right.shape[1]
        return cls.spans(n_left + gap + n_right, {0: left, n_left + gap: right})

    @classmethod
    def spans(cls, length: int, spans: Mapping[int, Any]) -> "Prompt":
        """Hold ``spans[start]`` (``[n]`` or ``[B, n]`` ids) at positions ``start .. start + n − 1`` of a
        sequence of ``length`` tokens; everything else is generated."""
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive integer, got {length!r}")
        parts = {int(k): _as_tokens(f"span at {k}", v) for k, v in spans.items()}
        batch = max((v.shape[0] for v in parts.values()), default=1)
        device = next(iter(parts.values())).device if parts else None
        tokens = torch.zeros(batch, length, dtype=torch.long, device=device)
        mask = torch.zeros(batch, length, dtype=torch.bool, device=device)
        for start, span in sorted(parts.items()):
            n = span.shape[1]
            if span.shape[0] not in (1, batch):
                raise ValueError(f"spans have batch sizes {span.shape[0]} and {batch}; use one batch size (or 1)")
            if start < 0 or start + n > length:
                raise ValueError(
                    f"the prompt does not fit: a span of {n} tokens at position {start} needs length >= "
                    f"{start + n}, but the sequence has length {length}"
                )
            if bool(mask[:, start:start + n].any()):
                raise ValueError(f"the span at position {start} overlaps another span")
            tokens[:, start:start + n] = span
            mask[:, start:start + n] = True
        return cls(tokens, mask)

    # ------------------------------------------------------------------ use
    @property
    def batch(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def length(self) -> int:
        return int(self.tokens.shape[1])

    def validate(self, vocab_size: int, batch: int, length: int) -> "Prompt":
        """This prompt checked against a model's vocabulary and a ``[batch, length]`` sample, with a
        batch of 1 expanded; raises ``ValueError`` saying what to change."""
        if self.length != length:
            raise ValueError(
                f"the prompt has length {self.length} but the sample has length {length}; build it for the "
                f"sample length (Prompt.prefix(tokens, length=...)) or sample length={self.length}"
                + (" (the prompt is longer than the sequence)" if self.length > length else "")
            )
        if self.batch not in (1, batch):
            raise ValueError(f"the prompt has batch {self.batch} but the sample has {batch}; use batch 1 or {batch}")
        check_token_ids("Prompt.tokens", self.tokens, vocab_size)
        if self.batch == batch:
            return self
        return Prompt(self.tokens.expand(batch, -1), self.mask.expand(batch, -1))

    def to(self, device: torch.device | str) -> "Prompt":
        return Prompt(self.tokens.to(device), self.mask.to(device))

    def rows(self, index: Int[Tensor, " b"]) -> "Prompt":
        """The sub-batch at row indices ``index``."""
        return Prompt(self.tokens.index_select(0, index), self.mask.index_select(0, index))

    def clean_state(self, space: StateSpace, dtype: torch.dtype) -> Float[Tensor, "B L D"]:
        """``space.one_hot(tokens)`` in ``dtype`` (meaningful at the masked positions only)."""
        return space.one_hot(self.tokens).to(dtype)

    def hold(self, x: Float[Tensor, "B L D"], clean: Float[Tensor, "B L D"]) -> Float[Tensor, "B L D"]:
        """``x`` with the clean state written at the masked positions."""
        return torch.where(self.mask[..., None], clean.to(x.dtype), x)

    def __repr__(self) -> str:
        return f"Prompt(batch={self.batch}, length={self.length}, clean={int(self.mask.sum())} tokens)"


def per_token_times(mask: Bool[Tensor, "B L"], t: Tensor | None) -> Tensor | None:
    """``t_l = 1`` where ``mask`` is True, else the sequence's time: ``[B]`` or ``[B, L]`` → ``[B, L]``."""
    if t is None:
        return None
    if t.ndim == 0:
        t = t.expand(mask.shape[0])
    if t.ndim == 1:
        t = t[:, None].expand(mask.shape)
    return torch.where(mask, torch.ones_like(t), t)


class _Prompted:
    """Shared part of the prompted wrappers: the model, the prompt, and the clean state of ``space``."""

    def __init__(self, model: Any, prompt: Prompt, space: StateSpace, dtype: torch.dtype) -> None:
        self.model, self.prompt = model, prompt
        self.clean = prompt.clean_state(space, dtype)  # [B, L, D]
        self.vocab_size = model.vocab_size
        for name in ("flow", "interpolant"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))

    def _x(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.clean.shape[-1]:  # a V-wide call on a model that runs projected, or the reverse
            raise ValueError(
                f"a prompted model got states of width {x.shape[-1]} but the prompt's clean state has width "
                f"{self.clean.shape[-1]}; sample in one state space"
            )
        return self.prompt.hold(x, self.clean)


class PromptedDenoiser(_Prompted, Denoiser):
    """``D_t(x)`` with the prompt held: the model sees the clean state at masked positions and the
    per-token times ``where(mask, 1, t)`` (and ``where(mask, 1, τ)``)."""

    def logits(self, x: Float[Tensor, "B L D"], t: Float[Tensor, "B *tokens"], *, tau: Tensor | None = None) -> Tensor:
        m = self.prompt.mask
        return self.model.logits(self._x(x), per_token_times(m, t), tau=per_token_times(m, tau))

    def probs(self, x: Tensor, t: Tensor, *, tau: Tensor | None = None, space: StateSpace | None = None) -> Tensor:
        m = self.prompt.mask
        return self.model.probs(self._x(x), per_token_times(m, t), tau=per_token_times(m, tau), space=space)

    def __repr__(self) -> str:
        return f"PromptedDenoiser({self.model!r}, {self.prompt!r})"


class PromptedTwoTimeDenoiser(_Prompted, TwoTimeDenoiser):
    """``δ_{s,t}(x)`` with the prompt held: clean state at masked positions, ``s_l = t_l = 1`` there."""

    def logits(
        self, x: Float[Tensor, "B L D"], s: Float[Tensor, "B *tokens"], t: Float[Tensor, "B *tokens"], *,
        tau_s: Tensor | None = None, tau_t: Tensor | None = None,
    ) -> Tensor:
        m = self.prompt.mask
        return self.model.logits(
            self._x(x), per_token_times(m, s), per_token_times(m, t),
            tau_s=per_token_times(m, tau_s), tau_t=per_token_times(m, tau_t),
        )

    def probs(
        self, x: Tensor, s: Tensor, t: Tensor, *, tau_s: Tensor | None = None, tau_t: Tensor | None = None,
        space: StateSpace | None = None,
    ) -> Tensor:
        m = self.prompt.mask
        return self.model.probs(
            self._x(x), per_token_times(m, s), per_token_times(m, t),
            tau_s=per_token_times(m, tau_s), tau_t=per_token_times(m, tau_t), space=space,
        )

    def __repr__(self) -> str:
        return f"PromptedTwoTimeDenoiser({self.model!r}, {self.prompt!r})"


def prompted(model: Denoiser | TwoTimeDenoiser, prompt: Prompt, space: StateSpace, dtype: torch.dtype) -> Any:
    """The prompted wrapper of a denoiser or a two-time denoiser."""
    if isinstance(model, TwoTimeDenoiser):
        return PromptedTwoTimeDenoiser(model, prompt, space, dtype)
    if isinstance(model, Denoiser):
        return PromptedDenoiser(model, prompt, space, dtype)
    raise TypeError(f"a prompt needs a flowlm Denoiser or TwoTimeDenoiser, got {type(model).__name__}")


def random_clean_mask(
    batch: int,
    length: int,
    fraction: float,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Bool[Tensor, "B L"]:
    """Masks for training with prompts: each sequence is conditioned with probability ``fraction``;
    a conditioned sequence generates one window ``[a, b)`` (``a ~ U{0..L−1}``, ``b ~ U{a+1..L}``) and
    holds the rest clean, so prefixes (b = L), suffixes (a = 0) and infills all occur and at
    least one position is always free. ``fraction = 0`` gives an all-False mask."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"the conditioning fraction must lie in [0, 1], got {fraction}")
    if fraction == 0.0 or length < 2:
        return torch.zeros(batch, length, dtype=torch.bool, device=device)
    u = torch.rand(batch, 3, device=device, generator=generator)
    conditioned = u[:, 0] < fraction  # [B]
    a = (u[:, 1] * length).long().clamp(max=length - 1)  # [B] in 0..L-1
    b = a + 1 + (u[:, 2] * (length - a)).long().clamp(max=length - 1 - a)  # [B] in a+1..L
    pos = torch.arange(length, device=device)[None]  # [1, L]
    free = (pos >= a[:, None]) & (pos < b[:, None])  # [B, L]
    return conditioned[:, None] & ~free

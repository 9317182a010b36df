r"""The DiT backbone: a bidirectional transformer conditioned on model time τ by adaLN-Zero.

Input is the projected state :math:`h = xE` (``E: [V, d]``, no bias; see
:class:`flowlm.nets.ProjectedSpace`), output is per-token logits over the vocabulary:

.. math::
    c = \text{emb}(\tau)\;[+\;\text{emb}_2(\tau_t)]                                  \\
    (\mu_1,\sigma_1,g_1,\mu_2,\sigma_2,g_2) = W_{\text{ada}}\,\text{SiLU}(c)           \\
    h \leftarrow h + g_1\odot\text{drop}(\text{Attn}(\text{LN}(h)(1+\sigma_1)+\mu_1))  \\
    h \leftarrow h + g_2\odot\text{drop}(\text{MLP}(\text{LN}(h)(1+\sigma_2)+\mu_2))   \\
    \text{logits} = 30\tanh\big(W_{\text{out}}(\text{LN}(h)(1+\sigma_f)+\mu_f)/30\big)

``W_ada`` and ``W_out`` are zero-initialized (adaLN-Zero; the network starts as the uniform
denoiser). The MLP is ``Linear(d, r·d) → GELU(tanh) → Linear(r·d, d)``; attention uses RoPE and the
logit soft-cap ``c·tanh(s/c)`` (:mod:`flowlm.nets.attention`). The two-time variant
(``two_time=True``, for flow-map students) adds a second embedder for ``τ_t`` whose output is
summed with the first before the SiLU.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from flowlm.nets.attention import ATTENTION_KINDS, SelfAttention
from flowlm.nets.rope import RotaryEmbedding
from flowlm.nets.time_embedding import TimeEmbedder

__all__ = ["DiTConfig", "DiT", "DiTBlock"]


@dataclass
class DiTConfig:
    """Architecture of a :class:`DiT` (paper defaults; presets shrink them for CPU)."""

    vocab_size: int
    max_length: int
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: int = 4
    time_dim: int = 128
    two_time: bool = False
    dropout: float = 0.1
    attn_softcap: float | None = 50.0
    out_softcap: float | None = 30.0
    attention: str = "auto"
    causal: bool = False  # causal attention (the AR baseline); FLM/MDLM are bidirectional

    def __post_init__(self) -> None:
        problems = []
        if self.vocab_size < 2:
            problems.append(f"vocab_size must be >= 2 (got {self.vocab_size})")
        if self.max_length < 1:
            problems.append(f"max_length must be >= 1 (got {self.max_length})")
        if self.width % self.heads:
            problems.append(f"width {self.width} must be divisible by heads {self.heads}")
        elif (self.width // self.heads) % 2:
            problems.append(f"head width {self.width // self.heads} must be even for RoPE")
        if self.time_dim % 2:
            problems.append(f"time_dim must be even (got {self.time_dim})")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout})")
        if self.attention not in ATTENTION_KINDS:
            problems.append(f"attention must be one of {ATTENTION_KINDS} (got {self.attention!r})")
        if self.attention == "sdpa" and self.attn_softcap:
            problems.append("attention='sdpa' cannot apply attn_softcap; use 'math'/'flex' or attn_softcap=None")
        if problems:
            raise ValueError("invalid DiTConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not d["causal"]:  # omitted when off, so configs saved before the field existed still compare equal
            del d["causal"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DiTConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"DiTConfig.from_dict: unknown keys {sorted(unknown)}; known keys are {sorted(names)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "DiTConfig":
        return dataclasses.replace(self, **changes)


@typing.no_type_check
def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1.0 + scale[:, None, :]) + shift[:, None, :]


class DiTBlock(nn.Module):
    """One pre-LN transformer block with adaLN-Zero modulation (shift, scale, gate) for attention and MLP."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        w = config.width
        self.norm1 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(w, config.heads, config.attn_softcap, config.attention, causal=config.causal)
        self.norm2 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(w, config.mlp_ratio * w), nn.GELU(approximate="tanh"), nn.Linear(config.mlp_ratio * w, w)
        )
        self.drop = nn.Dropout(config.dropout)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(w, 6 * w))

    @typing.no_type_check
    def forward(self, h: Tensor, c: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)  # each [B, W]
        h = h + gate1[:, None, :] * self.drop(self.attn(_modulate(self.norm1(h), shift1, scale1), cos, sin))
        h = h + gate2[:, None, :] * self.drop(self.mlp(_modulate(self.norm2(h), shift2, scale2)))
        return h  # [B, L, W]


class DiT(nn.Module):
    """``DiT(config)(h [B, L, d], tau [B], tau_t [B] | None) -> logits [B, L, V]``.

    ``h = x @ E`` is the projected state (``E = self.E``, ``[V, d]``); ``tau`` is model time
    (never interpolation time: :mod:`flowlm.nets.wrappers` converts). ``tau_t`` is required
    exactly when ``config.two_time``.
    """

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.embed_tokens = nn.Parameter(torch.randn(config.vocab_size, w) * 0.02)  # E: [V, d]
        self.time_embed = TimeEmbedder(w, config.time_dim)
        self.time_embed_t = TimeEmbedder(w, config.time_dim) if config.two_time else None
        self.rope = RotaryEmbedding(w // config.heads, config.max_length)
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(w, 2 * w))
        self.head = nn.Linear(w, config.vocab_size)
        self._init_weights()

    def _init_weights(self) -> None:
        for block in self.blocks:
            for lin in (block.attn.qkv, block.attn.proj, block.mlp[0], block.mlp[2]):
                nn.init.normal_(lin.weight, std=0.02)
                nn.init.zeros_(lin.bias)
            nn.init.zeros_(block.ada[1].weight)  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(block.ada[1].bias)
        for lin in (self.ada_out[1], self.head):  # zero-initialized output head
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    @property
    def E(self) -> Tensor:
        """The ``[V, d]`` input matrix: the network reads a state ``x`` only through ``x @ E``."""
        return self.embed_tokens

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def width(self) -> int:
        return self.config.width

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed_tokens.numel() if non_embedding else n

    def conditioning(self, tau: Tensor, tau_t: Tensor | None = None) -> Tensor:
        """c = emb(τ) [+ emb₂(τ_t)], ``[B, d]`` (summed before the adaLN SiLU)."""
        c = self.time_embed(tau)
        if self.time_embed_t is not None:
            if tau_t is None:
                raise ValueError("this DiT is two-time (config.two_time=True): pass tau_t, the model time of the target")
            c = c + self.time_embed_t(tau_t)
        elif tau_t is not None:
            raise ValueError("this DiT is single-time (config.two_time=False) but tau_t was given; "
                             "build it with DiTConfig(two_time=True) or FMLM.from_teacher")
        return c

    @typing.no_type_check  # runs inside torch.compile; shapes are checked by the wrappers and below
    def forward(self, h: Tensor, tau: Tensor, tau_t: Tensor | None = None, return_features: bool = False) -> Tensor:
        """Logits ``[B, L, V]``; with ``return_features=True`` the modulated last hidden states
        ``[B, L, d]`` that the head maps to logits (for the chunked loss of :mod:`flowlm.nets.fused_ce`)."""
        if not torch.compiler.is_compiling():
            if h.ndim != 3 or h.shape[-1] != self.config.width:
                raise ValueError(
                    f"DiT expects the projected state h = x @ E of shape [B, L, {self.config.width}], got "
                    f"{tuple(h.shape)}; project a V-wide state with x @ net.E (or use NetDenoiser)"
                )
            if tau.shape != (h.shape[0],):
                raise ValueError(f"tau must have shape [{h.shape[0]}] (one model time per sequence), got {tuple(tau.shape)}")
            if tau_t is not None and tau_t.shape != (h.shape[0],):
                raise ValueError(f"tau_t must have shape [{h.shape[0]}], got {tuple(tau_t.shape)}")
        c = self.conditioning(tau, tau_t)  # [B, W]
        cos, sin = self.rope(h.shape[1], h.dtype)
        for block in self.blocks:
            h = block(h, c, cos, sin)
        shift, scale = self.ada_out(c).chunk(2, dim=-1)
        features = _modulate(self.norm_out(h), shift, scale)  # [B, L, W]
        if return_features:
            return features
        logits = self.head(features)  # [B, L, V]
        cap = self.config.out_softcap
        return cap * torch.tanh(logits / cap) if cap else logits

    def probs_from_features(
        self,
        features: Float[Tensor, "B L W"],
        project: Float[Tensor, "V D"] | None = None,
        dtype: torch.dtype | None = None,
        chunk_rows: int | None = None,
    ) -> Float[Tensor, "B L K"]:
        r"""softmax of the soft-capped head, :math:`p = \mathrm{softmax}(c\tanh(W_{\text{out}}f/c))`
        ``[B, L, V]``, or its projection :math:`pE` ``[B, L, D]`` when ``project = E`` is given,
        computed ``chunk_rows`` tokens at a time (default about 2²¹ logits per chunk): no ``[B, L, V]``
        logits exist, and with ``project`` no ``[B, L, V]`` tensor at all (sampling memory).

        The softmax runs in at least float32; the result is in ``dtype`` (default: ``project``'s
        dtype, else the features'). Same values as ``softmax(forward(...))`` (``tests/test_nets.py``).
        """
        *lead, W = features.shape
        f = features.reshape(-1, W)  # [N, W]
        V = self.head.out_features
        out_dtype = dtype or (project.dtype if project is not None else features.dtype)
        out = torch.empty(f.shape[0], V if project is None else project.shape[1], device=f.device, dtype=out_dtype)
        rows = chunk_rows or max(1, (1 << 21) // V)
        cap = self.config.out_softcap
        for i in range(0, f.shape[0], rows):
            z = self.head(f[i:i + rows])  # [n, V]
            z = z.to(torch.promote_types(z.dtype, torch.float32))
            p = torch.softmax(cap * torch.tanh(z / cap) if cap else z, dim=-1)  # [n, V]
            out[i:i + rows] = p if project is None else p.to(project.dtype) @ project  # [n, V] or [n, D]
        return out.view(*lead, out.shape[-1])

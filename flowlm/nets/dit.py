r"""The DiT backbone: the FLM authors' network, weight for weight (DESIGN §2, REFERENCE §1).

Input is the projected state :math:`h = xE` (``E: [V, d]``, no bias; see
:class:`flowlm.nets.ProjectedSpace`), output is per-token logits over the vocabulary. With
``cond`` the conditioning width, :math:`\mathrm{LN}` a LayerNorm in float32 with a weight and no
bias (eps 1e-5), ``emb``/``emb₂`` two :class:`~flowlm.nets.TimeEmbedder` (256 sinusoids → cond):

.. math::
    c = \mathrm{SiLU}\big(\text{emb}(\tau_s)\;[+\;\text{emb}_2(\tau_t)]\big) \in \mathbb R^{\text{cond}}  \\
    (\mu_1,\sigma_1,g_1,\mu_2,\sigma_2,g_2) = W_{\text{ada}}\,c + b_{\text{ada}}          \\
    h \leftarrow h + g_1\odot\text{drop}\big(\text{Attn}(\text{LN}(h)(1+\sigma_1)+\mu_1)\big)  \\
    h \leftarrow h + g_2\odot\text{drop}\big(\text{MLP}(\text{LN}(h)(1+\sigma_2)+\mu_2)\big)   \\
    (\mu_f,\sigma_f) = W_f\,c + b_f,\qquad
    \text{logits} = 30\tanh\big((W_{\text{out}}(\text{LN}(h)(1+\sigma_f)+\mu_f) + b_{\text{out}})/30\big)

The SiLU is applied once, to the summed embeddings. Attention is bidirectional, with bias-free
``qkv``/``out`` projections, rotate-half RoPE (base 1e4) on q and k, and the logit soft-cap
``50·tanh(s/50)`` (:mod:`flowlm.nets.attention`); the MLP is ``Linear(d, 4d) → GELU(tanh) →
Linear(4d, d)``. ``W_ada``, ``W_f`` and the head ``W_out, b_out`` are zero-initialized (adaLN-Zero:
the network starts as the uniform denoiser).

Parameters are registered in the authors' order, so their EMA ``shadow_params`` (a positional
list) maps onto :meth:`DiT.parameters`::

    vocab_embed.embedding                      [V, d]
    sigma_map.mlp.{0,2}.{weight,bias}          [cond, 256], [cond], [cond, cond], [cond]
    sigma_map_prime.mlp.{0,2}.{weight,bias}    (two-time nets only)
    (rotary_emb: no parameters; its tables are not part of the state dict)
    blocks.{i}.norm1.weight                    [d]
    blocks.{i}.attn_qkv.weight                 [3d, d]
    blocks.{i}.attn_out.weight                 [d, d]
    blocks.{i}.norm2.weight                    [d]
    blocks.{i}.mlp.0.{weight,bias}             [4d, d], [4d]
    blocks.{i}.mlp.2.{weight,bias}             [d, 4d], [d]
    blocks.{i}.adaLN_modulation.{weight,bias}  [6d, cond], [6d]
    output_layer.norm_final.weight             [d]
    output_layer.linear.{weight,bias}          [V, d], [V]
    output_layer.adaLN_modulation.{weight,bias} [2d, cond], [2d]

Conditioning may be per sequence (``tau: [B]``, ``c: [B, cond]``) or per token (``tau: [B, L]``,
``c: [B, L, cond]``); both broadcast the same way through the blocks.
"""

from __future__ import annotations

import inspect
import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from flowlm.denoisers import softcap as _checked_softcap

# the one soft-cap c·tanh(z/c) of flowlm.denoisers, without the runtime type-check wrapper that the
# test suite's import hook adds (it cannot be traced by torch.compile / flex_attention)
softcap = inspect.unwrap(_checked_softcap)
from flowlm.nets.attention import ATTENTION_KINDS, multihead_self_attention
from flowlm.nets.rope import RotaryEmbedding
from flowlm.nets.time_embedding import TimeEmbedder

__all__ = ["DiTConfig", "DiT", "DiTBlock", "FinalLayer", "LayerNorm", "TokenEmbedding", "OLD_FORMAT_MESSAGE"]

OLD_FORMAT_MESSAGE = (
    "this checkpoint/config was written by an older flowlm whose DiT is not the authors' network: it had "
    "`time_dim` (sinusoid count, embedder as wide as the model) where the network now has `cond` (a separate "
    "conditioning width, 256 sinusoids), LayerNorms without weights, biases on qkv and attention-out, SiLU "
    "inside each adaLN, and other parameter names (embed_tokens, time_embed, blocks.*.ada, head). Its weights "
    "cannot be loaded into the current DiT; retrain it with this version of flowlm (or load it with flowlm "
    "from before December 2026)"
)


@dataclass
class DiTConfig:
    """Architecture of a :class:`DiT` (the authors' defaults; presets shrink width/depth for CPU).

    ``cond`` is the conditioning width (time-embedder output and adaLN input), separate from the
    model ``width``; ``time_features`` is the number of sinusoidal features of τ (256).
    """

    vocab_size: int
    max_length: int
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: int = 4
    cond: int = 128
    time_features: int = 256
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
        if self.cond < 1:
            problems.append(f"cond must be >= 1 (got {self.cond})")
        if self.time_features < 2 or self.time_features % 2:
            problems.append(f"time_features must be even and >= 2 (got {self.time_features})")
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
        if "time_dim" in d:
            raise ValueError(OLD_FORMAT_MESSAGE)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"DiTConfig.from_dict: unknown keys {sorted(unknown)}; known keys are {sorted(names)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "DiTConfig":
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------------------- layers
class LayerNorm(nn.Module):
    r"""LayerNorm with a weight and no bias, computed in at least float32:
    :math:`\mathrm{LN}(x) = \frac{x - \bar x}{\sqrt{\mathrm{var}(x) + 10^{-5}}}\odot w` over the last axis."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    @typing.no_type_check  # runs inside torch.compile
    def forward(self, x: Tensor) -> Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = F.layer_norm(x.to(dtype), x.shape[-1:], eps=self.eps)
        return y * self.weight.to(dtype)


class TokenEmbedding(nn.Module):
    """The input matrix ``embedding = E: [V, d]``; a state ``x: [B, L, V]`` enters only as ``x @ E``."""

    def __init__(self, vocab_size: int, width: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(vocab_size, width) * 0.02)


@typing.no_type_check
def _per_token(m: Tensor) -> Tensor:
    """A modulation ``[B, k]`` (per sequence) as ``[B, 1, k]``; ``[B, L, k]`` (per token) unchanged."""
    return m[:, None, :] if m.ndim == 2 else m


@typing.no_type_check
def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1.0 + scale) + shift


class DiTBlock(nn.Module):
    """One pre-LN block with adaLN-Zero: chunks (shift, scale, gate) for attention, then for the MLP."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        w = config.width
        self.heads, self.attn_cap, self.attn_kind, self.causal = config.heads, config.attn_softcap, config.attention, config.causal
        self.norm1 = LayerNorm(w)
        self.attn_qkv = nn.Linear(w, 3 * w, bias=False)
        self.attn_out = nn.Linear(w, w, bias=False)
        self.norm2 = LayerNorm(w)
        self.mlp = nn.Sequential(
            nn.Linear(w, config.mlp_ratio * w), nn.GELU(approximate="tanh"), nn.Linear(config.mlp_ratio * w, w)
        )
        self.adaLN_modulation = nn.Linear(config.cond, 6 * w)
        self.drop = nn.Dropout(config.dropout)

    @typing.no_type_check
    def forward(self, h: Tensor, c: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        mods = _per_token(self.adaLN_modulation(c)).chunk(6, dim=-1)  # each [B, 1 | L, W]
        shift1, scale1, gate1, shift2, scale2, gate2 = mods
        a = _modulate(self.norm1(h), shift1, scale1).to(h.dtype)
        a = multihead_self_attention(a, self.attn_qkv, self.attn_out, self.heads, cos, sin, self.attn_cap, self.attn_kind,
                                     self.causal)
        h = h + gate1 * self.drop(a)
        h = h + gate2 * self.drop(self.mlp(_modulate(self.norm2(h), shift2, scale2).to(h.dtype)))
        return h  # [B, L, W]


class FinalLayer(nn.Module):
    """``LN(h)(1+scale)+shift`` (chunks shift, scale of ``adaLN_modulation(c)``), then the linear head."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        w = config.width
        self.norm_final = LayerNorm(w)
        self.linear = nn.Linear(w, config.vocab_size)
        self.adaLN_modulation = nn.Linear(config.cond, 2 * w)

    @typing.no_type_check
    def features(self, h: Tensor, c: Tensor) -> Tensor:
        """The modulated last hidden states ``[B, L, W]`` that the head maps to logits."""
        shift, scale = _per_token(self.adaLN_modulation(c)).chunk(2, dim=-1)
        return _modulate(self.norm_final(h), shift, scale).to(h.dtype)


# ----------------------------------------------------------------------------------------- network
class DiT(nn.Module):
    """``DiT(config)(h [B, L, d], tau [B] | [B, L], tau_t | None) -> capped logits [B, L, V]``.

    ``h = x @ E`` is the projected state (``E = self.E``, ``[V, d]``); ``tau`` is model time
    (never interpolation time: :mod:`flowlm.nets.wrappers` converts). ``tau_t`` is required
    exactly when ``config.two_time``.
    """

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.vocab_embed = TokenEmbedding(config.vocab_size, w)
        self.sigma_map = TimeEmbedder(config.cond, config.time_features)
        self.sigma_map_prime = TimeEmbedder(config.cond, config.time_features) if config.two_time else None
        self.rotary_emb = RotaryEmbedding(w // config.heads, config.max_length)
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.depth))
        self.output_layer = FinalLayer(config)
        self._init_weights()

    def _init_weights(self) -> None:
        for block in self.blocks:
            for lin in (block.attn_qkv, block.attn_out, block.mlp[0], block.mlp[2]):
                nn.init.normal_(lin.weight, std=0.02)
                if lin.bias is not None:
                    nn.init.zeros_(lin.bias)
            nn.init.zeros_(block.adaLN_modulation.weight)  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(block.adaLN_modulation.bias)
        for lin in (self.output_layer.adaLN_modulation, self.output_layer.linear):  # zero-initialized head
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    @property
    def E(self) -> Tensor:
        """The ``[V, d]`` input matrix: the network reads a state ``x`` only through ``x @ E``."""
        return self.vocab_embed.embedding

    @property
    def head(self) -> nn.Linear:
        """The output projection ``W_out, b_out`` (``output_layer.linear``)."""
        return self.output_layer.linear

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def width(self) -> int:
        return self.config.width

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.E.numel() if non_embedding else n

    def conditioning(self, tau: Tensor, tau_t: Tensor | None = None) -> Tensor:
        """``c = SiLU(emb(τ) [+ emb₂(τ_t)])``: ``[B, cond]`` for ``tau: [B]``, ``[B, L, cond]`` for ``[B, L]``."""
        c = self.sigma_map(tau)
        if self.sigma_map_prime is not None:
            if tau_t is None:
                raise ValueError("this DiT is two-time (config.two_time=True): pass tau_t, the model time of the target")
            c = c + self.sigma_map_prime(tau_t)
        elif tau_t is not None:
            raise ValueError("this DiT is single-time (config.two_time=False) but tau_t was given; "
                             "build it with DiTConfig(two_time=True) or FMLM.from_teacher")
        return F.silu(c)

    def _check_inputs(self, h: Tensor, tau: Tensor, tau_t: Tensor | None) -> None:
        if h.ndim != 3 or h.shape[-1] != self.config.width:
            raise ValueError(
                f"DiT expects the projected state h = x @ E of shape [B, L, {self.config.width}], got "
                f"{tuple(h.shape)}; project a V-wide state with x @ net.E (or use NetDenoiser)"
            )
        ok = ((h.shape[0],), tuple(h.shape[:2]))
        for name, t in (("tau", tau), ("tau_t", tau_t)):
            if t is not None and tuple(t.shape) not in ok:
                raise ValueError(f"{name} must have shape [{h.shape[0]}] (one model time per sequence) or "
                                 f"[{h.shape[0]}, {h.shape[1]}] (per token), got {tuple(t.shape)}")

    @typing.no_type_check  # runs inside torch.compile; shapes are checked by the wrappers and below
    def forward(self, h: Tensor, tau: Tensor, tau_t: Tensor | None = None, return_features: bool = False) -> Tensor:
        """Logits ``[B, L, V]`` (soft-capped); with ``return_features=True`` the modulated last hidden
        states ``[B, L, d]`` that the head maps to logits (for the chunked loss of :mod:`flowlm.nets.fused_ce`)."""
        if not torch.compiler.is_compiling():
            self._check_inputs(h, tau, tau_t)
        c = self.conditioning(tau, tau_t)  # [B, cond] or [B, L, cond]
        cos, sin = self.rotary_emb(h.shape[1], h.dtype)
        for block in self.blocks:
            h = block(h, c, cos, sin)
        features = self.output_layer.features(h, c)  # [B, L, W]
        if return_features:
            return features
        return softcap(self.head(features), self.config.out_softcap)  # [B, L, V]

    def probs_from_features(
        self,
        features: Float[Tensor, "B L W"],
        project: Float[Tensor, "V D"] | None = None,
        dtype: torch.dtype | None = None,
        chunk_rows: int | None = None,
    ) -> Float[Tensor, "B L K"]:
        r"""softmax of the soft-capped head, :math:`p = \mathrm{softmax}(c\tanh((W_{\text{out}}f + b)/c))`
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
            p = torch.softmax(softcap(z.to(torch.promote_types(z.dtype, torch.float32)), cap), dim=-1)  # [n, V]
            out[i:i + rows] = p if project is None else p.to(project.dtype) @ project  # [n, V] or [n, D]
        return out.view(*lead, out.shape[-1])

r"""Multi-head self-attention with RoPE and an attention-logit soft-cap.

For queries/keys/values of head width :math:`d_h`,

.. math::
    s = \frac{q k^\top}{\sqrt{d_h}},\qquad \tilde s = c\,\tanh(s/c),\qquad
    \text{attn} = \text{softmax}(\tilde s)\,v

(bidirectional unless ``causal=True``, which masks keys after the query: the AR baseline). Three interchangeable kernels compute it:

``"math"``
    the formula above, written with plain tensor ops. Exact cap; works under every
    ``torch.func`` transform, in particular forward-mode AD (``torch.func.jvp``) which the
    Lagrangian/Eulerian distillers need. Materializes the ``[B, H, L, L]`` score tensor.
``"sdpa"``
    ``torch.nn.functional.scaled_dot_product_attention`` (fused flash / memory-efficient
    kernels). These kernels have no hook for a score transform, so they **cannot apply the
    soft-cap**: the module refuses ``"sdpa"`` when a cap is set rather than silently computing
    another function. Use it with ``attn_softcap=None``.
``"flex"``
    ``torch.nn.attention.flex_attention`` with the cap as a ``score_mod``: exact, and fused when
    the model runs under ``torch.compile`` (eager calls fall back to an unfused reference).
``"auto"``
    ``"math"`` whenever a cap is set or a ``torch.func`` / forward-AD transform is active,
    otherwise ``"sdpa"``. With the default cap 50 this is the exact math path (which
    ``torch.compile`` fuses well at language-model lengths); choose ``"flex"`` on CUDA for long
    sequences.

The three paths agree to float tolerance wherever they are defined (``tests/test_nets.py``).
"""

from __future__ import annotations

import inspect
import typing

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowlm.denoisers import softcap as _checked_softcap
from flowlm.nets.rope import apply_rotary

# the one soft-cap c·tanh(z/c) of flowlm.denoisers, without the runtime type-check wrapper that the
# test suite's import hook adds (it cannot be traced by torch.compile / flex_attention)
softcap = inspect.unwrap(_checked_softcap)

__all__ = ["SelfAttention", "attention", "multihead_self_attention", "ATTENTION_KINDS"]

ATTENTION_KINDS = ("auto", "sdpa", "math", "flex")


def _forward_ad_active(x: Tensor) -> bool:
    """True inside torch.func transforms (jvp, vmap, grad) or when ``x`` is a forward-AD dual tensor."""
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return True
    return torch.autograd.forward_ad.unpack_dual(x).tangent is not None


@typing.no_type_check
def _math_attention(q: Tensor, k: Tensor, v: Tensor, cap: float | None, causal: bool = False) -> Tensor:
    scale = q.shape[-1] ** -0.5
    s = softcap(torch.matmul(q, k.transpose(-2, -1)) * scale, cap)  # [B, H, L, L]
    if causal:  # query l sees keys j <= l
        L = s.shape[-1]
        s = s.masked_fill(torch.ones(L, L, dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    p = torch.softmax(s.to(torch.promote_types(s.dtype, torch.float32)), dim=-1).to(v.dtype)  # fp32+ softmax
    return torch.matmul(p, v)  # [B, H, L, Dh]


@typing.no_type_check
def _flex_attention(q: Tensor, k: Tensor, v: Tensor, cap: float | None, causal: bool = False) -> Tensor:
    from torch.nn.attention.flex_attention import flex_attention

    if cap or causal:
        def score_mod(score, b, h, q_idx, kv_idx):  # noqa: ARG001 - flex signature
            s = softcap(score, cap)
            return torch.where(q_idx >= kv_idx, s, float("-inf")) if causal else s
    else:
        score_mod = None
    return flex_attention(q, k, v, score_mod=score_mod)


@typing.no_type_check
def attention(q: Tensor, k: Tensor, v: Tensor, cap: float | None, kind: str = "auto", causal: bool = False) -> Tensor:
    """Soft-capped attention ``softmax(c·tanh(qkᵀ/(√d_h c)))·v`` on ``[B, H, L, Dh]`` tensors."""
    if kind == "auto":
        kind = "math" if cap or _forward_ad_active(q) else "sdpa"
    if kind == "math":
        return _math_attention(q, k, v, cap, causal)
    if kind == "sdpa":
        if cap:
            raise ValueError(
                "attention='sdpa' cannot apply the attention soft-cap (fused SDPA kernels have no score hook); "
                "use attention='math' or 'flex', or set attn_softcap=None"
            )
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    if kind == "flex":
        return _flex_attention(q, k, v, cap, causal)
    raise ValueError(f"unknown attention kind {kind!r}; choose one of {ATTENTION_KINDS}")


@typing.no_type_check  # runs inside torch.compile
def multihead_self_attention(
    x: Tensor, qkv: nn.Linear, out: nn.Linear, heads: int, cos: Tensor, sin: Tensor,
    cap: float | None, kind: str = "auto", causal: bool = False,
) -> Tensor:
    """``out(attn(rope(q), rope(k), v))`` for ``x: [B, L, W]``; ``qkv(x)`` is split as ``(three, heads, d_h)``
    along the last axis (the authors' ``b s (three h d)`` layout), RoPE rotates q and k only."""
    B, L, W = x.shape
    q, k, v = qkv(x).view(B, L, 3, heads, W // heads).permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, L, Dh]
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    o = attention(q, k, v, cap, kind, causal)  # [B, H, L, Dh]
    return out(o.transpose(1, 2).reshape(B, L, W))  # [B, L, W]


class SelfAttention(nn.Module):
    """Multi-head self-attention (bidirectional; causal when ``causal=True``): bias-free qkv projection,
    RoPE, soft-capped attention, bias-free output projection (the DiT block holds the same two matrices
    as ``attn_qkv``/``attn_out``)."""

    def __init__(self, width: int, heads: int, cap: float | None = 50.0, kind: str = "auto", causal: bool = False) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention kind {kind!r}; choose one of {ATTENTION_KINDS}")
        if kind == "sdpa" and cap:
            raise ValueError(
                "attention='sdpa' cannot apply the attention soft-cap (fused SDPA kernels have no score hook); "
                "use attention='math' or 'flex', or set attn_softcap=None"
            )
        self.heads, self.cap, self.kind, self.causal = heads, cap, kind, bool(causal)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    @typing.no_type_check
    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        return multihead_self_attention(x, self.qkv, self.proj, self.heads, cos, sin, self.cap, self.kind, self.causal)

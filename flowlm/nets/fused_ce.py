r"""Memory-efficient output head + soft-cap + cross-entropy (the FLM loss without ``[B, L, V]`` tensors).

For features :math:`f\in\mathbb R^{N\times d}` (the DiT's last hidden states), head
:math:`(W\in\mathbb R^{V\times d}, b)`, cap :math:`c`, targets :math:`y` and per-token weights
:math:`w` (mask / number of counted tokens):

.. math::
    z = fW^\top + b,\qquad \ell = c\tanh(z/c),\qquad
    \mathcal L = \sum_n w_n\big(\operatorname{logsumexp}(\ell_n) - \ell_{n,y_n}\big)

computed over row chunks of ``chunk_rows`` tokens. The gradient is formed in the same pass,
:math:`\partial\mathcal L/\partial z = w\,(\operatorname{softmax}(\ell) - e_y)\odot(1-(\ell/c)^2)`,
then :math:`\partial_f = (\partial_z)W`, :math:`\partial_W = (\partial_z)^\top f`,
:math:`\partial_b = \textstyle\sum_n \partial_{z_n}`, so only one chunk of logits exists at a time
and nothing V-wide is kept for the backward pass. Same value and gradient as
``flm_loss(softcap(f @ W.T + b), tokens, mask)`` (``tests/test_nets.py``).
"""

from __future__ import annotations

import inspect
import typing

import torch
from torch import Tensor

from flowlm.denoisers import softcap as _checked_softcap

# the one soft-cap c·tanh(z/c) of flowlm.denoisers, without the runtime type-check wrapper that the
# test suite's import hook adds (it cannot be traced by torch.compile / flex_attention)
softcap = inspect.unwrap(_checked_softcap)

__all__ = ["linear_softcap_cross_entropy"]


@typing.no_type_check
def _chunked(f, weight, bias, targets, weights, cap, chunk_rows, need_grad):
    """Loss (and, when ``need_grad``, the gradients w.r.t. f, W, b) one chunk of rows at a time."""
    acc = torch.promote_types(f.dtype, torch.float32)  # float32 at least, float64 stays float64
    total = torch.zeros((), device=f.device, dtype=acc)
    gf = torch.zeros_like(f) if need_grad else None
    gw = torch.zeros(weight.shape, device=weight.device, dtype=acc) if need_grad else None
    gb = torch.zeros(weight.shape[0], device=weight.device, dtype=acc) if need_grad else None
    for i in range(0, f.shape[0], chunk_rows):
        fi = f[i:i + chunk_rows]  # [n, d]
        z = (torch.addmm(bias, fi, weight.t()) if bias is not None else fi @ weight.t())  # [n, V]
        z = z.to(torch.promote_types(z.dtype, torch.float32))
        ell = softcap(z, cap)  # soft-capped logits
        lse = torch.logsumexp(ell, dim=-1)  # [n]
        ti = targets[i:i + chunk_rows]
        wi = weights[i:i + chunk_rows].to(ell.dtype)
        picked = ell.gather(1, ti[:, None]).squeeze(1)  # [n]
        total = total + ((lse - picked) * wi).sum()
        if need_grad:
            g = torch.exp(ell - lse[:, None])  # softmax(ℓ), [n, V]
            g.scatter_add_(1, ti[:, None], torch.full_like(picked, -1.0)[:, None])  # − e_y
            g.mul_(wi[:, None])
            if cap:
                g.mul_(1.0 - (ell / cap).square())  # dℓ/dz
            gf[i:i + chunk_rows] = (g.to(weight.dtype) @ weight).to(f.dtype)
            gw.add_(g.t().to(gw.dtype) @ fi.to(gw.dtype))
            gb.add_(g.sum(0).to(gb.dtype))
    return total, gf, gw, gb


class _LinearSoftcapCE(torch.autograd.Function):
    @staticmethod
    @typing.no_type_check
    def forward(ctx, f, weight, bias, targets, weights, cap, chunk_rows):
        total, gf, gw, gb = _chunked(f, weight, bias, targets, weights, cap, chunk_rows, True)
        ctx.save_for_backward(gf, gw.to(weight.dtype), gb.to(weight.dtype))
        ctx.has_bias = bias is not None
        return total

    @staticmethod
    @typing.no_type_check
    def backward(ctx, grad_out):
        gf, gw, gb = ctx.saved_tensors
        return gf * grad_out, gw * grad_out, (gb * grad_out if ctx.has_bias else None), None, None, None, None


@typing.no_type_check  # called on the training hot path (also under torch.compile)
def linear_softcap_cross_entropy(
    features: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    tokens: Tensor,
    mask: Tensor | None = None,
    cap: float | None = 30.0,
    chunk_rows: int | None = None,
    token_weights: Tensor | None = None,
) -> Tensor:
    r"""Mean (over counted tokens) CE of ``c·tanh((f W^T + b)/c)`` against ``tokens``, chunked.

    ``features: [B, L, d]``, ``weight: [V, d]``, ``bias: [V]``, ``tokens: [B, L]``,
    ``mask: [B, L]`` (True = counts). ``chunk_rows`` defaults to about 2²¹ logits (8 MiB in float32) per chunk.
    With ``token_weights: [B, L]`` (instead of ``mask``) the result is the plain weighted sum
    :math:`\sum_n w_n \mathrm{CE}_n` (no normalization; MDLM's 1/t-weighted loss).
    """
    d = features.shape[-1]
    V = weight.shape[0]
    f = features.reshape(-1, d)  # [N, d]
    t = tokens.reshape(-1)  # [N]
    acc = torch.promote_types(features.dtype, torch.float32)
    if token_weights is not None:
        if mask is not None:
            raise ValueError("pass either mask or token_weights, not both (fold the mask into the weights)")
        w = token_weights.reshape(-1).to(acc)
    elif mask is None:
        w = torch.full(t.shape, 1.0 / t.numel(), device=f.device, dtype=acc)  # per-token weights
    else:
        m = mask.reshape(-1).to(acc)
        n = m.sum()
        if not torch.compiler.is_compiling() and int(n) == 0:
            raise ValueError("the mask selects no token; every sequence is padding")
        w = m / n
    rows = chunk_rows or max(1, (1 << 21) // V)
    needs = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (features, weight, bias))
    if not needs:
        return _chunked(f, weight, bias, t, w, cap, rows, False)[0]
    return _LinearSoftcapCE.apply(f, weight, bias, t, w, cap, rows)

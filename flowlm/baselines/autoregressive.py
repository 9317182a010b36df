r"""Autoregressive (next-token) language modelling: inputs, loss and ancestral sampler.

**BOS convention.** A sequence :math:`x = (x^0,\dots,x^{L-1})` over the ``V`` real tokens is read by the
network as the inputs :math:`(\mathrm{BOS}, x^0, \dots, x^{L-2})`, where ``BOS = V`` is one extra id
(the network's input vocabulary has ``V + 1`` rows). The output at position ℓ is the distribution of
:math:`x^\ell` given :math:`x^{<\ell}` over the ``V`` real tokens (BOS is never generated), so the model
defines the full law :math:`p(x) = \prod_{\ell} p(x^\ell\mid x^{<\ell})`, first token included, and

.. math::
    \mathcal L = \frac1{BL}\sum_{b,\ell} -\log p_\theta(x_b^\ell \mid x_b^{<\ell})
    \qquad(\text{mean over tokens; } = -\log p_\theta(x)/L \text{ per sequence}).

**Sampler.** ``L`` calls of the next-token function on the growing prefix (``nfe = L``; no KV cache),
each draw from :func:`~flowlm.baselines.categorical.warp_logits` (temperature, then top-p) in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from flowlm.baselines.categorical import sample_categorical, warp_logits
from flowlm.samplers import SamplerOutput

__all__ = ["ar_inputs", "ar_loss", "ar_sample"]


def ar_inputs(tokens: Int[Tensor, "B L"], bos_id: int) -> Int[Tensor, "B L"]:
    """The network inputs ``[BOS, x^0, …, x^{L−2}]`` for the targets ``tokens`` (shift right by one)."""
    bos = torch.full_like(tokens[:, :1], bos_id)
    return torch.cat((bos, tokens[:, :-1]), dim=1)


def ar_loss(
    logits: Float[Tensor, "B L V"], tokens: Int[Tensor, "B L"], mask: Bool[Tensor, "B L"] | None = None
) -> Float[Tensor, ""]:
    """Mean next-token cross-entropy; ``logits[:, ℓ]`` predict ``tokens[:, ℓ]`` from ``ar_inputs(tokens)[:, :ℓ+1]``.

    ``mask`` (True = counts) averages over the counted tokens only.
    """
    if logits.shape[:2] != tokens.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and tokens {tuple(tokens.shape)} disagree on [B, L]")
    z = logits.flatten(0, 1)
    nll = F.cross_entropy(z.to(torch.promote_types(z.dtype, torch.float32)), tokens.flatten(), reduction="none")  # [B*L]
    if mask is None:
        return nll.mean()
    m = mask.flatten().to(nll.dtype)
    if float(m.sum()) == 0:
        raise ValueError("the mask selects no token")
    return (nll * m).sum() / m.sum()


def ar_sample(
    next_logits: Callable[[Tensor], Tensor],
    batch: int,
    length: int,
    bos_id: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> SamplerOutput:
    """Ancestral sampling of ``batch`` sequences of ``length`` tokens.

    ``next_logits(prefix)``: ``prefix [B, n]`` (starting with ``bos_id``) → logits ``[B, V]`` of the next
    token over the ``V`` real tokens. Returns ``SamplerOutput(probs, tokens, nfe)`` where ``probs[:, ℓ]``
    (float32) is the warped distribution token ℓ was drawn from and ``nfe = length``.
    """
    if length < 1 or batch < 1:
        raise ValueError(f"batch and length must be positive, got batch={batch}, length={length}")
    prefix = torch.full((batch, 1), bos_id, dtype=torch.long, device=device)
    probs = []
    for _ in range(length):
        p = warp_logits(next_logits(prefix), temperature, top_p)  # [B, V] float64
        token = sample_categorical(p, generator)  # [B]
        probs.append(p.float())
        prefix = torch.cat((prefix, token[:, None]), dim=1)
    return SamplerOutput(torch.stack(probs, dim=1), prefix[:, 1:], length)

r"""Absorbing-state masked diffusion (MDLM, REFERENCE.md §2): schedule, SUBS, loss and sampler.

**Time.** Here :math:`t\in[0,1]` is the *masking* time: :math:`t = 0` is clean data and
:math:`t = 1` is (almost) fully masked. This is the reverse of FLM's interpolation time, where
:math:`t = 1` is data; the two never meet in this module.

**Forward process.** One extra id :math:`m` (``mask_id``, by convention ``V``). Each token is replaced by
:math:`m` independently with probability :math:`1-\alpha_t`, with the log-linear schedule
:math:`\alpha_t = 1-(1-\varepsilon)t`, :math:`\varepsilon = 10^{-3}`.

**SUBS.** The network's logit of :math:`m` is set to :math:`-\infty` (it never predicts a mask) and
unmasked positions copy their token (probability one on it).

**Loss** (continuous-time NELBO, averaged over the ``B·L`` tokens):

.. math::
    \mathcal L = \mathbb E_t\,\frac{1}{BL}\sum_{b,\ell:\,x_t^\ell = m}
    \frac{-\alpha'_t}{1-\alpha_t}\big(-\log p_\theta(x^\ell\mid x_t)\big),
    \qquad \frac{-\alpha'_t}{1-\alpha_t} = \frac1t \text{ (log-linear)},

with antithetic (stratified) :math:`t\sim U[\varepsilon, 1]` over the batch.

**Ancestral sampler** on :math:`t_i = \mathrm{linspace}(1, 10^{-5}, N+1)`, from all-masked: going from
:math:`t` to :math:`s < t`, a masked token stays masked with probability :math:`(1-\alpha_s)/(1-\alpha_t)`,
else takes a token drawn from :math:`p_\theta(\cdot\mid x_t)`; unmasked tokens are kept; the last step
unmasks every remaining token (it draws them from :math:`p_\theta`; MDLM's code takes the argmax
there instead, which changes the law only at tokens still masked at :math:`t_{N-1}`). The denoiser has no
time input, so its output is reused while nothing changed: such a step costs no NFE. Draws are float64.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from flowlm.baselines.categorical import sample_categorical, warp_logits
from flowlm.samplers import SamplerOutput

__all__ = ["LogLinearMasking", "mask_tokens", "subs_log_probs", "mdlm_loss", "mdlm_sample"]


class LogLinearMasking:
    r"""The log-linear schedule :math:`\alpha_t = 1-(1-\varepsilon)t` in masking time ``t`` (1 = masked)."""

    def __init__(self, eps: float = 1e-3) -> None:
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"eps must be in [0, 1), got {eps}")
        self.eps = float(eps)

    def alpha(self, t: Tensor) -> Tensor:
        """Probability that a token is still clean at masking time ``t``."""
        return 1.0 - (1.0 - self.eps) * t

    def mask_prob(self, t: Tensor) -> Tensor:
        """1 − α_t = (1 − ε)·t."""
        return (1.0 - self.eps) * t

    def weight(self, t: Tensor) -> Tensor:
        """The NELBO weight −α'_t/(1 − α_t) = 1/t."""
        return 1.0 / t

    def sample_times(
        self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> Float[Tensor, " n"]:
        """Antithetic draws of t ~ U[ε, 1]: one uniform shifted into each of the n strata, in float32."""
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        u = (u / n + torch.arange(n, device=device, dtype=torch.float64) / n) % 1.0
        return ((1.0 - self.eps) * u + self.eps).float()

    def __repr__(self) -> str:
        return f"LogLinearMasking(eps={self.eps})"


def mask_tokens(
    tokens: Int[Tensor, "B L"],
    t: Float[Tensor, " B"],
    schedule: LogLinearMasking,
    mask_id: int,
    generator: torch.Generator | None = None,
) -> Int[Tensor, "B L"]:
    """x_t: each token replaced by ``mask_id`` independently with probability 1 − α_t."""
    u = torch.rand(tokens.shape, generator=generator, device=tokens.device, dtype=torch.float64)
    return torch.where(u < schedule.mask_prob(t.double())[:, None], torch.full_like(tokens, mask_id), tokens)


def subs_log_probs(
    logits: Float[Tensor, "B L Vp1"], xt: Int[Tensor, "B L"], mask_id: int
) -> Float[Tensor, "B L V"]:
    """SUBS log-probabilities over the ``V`` real tokens (``mask_id = V`` is the last logit).

    Masked positions: log-softmax of the real logits (the mask logit is −∞). Unmasked positions:
    0 at their token, −∞ elsewhere (they copy their token).
    """
    V = logits.shape[-1] - 1
    if mask_id != V:
        raise ValueError(f"SUBS expects the mask id to be the last logit ({V}), got mask_id={mask_id}")
    logp = torch.log_softmax(logits[..., :V].float(), dim=-1)  # [B, L, V]
    masked = xt == mask_id
    copy = torch.full_like(logp, float("-inf")).scatter_(-1, xt.clamp(max=V - 1)[..., None], 0.0)
    return torch.where(masked[..., None], logp, copy)


def mdlm_loss(
    log_probs: Float[Tensor, "B L V"],
    tokens: Int[Tensor, "B L"],
    xt: Int[Tensor, "B L"],
    t: Float[Tensor, " B"],
    schedule: LogLinearMasking,
    mask_id: int,
) -> Float[Tensor, ""]:
    """(1/BL)·Σ_{masked} w(t)·(−log p(x^ℓ | x_t)), ``w(t) = −α'_t/(1−α_t)`` (= 1/t); unmasked tokens add 0."""
    masked = xt == mask_id
    nll = -log_probs.gather(-1, tokens[..., None]).squeeze(-1)  # [B, L]
    w = schedule.weight(t.to(nll.dtype))[:, None]  # [B, 1]
    return torch.where(masked, w * nll, torch.zeros_like(nll)).mean()


def mdlm_sample(
    denoiser: Callable[[Tensor], Tensor],
    batch: int,
    length: int,
    vocab_size: int,
    steps: int,
    *,
    schedule: LogLinearMasking | None = None,
    t_min: float = 1e-5,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> SamplerOutput:
    """Ancestral MDLM sampling with ``steps`` steps on ``linspace(1, t_min, steps + 1)``; mask id = ``vocab_size``.

    ``denoiser(xt [B, L]) -> probs [B, L, V]``: :math:`p_\\theta(x^\\ell\\mid x_t)` over the real tokens
    (SUBS: one-hot at unmasked positions), with no time input: its output is cached while ``xt`` is
    unchanged and ``nfe`` counts actual calls. Temperature / top-p (default: none) warp ``p_θ`` before a
    draw. Returns ``SamplerOutput(probs, tokens, nfe)``; ``probs`` (float32) are the (warped)
    probabilities of the last denoiser call.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not 0.0 < t_min < 1.0:
        raise ValueError(f"t_min must be in (0, 1), got {t_min}")
    schedule = schedule or LogLinearMasking()
    m = vocab_size
    times = torch.linspace(1.0, t_min, steps + 1, dtype=torch.float64)
    xt = torch.full((batch, length), m, dtype=torch.long, device=device)
    probs, nfe, changed = None, 0, True
    for i in range(steps):
        t, s = times[i], times[i + 1]
        masked = xt == m
        if not bool(masked.any()):
            break  # everything is unmasked: the remaining steps do nothing
        if changed:  # the denoiser depends on x_t only: recompute only after a token was unmasked
            probs = denoiser(xt)  # [B, L, V]
            if temperature != 1.0 or top_p != 1.0:
                probs = warp_logits(probs.double().log(), temperature, top_p)
            nfe += 1
        stay = float((1 - schedule.alpha(s)) / (1 - schedule.alpha(t))) if i < steps - 1 else 0.0
        u = torch.rand(xt.shape, generator=generator, device=xt.device, dtype=torch.float64)
        unmask = masked & (u >= stay)  # P = 1 − (1−α_s)/(1−α_t)
        changed = bool(unmask.any())
        if changed:
            xt = xt.clone()
            xt[unmask] = sample_categorical(probs[unmask], generator)  # only the rows that unmask: [n, V]
    return SamplerOutput(probs.float(), xt, nfe)

r"""Few-step sampling with a two-time denoiser (FMLM sampling, DESIGN §1).

On the uniform τ grid :math:`0 = t_0 < t_1 < \dots < t_N = 1` of the schedule:

.. math::
    x \leftarrow \hat X_{t_i, t_{i+1}}(x) = (\alpha_{t_{i+1}}/\alpha_{t_i})\,x
      + (\beta_{t_{i+1}} - \alpha_{t_{i+1}}\beta_{t_i}/\alpha_{t_i})\,\mathrm{embed}(\hat\delta_{t_i,t_{i+1}}(x)),
    \qquad i = 0, \dots, N-2,

and the last step returns the probabilities :math:`\hat\delta_{t_{N-1},1}(x)` (the flow map to
``t = 1`` *is* δ there); tokens are their per-position argmax. One step is
:math:`\arg\max\hat\delta(x_0, 0, 1)`.

**Re-noising** (consistency-style, ``gamma`` = γ ∈ [0, 1]): after each inner step, with the
clean estimate :math:`\hat x_1 = \mathrm{embed}(\hat\delta_{t_i,1}(x_i))` and the deterministic
update :math:`x^\star = \hat X_{t_i,t_{i+1}}(x_i)`, write the implied noise
:math:`\hat\varepsilon = (x^\star - \beta\hat x_1)/\alpha` (at :math:`t_{i+1}`) and redraw part of it:

.. math::
    x_{i+1} = \beta\,\hat x_1 + \alpha\big(\sqrt{1-\gamma^2}\,\hat\varepsilon + \gamma\,\xi\big),\qquad \xi\sim\mathcal N(0, I)
    \ (\text{drawn by } \texttt{space.noise}).

γ = 0 is the deterministic flow map; γ = 1 is multistep consistency sampling
:math:`x_{i+1} = \beta\hat x_1 + \alpha\xi` (no flow-map pass needed). **Only γ ∈ {0, 1} is exact:**
with the exact flow map, γ = 0 transports the law of :math:`x_{t_i}` to that of
:math:`x_{t_{i+1}}`, and γ = 1 draws :math:`\alpha\xi + \beta\hat x_1` with :math:`\hat x_1` an exact
sample of the data (the one-step map's output is one-hot), which is the path's marginal. For
0 < γ < 1 the implied noise :math:`\hat\varepsilon` is *not* a standard normal independent of
:math:`\hat x_1` (given the endpoint it is a deterministic function of the state), so the mixture
does not preserve the marginal even with exact maps (an independent audit measured the violation;
``tests/test_flowmaps.py`` checks that γ ∈ {0, 1} keep the marginal with exact maps; on its small
toy law the 0 < γ < 1 deviation is below the Monte-Carlo noise, so no test asserts it).
Each network call counts as one function evaluation (``nfe``): ``N`` for γ = 0 or 1, ``2N − 1``
for 0 < γ < 1. γ has no effect at one step.

**The authors' γ-sampler** (``kind="authors"``, REFERENCE §5; one network call per step). Their
Linear rule, with :math:`\sigma = 1 - t_{i+1}`, :math:`\tilde\sigma = \sigma\sqrt{1-\gamma^2}`,
:math:`\tilde t = 1 - \tilde\sigma`, :math:`\delta = \hat\delta_{t_i,\tilde t}(x)`:
:math:`x \leftarrow \hat X_{t_i,\tilde t}(x) + (\tilde\sigma - \sigma)\,\delta + \gamma\sigma\,\xi`.
Reading :math:`\hat X_{t_i,\tilde t}(x) = \alpha_{\tilde t}\hat\varepsilon + \beta_{\tilde t}\delta`
(the noise implied at :math:`\tilde t` with δ as the clean estimate), the rule is
:math:`x_{i+1} = \beta_{t_{i+1}}\delta + \alpha_{t_{i+1}}(\sqrt{1-\gamma^2}\,\hat\varepsilon + \gamma\xi)`,
and :math:`\tilde t` is the time whose noise level is the kept share,
:math:`\alpha_{\tilde t} = \sqrt{1-\gamma^2}\,\alpha_{t_{i+1}}`, so that :math:`\hat X_{t_i,\tilde t}(x)`
enters with coefficient 1. This **generalizes to any affine interpolant** (α strictly decreasing,
so :math:`\tilde t = \alpha^{-1}(\sqrt{1-\gamma^2}\,\alpha_{t_{i+1}}) \in [t_{i+1}, 1]`, found by bisection):

.. math::
    x_{i+1} = \hat X_{t_i,\tilde t}(x_i) + (\beta_{t_{i+1}} - \beta_{\tilde t})\,\mathrm{embed}(\hat\delta_{t_i,\tilde t}(x_i))
      + \gamma\,\alpha_{t_{i+1}}\,\xi,

which for Linear (α = 1 − t, β = t) is the authors' rule: :math:`\beta_{t_{i+1}} - \beta_{\tilde t} = \tilde\sigma - \sigma`.
γ = 0: :math:`\tilde t = t_{i+1}`, the deterministic map (the same code path as ``gamma=0``).
γ = 1: :math:`\tilde t = 1`, :math:`x_{i+1} = \beta_{t_{i+1}}\hat\delta_{t_i,1}(x_i) + \alpha_{t_{i+1}}\xi`,
consistency re-noising. **Exact (marginal-preserving with exact maps) for γ ∈ {0, 1} only**, for the
same reasons as re-noising: for 0 < γ < 1, :math:`\hat\delta_{t_i,\tilde t}` is an average of
denoisers, not a data sample, and :math:`\hat\varepsilon` is not independent standard noise.
``nfe = N`` for every γ.

The τ grid is built in at least float32 whatever the state's dtype (a bf16 grid has duplicate
times). ``order = inf``: with the exact two-time denoiser the result does not depend on N; the
error of a trained map comes from the map, not from the steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from flowlm.denoisers import TwoTimeDenoiser
from flowlm.flow import Flow
from flowlm.flowmaps.two_time import FlowMap
from flowlm.samplers.base import Sampler, SamplerOutput, time_dtype
from flowlm.interpolants._monotone import bisect_increasing
from flowlm.states import StateSpace

__all__ = ["FlowMapSampler", "STOCHASTIC_KINDS", "authors_gamma_time"]

STOCHASTIC_KINDS = ("renoise", "authors")


def authors_gamma_time(interpolant: Any, t_next: Float[Tensor, " B"], gamma: float) -> Float[Tensor, " B"]:
    """t̃ with α(t̃) = √(1 − γ²)·α(t_next) (bisection; t_next itself at γ = 0, 1 at γ = 1)."""
    if gamma == 0.0:
        return t_next
    if gamma == 1.0:
        return torch.ones_like(t_next)
    target = math.sqrt(1.0 - gamma * gamma) * interpolant.alpha(t_next)
    work = torch.promote_types(t_next.dtype, torch.float64)
    t_tilde = bisect_increasing(lambda u: -interpolant.alpha(u), -target.to(work), t_next.to(work), 1.0)
    return t_tilde.to(t_next.dtype)


class FlowMapSampler(Sampler):
    """``FlowMapSampler(n_steps, gamma, kind="renoise")(delta, flow, x0, *, space=None, ...) -> SamplerOutput``.

    ``kind``: ``"renoise"`` (re-noising of the implied noise, 2N − 1 calls for 0 < γ < 1) or
    ``"authors"`` (the authors' γ-sampler, N calls); both are the deterministic map at γ = 0.
    """

    order = math.inf
    expects = TwoTimeDenoiser

    def __init__(self, n_steps: int = 1, gamma: float = 0.0, kind: str = "renoise") -> None:
        if kind not in STOCHASTIC_KINDS:
            raise ValueError(f"kind must be one of {STOCHASTIC_KINDS} (re-noising or the authors' γ-sampler), got {kind!r}")
        self.kind = kind
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1] (0 = deterministic, 1 = full re-noising), got {gamma}")
        self.n_steps = int(n_steps)
        self.gamma = float(gamma)

    def run(
        self,
        delta: TwoTimeDenoiser,
        flow: Flow,
        x0: Float[Tensor, "B L D"],
        space: StateSpace,
        trajectory: list[Tensor] | None,
        generator: torch.Generator | None,
    ) -> SamplerOutput:
        fm = FlowMap(delta, flow, space)
        B, L = x0.shape[0], x0.shape[1]
        grid, taus = flow.grid(self.n_steps, device=x0.device, dtype=time_dtype(x0))  # [N + 1], >= float32
        one = torch.ones(B, device=x0.device, dtype=grid.dtype)
        x, nfe, g = x0, 0, self.gamma
        if trajectory is not None:
            trajectory.append(x)
        for i in range(self.n_steps - 1):
            s, t = grid[i] * one, grid[i + 1] * one  # [B]
            tau_s, tau_t = taus[i] * one, taus[i + 1] * one
            if self.kind == "authors" and g > 0.0:
                x = self._authors_step(fm, flow, space, x, s, t, tau_s, tau_t, generator)
                nfe += 1
            elif g < 1.0:
                x_det = fm.X(x, s, t, tau_s=tau_s, tau_t=tau_t)
                nfe += 1
            if g > 0.0 and self.kind == "renoise":
                x1_hat = delta.probs(x, s, one, tau_s=tau_s, tau_t=one, space=space)  # clean estimate δ̂_{t_i,1}(x)
                nfe += 1
                a = flow.interpolant.alpha(grid[i + 1]).to(x.dtype)
                b = flow.interpolant.beta(grid[i + 1]).to(x.dtype)
                xi = space.noise(B, L, device=x0.device, dtype=x0.dtype, generator=generator)
                if g < 1.0:
                    eps_hat = (x_det - b * x1_hat) / a
                    x = b * x1_hat + a * (math.sqrt(1.0 - g * g) * eps_hat + g * xi)
                else:
                    x = b * x1_hat + a * xi
            if g == 0.0:
                x = x_det
            x = x.to(x0.dtype)
            if trajectory is not None:
                trajectory.append(x)
        s, tau_s = grid[self.n_steps - 1] * one, taus[self.n_steps - 1] * one
        probs = delta.probs(x, s, one, tau_s=tau_s, tau_t=one)  # δ̂_{t_{N−1},1}(x)  [B, L, V]
        nfe += 1
        return SamplerOutput(probs=probs, tokens=probs.argmax(dim=-1), nfe=nfe, times=grid[:-1], trajectory=trajectory)

    def _authors_step(self, fm: FlowMap, flow: Flow, space: StateSpace, x: Tensor, s: Tensor, t: Tensor,
                      tau_s: Tensor, tau_t: Tensor, generator: torch.Generator | None) -> Tensor:
        """x_{i+1} = X̂_{s,t̃}(x) + (β_t − β_t̃)·embed(δ̂_{s,t̃}(x)) + γ·α_t·ξ (one network call)."""
        g, it = self.gamma, flow.interpolant
        t_tilde = authors_gamma_time(it, t, g)
        tau_tilde = torch.ones_like(tau_t) if g == 1.0 else flow.tau_of_t(t_tilde)
        x_tilde, probs = fm.X(x, s, t_tilde, tau_s=tau_s, tau_t=tau_tilde, return_delta=True)
        coef = (it.beta(t) - it.beta(t_tilde)).to(x.dtype)[:, None, None]  # [B, 1, 1], <= 0
        xi = space.noise(x.shape[0], x.shape[1], device=x.device, dtype=x.dtype, generator=generator)
        return x_tilde + coef * space.embed(probs).to(x.dtype) + g * it.alpha(t).to(x.dtype)[:, None, None] * xi

    def __repr__(self) -> str:
        return f"FlowMapSampler(n_steps={self.n_steps}, gamma={self.gamma}, kind={self.kind!r})"

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
:math:`x_{i+1} = \beta\hat x_1 + \alpha\xi` (no flow-map pass needed). If
:math:`\hat\varepsilon` is standard normal and independent of ξ the mixture keeps unit variance.
Each network call counts as one function evaluation (``nfe``): ``N`` for γ = 0 or 1, ``2N − 1``
for 0 < γ < 1.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from flowlm.flowmaps.two_time import TwoTimeDenoiser
from flowlm.interpolants.base import Interpolant
from flowlm.interpolants.schedule import TimeSchedule
from flowlm.samplers import SamplerOutput
from flowlm.samplers.base import network_probs
from flowlm.states import OneHotSpace, StateSpace

__all__ = ["FlowMapSampler"]


class FlowMapSampler:
    """``FlowMapSampler(n_steps, gamma)(delta, interpolant, schedule, x0, space=None) -> SamplerOutput``."""

    def __init__(self, n_steps: int = 1, gamma: float = 0.0) -> None:
        if int(n_steps) < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1] (0 = deterministic, 1 = full re-noising), got {gamma}")
        self.n_steps = int(n_steps)
        self.gamma = float(gamma)

    @torch.no_grad()
    def __call__(
        self,
        delta: TwoTimeDenoiser,
        interpolant: Interpolant,
        schedule: TimeSchedule,
        x0: Float[Tensor, "B L D"],
        space: StateSpace | None = None,
        generator: torch.Generator | None = None,
    ) -> SamplerOutput:
        if x0.ndim != 3:
            raise ValueError(f"x0 must have shape [batch, length, state_dim], got {tuple(x0.shape)}")
        space = space if space is not None else OneHotSpace(delta.vocab_size)
        B, L = x0.shape[0], x0.shape[1]
        grid = schedule.grid(self.n_steps, device=x0.device, dtype=x0.dtype)  # [N + 1]
        one = torch.ones(B, device=x0.device, dtype=x0.dtype)
        x, nfe, g = x0, 0, self.gamma
        for i in range(self.n_steps - 1):
            s, t = grid[i] * one, grid[i + 1] * one  # [B]
            if g < 1.0:
                x_det = interpolant.flow_map_from_delta(x, s, t, network_probs(delta, x, s, t, space=space))
                nfe += 1
            if g > 0.0:
                x1_hat = network_probs(delta, x, s, one, space=space)  # clean estimate δ̂_{t_i,1}(x)
                nfe += 1
                a, b = interpolant.alpha(grid[i + 1]), interpolant.beta(grid[i + 1])
                xi = space.noise(B, L, device=x0.device, dtype=x0.dtype, generator=generator)
                if g < 1.0:
                    eps_hat = (x_det - b * x1_hat) / a
                    x = b * x1_hat + a * (math.sqrt(1.0 - g * g) * eps_hat + g * xi)
                else:
                    x = b * x1_hat + a * xi
            else:
                x = x_det
        s = grid[self.n_steps - 1] * one
        probs = network_probs(delta, x, s, one)  # δ̂_{t_{N−1},1}(x)  [B, L, V]
        nfe += 1
        return SamplerOutput(probs=probs, tokens=probs.argmax(dim=-1), nfe=nfe)

    def __repr__(self) -> str:
        return f"FlowMapSampler(n_steps={self.n_steps}, gamma={self.gamma})"

r"""Euler on the probability-flow ODE (the paper's FLM sampler).

:math:`x \leftarrow x + (t_{i+1} - t_i)\,b_{t_i}(x)` for :math:`i < N-1`, then
:math:`D_{t_{N-1}}(x)`; N denoiser evaluations. For ``Linear`` the Euler step to t = 1 is exactly
the denoiser: :math:`x + (1-t)\,(D - x)/(1-t) = D`. First order in the τ step.
"""

from __future__ import annotations

from torch import Tensor

from flowlm.denoisers import Denoiser
from flowlm.flow import Flow
from flowlm.samplers.base import FixedStepSampler, drift
from flowlm.states import StateSpace

__all__ = ["EulerSampler"]


class EulerSampler(FixedStepSampler):
    """Euler with ``n_steps`` denoiser evaluations; ``order = interior_order = 1``."""

    order = 1
    interior_order = 1

    def step(
        self, den: Denoiser, flow: Flow, space: StateSpace, x: Tensor, t: Tensor, t_next: Tensor,
        tau: Tensor | None, tau_next: Tensor | None,
    ) -> tuple[Tensor, int]:
        b = drift(flow, x, t, den.probs(x, t.expand(x.shape[0]), tau=tau, space=space))  # [B, L, D]
        return x + (t_next - t) * b, 1

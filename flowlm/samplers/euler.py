r"""Euler on the probability-flow ODE (the paper's FLM sampler).

:math:`x \leftarrow x + (t_{i+1} - t_i)\,b_{t_i}(x)` for :math:`i < N-1`, then
:math:`D_{t_{N-1}}(x)`; N denoiser evaluations. For ``Linear`` the Euler step to t = 1 is exactly
the denoiser: :math:`x + (1-t)\,(D - x)/(1-t) = D`.
"""

from __future__ import annotations

from torch import Tensor

from flowlm.denoisers import Denoiser
from flowlm.interpolants.base import Interpolant
from flowlm.samplers.base import FixedStepSampler, denoise_embedded, drift
from flowlm.states import StateSpace

__all__ = ["EulerSampler"]


class EulerSampler(FixedStepSampler):
    """First-order Euler sampler with ``n_steps`` denoiser evaluations."""

    def step(
        self, den: Denoiser, interpolant: Interpolant, space: StateSpace, x: Tensor, t: Tensor, t_next: Tensor
    ) -> tuple[Tensor, int]:
        b = drift(interpolant, x, t, denoise_embedded(den, x, t, space))  # [B, L, D]
        return x + (t_next - t) * b, 1

r"""Heun's method (explicit trapezoid, second order) on the probability-flow ODE.

Interior steps: :math:`\tilde x = x + h\,b_{t_i}(x)`,
:math:`x \leftarrow x + \tfrac h2\,(b_{t_i}(x) + b_{t_{i+1}}(\tilde x))`, :math:`h = t_{i+1}-t_i`;
the last step returns :math:`D_{t_{N-1}}(x)` as Euler does. 2N − 1 denoiser evaluations.
"""

from __future__ import annotations

from torch import Tensor

from flowlm.denoisers import Denoiser
from flowlm.interpolants.base import Interpolant
from flowlm.samplers.base import FixedStepSampler, denoise_embedded, drift
from flowlm.states import StateSpace

__all__ = ["HeunSampler"]


class HeunSampler(FixedStepSampler):
    """Second-order Heun sampler with ``n_steps`` grid steps (2·n_steps − 1 evaluations)."""

    def step(
        self, den: Denoiser, interpolant: Interpolant, space: StateSpace, x: Tensor, t: Tensor, t_next: Tensor
    ) -> tuple[Tensor, int]:
        h = t_next - t
        b0 = drift(interpolant, x, t, denoise_embedded(den, x, t, space))  # [B, L, D]
        x_pred = x + h * b0
        b1 = drift(interpolant, x_pred, t_next, denoise_embedded(den, x_pred, t_next, space))
        return x + 0.5 * h * (b0 + b1), 2

r"""Heun's method (explicit trapezoid) on the probability-flow ODE.

Interior steps: :math:`\tilde x = x + h\,b_{t_i}(x)`,
:math:`x \leftarrow x + \tfrac h2\,(b_{t_i}(x) + b_{t_{i+1}}(\tilde x))`, :math:`h = t_{i+1}-t_i`;
the last step returns :math:`D_{t_{N-1}}(x)` as Euler does. 2N − 1 denoiser evaluations.

Second order in its interior (``interior_order = 2``: the state at :math:`t_{N-1}`), but the
whole sampler is first order (``order = 1``): the final denoiser step dominates (DESIGN §1).
"""

from __future__ import annotations

from torch import Tensor

from flowlm.denoisers import Denoiser
from flowlm.flow import Flow
from flowlm.samplers.base import FixedStepSampler, drift
from flowlm.states import StateSpace

__all__ = ["HeunSampler"]


class HeunSampler(FixedStepSampler):
    """Heun with ``n_steps`` grid steps (2·n_steps − 1 evaluations); ``order = 1``, ``interior_order = 2``."""

    order = 1
    interior_order = 2

    def step(
        self, den: Denoiser, flow: Flow, space: StateSpace, x: Tensor, t: Tensor, t_next: Tensor,
        tau: Tensor | None, tau_next: Tensor | None,
    ) -> tuple[Tensor, int]:
        h = t_next - t
        B = x.shape[0]
        b0 = drift(flow, x, t, den.probs(x, t.expand(B), tau=tau, space=space))  # [B, L, D]
        x_pred = x + h * b0
        b1 = drift(flow, x_pred, t_next, den.probs(x_pred, t_next.expand(B), tau=tau_next, space=space))
        return x + 0.5 * h * (b0 + b1), 2

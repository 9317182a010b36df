r"""Reward guidance through the flow map (FMRG, REFERENCE §3), for a two-time denoiser (FMLM).

On the uniform τ grid :math:`0 = t_0 < \dots < t_N = 1`, a *guided* step :math:`t = t_i \to t' = t_{i+1}`
reads the look-ahead :math:`\hat x_1 = \hat\delta_{t,1}(x_t)`, a point of the simplex per token
(``[B, L, V]``), so a reward :math:`r(p: [B, L, V]) \to [B]` can read soft tokens, and corrects the
deterministic step :math:`\hat X_{t,t'}(x_t)`:

* **Euclidean**: :math:`K` ascent steps of size η on the reward at the look-ahead,
  :math:`p_{k+1} = p_k + \eta\,g_k/\lVert g_k\rVert`, :math:`g_k = \nabla_p r(p_k)` (norm per sequence
  over ``[L, V]``; without ``normalize``, :math:`p_{k+1} = p_k + \eta g_k`), from :math:`p_0 = \hat x_1`
  to :math:`\hat x_1^\star = p_K`, then

  .. math:: x_{t'} = \hat X_{t,t'}(x_t) + w\,\mathrm{embed}(\hat x_1^\star - \hat x_1),\qquad w = \alpha_t\,\beta_{t'}.

  For Linear :math:`w = (1-t)\,t'`, the FMRG rule. For any affine interpolant :math:`\beta_{t'}` is how the
  clean endpoint enters :math:`x_{t'} = \alpha_{t'}x_0 + \beta_{t'}x_1` and :math:`\alpha_t` plays the
  FMRG damping :math:`1 - t` (guidance fades as the state becomes clean); this is our generalization.
  Two calls per guided step (the look-ahead and the map); the ascent itself needs no network call.
* **Jacobian**: :math:`K` ascent steps on :math:`x \mapsto r(\hat\delta_{t,1}(x))` through the map
  from :math:`x_t` to :math:`x_t^\star` (same step rule, norm over the state ``[L, D]``), then

  .. math:: x_{t'} = \hat X_{t,t'}(x_t) + (t' - t)\,(x_t^\star - x_t),

  the FMRG rule as written (its weight is the interpolation-time step, for any interpolant).
  :math:`K + 1` forward calls per guided step, plus :math:`K` backward passes through the network.
  It needs a *smooth* look-ahead: the exact :math:`\delta_{t,1}` is a vertex of the simplex
  (piecewise constant in :math:`x_t`), so its gradient vanishes and with an exact map only the
  Euclidean variant acts (measured on the toy laws of ``tests/test_guidance.py``); a trained δ̂ is smooth.

Steps ``i < guided_steps`` are guided (default: every step but the last); the remaining steps are
unguided *finishing* steps :math:`x \leftarrow \hat X_{t_i,t_{i+1}}(x)`; the last step returns
:math:`\hat\delta_{t_{N-1},1}(x)` as in :class:`~flowlm.flowmaps.FlowMapSampler` (never guided: it is
the output). ``nfe`` counts forward network calls (times ``calls_per_eval`` of the two-time
denoiser), not backward passes. With η = 0 or ``guided_steps = 0`` the result equals
``FlowMapSampler(N)`` (tested), at a higher NFE when guided steps are run.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from flowlm.denoisers import TwoTimeDenoiser
from flowlm.flow import Flow
from flowlm.flowmaps.two_time import FlowMap
from flowlm.guidance.rewards import Reward, evaluate_reward
from flowlm.samplers.base import Sampler, SamplerOutput, time_dtype
from flowlm.states import StateSpace

__all__ = ["RewardGuidedSampler", "VARIANTS"]

VARIANTS = ("euclidean", "jacobian")


def _ascent_direction(grad: Tensor, normalize: bool) -> Tensor:
    if not normalize:
        return grad
    norm = grad.flatten(1).norm(dim=1).clamp_min(torch.finfo(grad.dtype).tiny)  # [B]
    return grad / norm[:, None, None]


class RewardGuidedSampler(Sampler):
    """``RewardGuidedSampler(n_steps, reward, *, variant, ascent_steps, step_size, normalize,
    guided_steps)(delta, flow, x0, *, space=None, ...) -> SamplerOutput`` (module docstring)."""

    order = math.inf
    expects = TwoTimeDenoiser

    def __init__(
        self,
        n_steps: int,
        reward: Reward,
        *,
        variant: str = "euclidean",
        ascent_steps: int = 1,
        step_size: float = 1.0,
        normalize: bool = True,
        guided_steps: int | None = None,
    ) -> None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 2:
            raise ValueError(f"reward guidance needs n_steps >= 2 (the last step is the output), got {n_steps!r}")
        if not callable(reward):
            raise TypeError(f"reward must be a callable r(probs [B, L, V]) -> [B], got {type(reward).__name__}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if isinstance(ascent_steps, bool) or not isinstance(ascent_steps, int) or ascent_steps < 1:
            raise ValueError(f"ascent_steps (K) must be a positive integer, got {ascent_steps!r}")
        if not (step_size >= 0 and math.isfinite(step_size)):
            raise ValueError(f"step_size (η) must be a finite number >= 0, got {step_size}")
        guided = n_steps - 1 if guided_steps is None else guided_steps
        if isinstance(guided, bool) or not isinstance(guided, int) or not 0 <= guided <= n_steps - 1:
            raise ValueError(
                f"guided_steps must be an integer in [0, n_steps − 1 = {n_steps - 1}] (the last step returns δ̂ "
                f"and is never guided), got {guided_steps!r}"
            )
        self.n_steps, self.reward, self.variant = n_steps, reward, variant
        self.ascent_steps, self.step_size, self.normalize = ascent_steps, float(step_size), bool(normalize)
        self.guided_steps = guided

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
        B = x0.shape[0]
        grid, taus = flow.grid(self.n_steps, device=x0.device, dtype=time_dtype(x0))
        one = torch.ones(B, device=x0.device, dtype=grid.dtype)
        it = flow.interpolant
        x, nfe = x0, 0
        if trajectory is not None:
            trajectory.append(x)
        for i in range(self.n_steps - 1):
            s, t = grid[i] * one, grid[i + 1] * one
            tau_s, tau_t = taus[i] * one, taus[i + 1] * one
            x_next = fm.X(x, s, t, tau_s=tau_s, tau_t=tau_t)
            nfe += 1
            if i < self.guided_steps:
                if self.variant == "euclidean":
                    p = delta.probs(x, s, one, tau_s=tau_s, tau_t=one)  # look-ahead x̂₁ = δ̂_{t,1}(x)  [B, L, V]
                    nfe += 1
                    p_star = self._ascend(lambda q: q, p)
                    w = (it.alpha(grid[i]) * it.beta(grid[i + 1])).to(x.dtype)  # Linear: (1 − t)·t'
                    x_next = x_next + w * space.embed(p_star - p).to(x.dtype)
                else:
                    x_star = self._ascend(lambda z: delta.probs(z, s, one, tau_s=tau_s, tau_t=one), x)
                    nfe += self.ascent_steps
                    x_next = x_next + (grid[i + 1] - grid[i]).to(x.dtype) * (x_star - x)
            x = x_next.detach().to(x0.dtype)
            if trajectory is not None:
                trajectory.append(x)
        s, tau_s = grid[self.n_steps - 1] * one, taus[self.n_steps - 1] * one
        probs = delta.probs(x, s, one, tau_s=tau_s, tau_t=one)  # δ̂_{t_{N−1},1}(x)
        nfe += 1
        return SamplerOutput(probs=probs, tokens=probs.argmax(dim=-1), nfe=nfe, times=grid[:-1], trajectory=trajectory)

    def _ascend(self, to_probs, start: Tensor) -> Tensor:
        """K normalized gradient-ascent steps on ``reward(to_probs(z))`` from ``start``."""
        z = start.detach()
        for _ in range(self.ascent_steps):
            with torch.enable_grad():
                var = z.clone().requires_grad_(True)
                value = evaluate_reward(self.reward, to_probs(var))  # [B]
                (grad,) = torch.autograd.grad(value.sum(), var)
            z = z + self.step_size * _ascent_direction(grad.detach(), self.normalize)
        return z

    def __repr__(self) -> str:
        return (
            f"RewardGuidedSampler(n_steps={self.n_steps}, reward={self.reward!r}, variant={self.variant!r}, "
            f"ascent_steps={self.ascent_steps}, step_size={self.step_size:g}, normalize={self.normalize}, "
            f"guided_steps={self.guided_steps})"
        )

r"""Model time τ ↔ interpolation time t.

A :class:`TimeSchedule` is a strictly increasing bijection τ: [0,1] → [0,1]. Networks are
conditioned on τ; all math code uses t. Training draws τ ~ U[0,1] (stratified) and maps it to
t = t(τ); samplers step on a uniform τ grid (:meth:`TimeSchedule.grid`).

Every method takes a tensor of any shape and returns the same shape on the same device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["TimeSchedule", "IdentitySchedule", "MixtureSchedule", "stratified_uniform"]


class TimeSchedule(ABC):
    """Abstract monotone map between interpolation time t and model time τ."""

    @abstractmethod
    def tau_of_t(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """τ(t), strictly increasing, τ(0) = 0, τ(1) = 1; differentiable in t."""

    def t_of_tau(self, tau: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """t(τ), the inverse of :meth:`tau_of_t`. Default: 60 bisection steps (exact to float64 eps)."""
        lo = torch.zeros_like(tau)
        hi = torch.ones_like(tau)
        with torch.no_grad():
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                below = self.tau_of_t(mid) < tau
                lo = torch.where(below, mid, lo)
                hi = torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def dtau_dt(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """dτ/dt by autograd (the Lagrangian distiller needs it)."""
        flat = t.reshape(-1)
        d = torch.func.vmap(torch.func.grad(lambda s: self.tau_of_t(s)))(flat)
        return d.reshape(t.shape)

    def grid(
        self, n_steps: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> Float[Tensor, " n_steps_plus_1"]:
        """Interpolation times t_0 = 0 < … < t_N = 1 of a uniform τ grid with ``n_steps`` steps."""
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        tau = torch.linspace(0.0, 1.0, n_steps + 1, device=device, dtype=dtype)
        t = self.t_of_tau(tau)
        t[0], t[-1] = 0.0, 1.0
        return t


class IdentitySchedule(TimeSchedule):
    """τ = t."""

    def tau_of_t(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        return t.clone()

    def t_of_tau(self, tau: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        return tau.clone()

    def __repr__(self) -> str:
        return "IdentitySchedule()"


class MixtureSchedule(TimeSchedule):
    """τ(t) = λ·τ_base(t) + (1 − λ)·t, for ablations between a schedule and the identity."""

    def __init__(self, base: TimeSchedule, weight: float) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"mixture weight must be in [0, 1], got {weight}")
        self.base, self.weight = base, float(weight)

    def tau_of_t(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        return self.weight * self.base.tau_of_t(t) + (1.0 - self.weight) * t

    def __repr__(self) -> str:
        return f"MixtureSchedule({self.base!r}, weight={self.weight})"


def stratified_uniform(
    batch: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> Float[Tensor, " batch"]:
    """One draw per stratum: u_i = (i + ξ_i)/B, ξ_i ~ U[0,1), shuffled. Marginally U[0,1], lower variance."""
    offsets = torch.rand(batch, device=device, dtype=dtype, generator=generator)
    strata = torch.arange(batch, device=device, dtype=dtype)
    u = (strata + offsets) / batch
    perm = torch.randperm(batch, device=device, generator=generator)
    return u[perm]

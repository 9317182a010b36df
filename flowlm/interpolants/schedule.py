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

from flowlm._checks import check_unit_interval
from flowlm.interpolants._monotone import bisect_increasing

__all__ = ["TimeSchedule", "IdentitySchedule", "MixtureSchedule", "stratified_uniform"]


def _skip_checks(x: Tensor) -> bool:
    """True while tracing (torch.compile) or inside a torch.func transform (vmap/grad/jvp wrap the
    tensor), where a data-dependent check would graph-break or fail. Non-tensors are never skipped."""
    if not torch.is_tensor(x):
        return False
    if torch.compiler.is_compiling():
        return True
    is_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return bool(is_wrapped(x)) if is_wrapped is not None else False


def _work_dtype(device: torch.device) -> torch.dtype:
    """Internal precision of schedule computations: float64, except on MPS (which has none)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _validate_time(name: str, x: Tensor) -> None:
    """``check_unit_interval`` unless tracing or transformed (see :func:`_skip_checks`).

    Valid input costs one device sync (a single fused range test); the detailed check, with its
    error message, runs only when that test fails.
    """
    if _skip_checks(x):
        return
    if torch.is_tensor(x) and x.is_floating_point() and bool(((x >= 0) & (x <= 1)).all()):
        return  # NaN fails both comparisons and falls through to the detailed check
    check_unit_interval(name, x.detach() if torch.is_tensor(x) else x)


class TimeSchedule(ABC):
    """Abstract monotone map between interpolation time t and model time τ."""

    @abstractmethod
    def tau_of_t(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """τ(t), strictly increasing, τ(0) = 0, τ(1) = 1; differentiable in t."""

    def t_of_tau(self, tau: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """t(τ), the inverse of :meth:`tau_of_t`. Default: bisection on [0, 1] in float64
        (60 halvings: exact to float64 eps), returned in ``tau``'s dtype. t(0) = 0, t(1) = 1."""
        _validate_time("tau", tau)
        target = tau.to(_work_dtype(tau.device))
        t = bisect_increasing(self.tau_of_t, target, 0.0, 1.0, steps=60)
        t = torch.where(target <= 0.0, torch.zeros_like(t), torch.where(target >= 1.0, torch.ones_like(t), t))
        return t.to(tau.dtype)

    def dtau_dt(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """dτ/dt by forward-mode autograd through :meth:`tau_of_t` (elementwise, so a single JVP with
        tangent 1 gives every derivative). The Lagrangian distiller needs it."""
        _validate_time("t", t)
        _, d = torch.func.jvp(self.tau_of_t, (t,), (torch.ones_like(t),))
        return d.to(t.dtype)

    def grid(
        self, n_steps: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> Float[Tensor, " n_steps_plus_1"]:
        """Interpolation times t_0 = 0 < … < t_N = 1 of a uniform τ grid with ``n_steps`` steps."""
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
        if not dtype.is_floating_point:
            raise TypeError(f"grid dtype must be a floating-point dtype, got {dtype}")
        tau = torch.linspace(0.0, 1.0, n_steps + 1, device=device, dtype=dtype)
        t = self.t_of_tau(tau).clone()
        t[0], t[-1] = 0.0, 1.0
        return t


class IdentitySchedule(TimeSchedule):
    """τ = t."""

    def tau_of_t(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        _validate_time("t", t)
        return t.clone()

    def t_of_tau(self, tau: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        _validate_time("tau", tau)
        return tau.clone()

    def __repr__(self) -> str:
        return "IdentitySchedule()"


class MixtureSchedule(TimeSchedule):
    """τ(t) = λ·τ_base(t) + (1 − λ)·t, for ablations between a schedule and the identity."""

    def __init__(self, base: TimeSchedule, weight: float) -> None:
        if not isinstance(base, TimeSchedule):
            raise TypeError(f"base must be a TimeSchedule, got {type(base).__name__}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"mixture weight must be in [0, 1], got {weight}")
        self.base, self.weight = base, float(weight)

    def tau_of_t(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """λ·τ_base(t) + (1 − λ)·t (strictly increasing when either part is)."""
        return self.weight * self.base.tau_of_t(t) + (1.0 - self.weight) * t

    def t_of_tau(self, tau: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """The base's inverse when λ = 1, the identity when λ = 0, else bisection."""
        if self.weight == 1.0:
            return self.base.t_of_tau(tau)
        if self.weight == 0.0:
            _validate_time("tau", tau)
            return tau.clone()
        return super().t_of_tau(tau)

    def __repr__(self) -> str:
        return f"MixtureSchedule({self.base!r}, weight={self.weight})"


def stratified_uniform(
    batch: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> Float[Tensor, " batch"]:
    """One draw per stratum: u_i = (i + ξ_i)/B, ξ_i ~ U[0,1), shuffled. Marginally U[0,1], lower variance.

    Exactly one of the ``batch`` values lies in each stratum [i/B, (i+1)/B).
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    offsets = torch.rand(batch, device=device, dtype=dtype, generator=generator)
    strata = torch.arange(batch, device=device, dtype=dtype)
    u = (strata + offsets) / batch
    perm = torch.randperm(batch, device=device, generator=generator)
    return u[perm]

r"""Any torchdiffeq solver on the probability-flow ODE, for cross-checks and ablations.

The ODE is solved in :math:`\nu = \log(1+\rho)` for :math:`z = x/(\alpha+\beta)`
(:mod:`flowlm.interpolants.logsnr`), where it is non-stiff up to t = 1, from :math:`t_0 = 0` to
:math:`t_{end}`, then the sampler returns :math:`D_{t_{end}}(x)`:

* ``n_steps=None``: :math:`t_{end} = t(\rho_{\max})` (Linear: :math:`1 - 1/(1+\rho_{\max})`);
  adaptive methods (``dopri5``, ``dopri8``, ``bosh3``, …) choose their own steps.
* ``n_steps=N``: the outputs are the τ-grid times :math:`t_0..t_{N-1}` of ``schedule.grid(N)``
  and :math:`t_{end} = t_{N-1}`; fixed-grid methods (``euler``, ``midpoint``, ``rk4``, …) take
  one step in ν between consecutive nodes (so ``euler`` here is Euler in ν on z, not the
  t-Euler of :class:`~flowlm.samplers.EulerSampler`).

``order = 1`` on the τ grid (the final denoiser step; None without ``n_steps``); ``interior_order``
is the method's order for the fixed-grid methods and None for the adaptive ones (their error
follows rtol/atol).
"""

from __future__ import annotations

import math
import typing

import torch
from torch import Tensor
from torchdiffeq import odeint

from flowlm.denoisers import Denoiser
from flowlm.flow import Flow
from flowlm.interpolants.logsnr import LogSNRFlow, nu_of_t, t_of_nu
from flowlm.samplers.base import FLMSampler, time_dtype
from flowlm.states import StateSpace

__all__ = ["TorchdiffeqSampler"]

ADAPTIVE_METHODS = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams")
_FIXED_ORDER = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}


class TorchdiffeqSampler(FLMSampler):
    """``torchdiffeq.odeint(method, rtol, atol)`` on the flow; ``nfe`` counts every evaluation."""

    def __init__(
        self,
        method: str = "dopri5",
        rtol: float = 1e-6,
        atol: float = 1e-6,
        n_steps: int | None = None,
        rho_max: float = 1e4,
        options: dict | None = None,
    ) -> None:
        if method not in ADAPTIVE_METHODS + FIXED_METHODS:
            raise ValueError(f"unknown torchdiffeq method {method!r}; choose one of {ADAPTIVE_METHODS + FIXED_METHODS}")
        if n_steps is not None and (not isinstance(n_steps, int) or n_steps < 1):
            raise ValueError(f"n_steps must be a positive integer or None, got {n_steps!r}")
        if method in FIXED_METHODS and n_steps is None and not (options or {}).get("step_size"):
            raise ValueError(
                f"the fixed-grid method {method!r} needs n_steps (steps on the τ grid) or options={{'step_size': ...}}"
            )
        if not rho_max > 0:
            raise ValueError(f"rho_max must be > 0, got {rho_max}")
        self.method, self.rtol, self.atol = method, rtol, atol
        self.n_steps, self.rho_max, self.options = n_steps, float(rho_max), options

    @property
    def order(self) -> int | None:  # type: ignore[override]
        """1 on the τ grid (``n_steps`` given: the final denoiser step); None for the adaptive end time
        t(ρ_max), where the error follows rtol, atol and ρ_max rather than a step."""
        return 1 if self.n_steps is not None else None

    @property
    def interior_order(self) -> int | None:  # type: ignore[override]
        return _FIXED_ORDER.get(self.method)

    def times(self, flow: Flow, x0: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.n_steps is not None:
            t, tau = flow.grid(self.n_steps, device=x0.device, dtype=time_dtype(x0))
            return t[:-1], tau[:-1]
        nu_end = torch.full((1,), math.log1p(self.rho_max), dtype=time_dtype(x0), device=x0.device)
        return torch.cat([torch.zeros_like(nu_end), t_of_nu(flow.interpolant, nu_end)]), None  # [0, t(ρ_max)]

    @typing.no_type_check
    def integrate(
        self,
        den: Denoiser,
        flow: Flow,
        times: Tensor,
        x: Tensor,
        space: StateSpace,
        trajectory: list[Tensor] | None = None,
        taus: Tensor | None = None,
    ) -> tuple[Tensor, int]:
        interpolant = flow.interpolant
        if times.ndim != 1 or bool((times.diff() <= 0).any()) or float(times[-1]) >= 1:
            raise ValueError("times must be a strictly increasing 1-D tensor in [0, 1)")
        ode = LogSNRFlow(den, interpolant, space)
        B = x.shape[0]

        def rhs(nu: Tensor, z: Tensor) -> Tensor:
            return ode(z, nu.expand(B))[0]

        work = time_dtype(x)  # integrate in at least float32
        times = times.to(work)
        nus = nu_of_t(interpolant, times)  # [T]
        options = dict(self.options or {})
        if self.method in FIXED_METHODS:
            kwargs = {}
        else:  # step exactly onto every output time instead of interpolating the dense output
            kwargs = {"rtol": self.rtol, "atol": self.atol}
            options.setdefault("step_t", nus[1:])
        z0 = x.to(work) / ode.scale(times[0])
        zs = odeint(rhs, z0, nus, method=self.method, options=options or None, **kwargs)  # [T, B, L, D]
        states = (ode.scale(times).reshape(-1, 1, 1, 1) * zs).to(x.dtype)  # x = (α + β)·z
        if trajectory is not None:
            trajectory.extend(states.unbind(0))
        return states[-1], ode.nfe

    def __repr__(self) -> str:
        return (
            f"TorchdiffeqSampler(method={self.method!r}, rtol={self.rtol:g}, atol={self.atol:g}, "
            f"n_steps={self.n_steps}, rho_max={self.rho_max:g})"
        )

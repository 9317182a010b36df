r"""Any torchdiffeq solver on the probability-flow ODE, for cross-checks and ablations.

The ODE is solved in :math:`\nu = \log(1+\rho)` for :math:`z = x/(\alpha+\beta)`
(:mod:`flowlm.samplers.pf_ode`), where it is non-stiff up to t = 1, from :math:`t_0 = 0` to
:math:`t_{end}`, then the sampler returns :math:`D_{t_{end}}(x)`:

* ``n_steps=None``: :math:`t_{end} = t(\rho_{\max})` (Linear: :math:`1 - 1/(1+\rho_{\max})`);
  adaptive methods (``dopri5``, ``dopri8``, ``bosh3``, …) choose their own steps.
* ``n_steps=N``: the outputs are the τ-grid times :math:`t_0..t_{N-1}` of ``schedule.grid(N)``
  and :math:`t_{end} = t_{N-1}`; fixed-grid methods (``euler``, ``midpoint``, ``rk4``, …) take
  one step in ν between consecutive nodes (so ``euler`` here is Euler in ν on z, not the
  t-Euler of :class:`~flowlm.samplers.EulerSampler`).
"""

from __future__ import annotations

import math
import typing

import torch
from jaxtyping import Float
from torch import Tensor
from torchdiffeq import odeint

from flowlm.denoisers import Denoiser
from flowlm.interpolants.base import Interpolant
from flowlm.interpolants.schedule import TimeSchedule
from flowlm.samplers.base import Sampler, resolve_space, time_dtype
from flowlm.samplers.pf_ode import LogSNRFlow, nu_of_t, t_of_nu
from flowlm.states import StateSpace

__all__ = ["TorchdiffeqSampler"]

ADAPTIVE_METHODS = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams")


class TorchdiffeqSampler(Sampler):
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

    def times(self, schedule: TimeSchedule, interpolant: Interpolant, x0: Tensor) -> Float[Tensor, " T"]:
        if self.n_steps is not None:
            return schedule.grid(self.n_steps, device=x0.device, dtype=time_dtype(x0))[:-1]
        nu_end = torch.full((1,), math.log1p(self.rho_max), dtype=time_dtype(x0), device=x0.device)
        return torch.cat([torch.zeros_like(nu_end), t_of_nu(interpolant, nu_end)])  # [0, t(ρ_max)]

    @typing.no_type_check
    def integrate(
        self,
        den: Denoiser,
        interpolant: Interpolant,
        times: Tensor,
        x: Tensor,
        space: StateSpace | None = None,
        trajectory: list[Tensor] | None = None,
    ) -> tuple[Tensor, int]:
        space = resolve_space(den, space)
        if times.ndim != 1 or bool((times.diff() <= 0).any()) or float(times[-1]) >= 1:
            raise ValueError("times must be a strictly increasing 1-D tensor in [0, 1)")
        flow = LogSNRFlow(den, interpolant, space)
        B = x.shape[0]

        def rhs(nu: Tensor, z: Tensor) -> Tensor:
            return flow(z, nu.expand(B))[0]

        work = time_dtype(x)  # integrate in at least float32
        times = times.to(work)
        nus = nu_of_t(interpolant, times)  # [T]
        options = dict(self.options or {})
        if self.method in FIXED_METHODS:
            kwargs = {}
        else:  # step exactly onto every output time instead of interpolating the dense output
            kwargs = {"rtol": self.rtol, "atol": self.atol}
            options.setdefault("step_t", nus[1:])
        z0 = x.to(work) / flow.scale(times[0])
        zs = odeint(rhs, z0, nus, method=self.method, options=options or None, **kwargs)  # [T, B, L, D]
        states = (flow.scale(times).reshape(-1, 1, 1, 1) * zs).to(x.dtype)  # x = (α + β)·z
        if trajectory is not None:
            trajectory.extend(states.unbind(0))
        return states[-1], flow.nfe

    def __repr__(self) -> str:
        return (
            f"TorchdiffeqSampler(method={self.method!r}, rtol={self.rtol:g}, atol={self.atol:g}, "
            f"n_steps={self.n_steps}, rho_max={self.rho_max:g})"
        )

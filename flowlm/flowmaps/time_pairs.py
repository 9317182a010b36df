r"""Per-sequence time triples (s, u, t) for flow-map distillation, shared by all distillers.

Each row of a batch is one of three kinds (reference defaults, DESIGN §1):

* **diagonal** (fraction ``diagonal_fraction`` = 1/2): ``τ ~ U[0,1]``, ``s = u = t = t(τ)``;
  trains δ̂(x, t, t) = D̂_t(x);
* **boundary** (fraction ``boundary_fraction`` = 1/64): ``(s, t) = (0, 1)``, the one-step map;
* **off-diagonal** (the rest): gap ``d ~ U[0,1]``, ``τ_s ~ U[0, 1 − d]``, ``τ_t = τ_s + d``.

The intermediate time ``u`` (used by the semigroup target) is the τ-midpoint
``τ_u = (τ_s + τ_t)/2`` by default, or the t-midpoint ``u = (s + t)/2``, or ``τ_u ~ U[τ_s, τ_t]``.
Row kinds are assigned by stratified draws, so each batch holds close to the requested fractions.
The draws are made in model time τ and mapped to interpolation time by the flow's schedule; both
are kept (``tau_s, tau_u, tau_t`` next to ``s, u, t``), so a network receives the τ that was drawn
(no τ → t → τ round trip).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from flowlm.flow import Flow
from flowlm.interpolants.schedule import stratified_uniform

__all__ = ["TimePairs", "TimePairSampler"]

_INTERMEDIATE = ("tau_midpoint", "t_midpoint", "uniform")


@dataclass(frozen=True)
class TimePairs:
    """Interpolation times ``s ≤ u ≤ t``, their model times ``tau_s ≤ tau_u ≤ tau_t`` (each ``[B]``)
    and the row masks (each ``[B]``, boolean).

    ``diagonal``: s = u = t; ``boundary``: (s, t) = (0, 1); ``off_diagonal`` = not diagonal
    (boundary rows are off-diagonal too).
    """

    s: Float[Tensor, " B"]
    u: Float[Tensor, " B"]
    t: Float[Tensor, " B"]
    tau_s: Float[Tensor, " B"]
    tau_u: Float[Tensor, " B"]
    tau_t: Float[Tensor, " B"]
    diagonal: Bool[Tensor, " B"]
    boundary: Bool[Tensor, " B"]

    @property
    def off_diagonal(self) -> Bool[Tensor, " B"]:
        return ~self.diagonal

    def __len__(self) -> int:
        return int(self.s.shape[0])

    @staticmethod
    def off(
        flow: Flow, s: Float[Tensor, " B"], t: Float[Tensor, " B"], u: Float[Tensor, " B"] | None = None
    ) -> "TimePairs":
        """Explicit pairs at interpolation times (u defaults to the t-midpoint; τ from the flow's
        schedule); handy in notebooks and tests."""
        u = 0.5 * (s + t) if u is None else u
        tau = flow.schedule.tau_of_t
        return TimePairs(s, u, t, tau(s), tau(u), tau(t), s == t, (s == 0) & (t == 1))


class TimePairSampler:
    """Draws :class:`TimePairs` for a batch; see the module docstring for the law.

    ``TimePairSampler(flow)(batch, device=..., dtype=..., generator=...)``.
    """

    def __init__(
        self,
        flow: Flow,
        diagonal_fraction: float = 0.5,
        boundary_fraction: float = 1.0 / 64.0,
        intermediate: str = "tau_midpoint",
    ) -> None:
        if not isinstance(flow, Flow):
            raise TypeError(f"TimePairSampler(flow): flow must be a flowlm.Flow, got {type(flow).__name__}")
        if not (0.0 <= diagonal_fraction <= 1.0 and 0.0 <= boundary_fraction <= 1.0):
            raise ValueError(
                f"diagonal_fraction and boundary_fraction must lie in [0, 1], got {diagonal_fraction}, {boundary_fraction}"
            )
        if diagonal_fraction + boundary_fraction > 1.0:
            raise ValueError(
                f"diagonal_fraction + boundary_fraction = {diagonal_fraction + boundary_fraction} > 1; "
                "lower one of them (the rest of the batch is off-diagonal)"
            )
        if intermediate not in _INTERMEDIATE:
            raise ValueError(f"intermediate must be one of {_INTERMEDIATE}, got {intermediate!r}")
        self.flow = flow
        self.diagonal_fraction = float(diagonal_fraction)
        self.boundary_fraction = float(boundary_fraction)
        self.intermediate = intermediate

    def __call__(
        self,
        batch: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> TimePairs:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")

        def rand() -> Tensor:
            return torch.rand(batch, device=device, dtype=dtype, generator=generator)

        kind = stratified_uniform(batch, device=device, dtype=dtype, generator=generator)  # [B] in [0,1)
        diagonal = kind < self.diagonal_fraction
        boundary = (~diagonal) & (kind < self.diagonal_fraction + self.boundary_fraction)

        # off-diagonal law in model time: d ~ U[0,1], τ_s ~ U[0, 1 − d], τ_t = τ_s + d
        d = rand()
        tau_s = rand() * (1.0 - d)
        tau_t = (tau_s + d).clamp(max=1.0)
        tau_diag = rand()
        zero, one = torch.zeros_like(d), torch.ones_like(d)
        tau_s = torch.where(diagonal, tau_diag, torch.where(boundary, zero, tau_s))
        tau_t = torch.where(diagonal, tau_diag, torch.where(boundary, one, tau_t))

        schedule = self.flow.schedule
        s = schedule.t_of_tau(tau_s)
        t = schedule.t_of_tau(tau_t)
        # exact endpoints (a numerical inverse can be off by an ulp)
        s = torch.where(tau_s == 0, zero, s)
        t = torch.where(tau_t == 1, one, t)
        t = torch.where(diagonal, s, torch.maximum(t, s))

        if self.intermediate == "tau_midpoint":
            tau_u = 0.5 * (tau_s + tau_t)
            u = schedule.t_of_tau(tau_u)
        elif self.intermediate == "t_midpoint":
            u = 0.5 * (s + t)
            tau_u = schedule.tau_of_t(u)
        else:  # uniform in τ between τ_s and τ_t
            tau_u = tau_s + rand() * (tau_t - tau_s)
            u = schedule.t_of_tau(tau_u)
        u = torch.minimum(torch.maximum(u, s), t)
        u = torch.where(diagonal, s, u)
        tau_t = torch.where(diagonal, tau_s, torch.maximum(tau_t, tau_s))
        tau_u = torch.where(diagonal, tau_s, torch.minimum(torch.maximum(tau_u, tau_s), tau_t))
        return TimePairs(s=s, u=u, t=t, tau_s=tau_s, tau_u=tau_u, tau_t=tau_t, diagonal=diagonal, boundary=boundary)

    def __repr__(self) -> str:
        return (
            f"TimePairSampler({self.flow!r}, diagonal_fraction={self.diagonal_fraction}, "
            f"boundary_fraction={self.boundary_fraction}, intermediate={self.intermediate!r})"
        )

r"""Per-sequence time triples (s, u, t) for flow-map distillation, shared by all distillers.

Each row of a batch is one of three kinds (reference defaults, DESIGN §1):

* **diagonal** (fraction ``diagonal_fraction`` = 1/2): ``τ ~ U[0,1]``, ``s = u = t = t(τ)``;
  trains δ̂(x, t, t) = D̂_t(x);
* **boundary** (fraction ``boundary_fraction`` = 1/64): ``(s, t) = (0, 1)``, the one-step map;
* **off-diagonal** (the rest): gap ``d ~ U[0,1]``, ``τ_s ~ U[0, 1 − d]``, ``τ_t = τ_s + d``.

The intermediate time ``u`` (used by the semigroup target) is the τ-midpoint
``τ_u = (τ_s + τ_t)/2`` by default, or the t-midpoint ``u = (s + t)/2``, or ``τ_u ~ U[τ_s, τ_t]``.
Row kinds are assigned by stratified draws, so each batch holds close to the requested fractions.
All times are interpolation times ``t`` (mapped from τ by the schedule).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from flowlm.interpolants.schedule import TimeSchedule, stratified_uniform

__all__ = ["TimePairs", "TimePairSampler"]

_INTERMEDIATE = ("tau_midpoint", "t_midpoint", "uniform")
_GAPS = ("uniform",)


@dataclass(frozen=True)
class TimePairs:
    """Times ``s ≤ u ≤ t`` (each ``[B]``) and the row masks (each ``[B]``, boolean).

    ``diagonal``: s = u = t; ``boundary``: (s, t) = (0, 1); ``off_diagonal`` = not diagonal
    (boundary rows are off-diagonal too).
    """

    s: Float[Tensor, " B"]
    u: Float[Tensor, " B"]
    t: Float[Tensor, " B"]
    diagonal: Bool[Tensor, " B"]
    boundary: Bool[Tensor, " B"]

    @property
    def off_diagonal(self) -> Bool[Tensor, " B"]:
        return ~self.diagonal

    def __len__(self) -> int:
        return int(self.s.shape[0])

    def select(self, rows: Bool[Tensor, " B"]) -> "TimePairs":
        """The sub-batch of the rows where ``rows`` is True."""
        return TimePairs(self.s[rows], self.u[rows], self.t[rows], self.diagonal[rows], self.boundary[rows])

    @staticmethod
    def off(s: Float[Tensor, " B"], t: Float[Tensor, " B"], u: Float[Tensor, " B"] | None = None) -> "TimePairs":
        """Explicit off-diagonal pairs (u defaults to the t-midpoint); handy in notebooks and tests."""
        u = 0.5 * (s + t) if u is None else u
        diag = s == t
        return TimePairs(s, u, t, diag, (s == 0) & (t == 1))


class TimePairSampler:
    """Draws :class:`TimePairs` for a batch; see the module docstring for the law.

    ``TimePairSampler(schedule)(batch, device=..., dtype=..., generator=...)``.
    """

    def __init__(
        self,
        schedule: TimeSchedule,
        diagonal_fraction: float = 0.5,
        boundary_fraction: float = 1.0 / 64.0,
        gap: str = "uniform",
        intermediate: str = "tau_midpoint",
    ) -> None:
        if not (0.0 <= diagonal_fraction <= 1.0 and 0.0 <= boundary_fraction <= 1.0):
            raise ValueError(
                f"diagonal_fraction and boundary_fraction must lie in [0, 1], got {diagonal_fraction}, {boundary_fraction}"
            )
        if diagonal_fraction + boundary_fraction > 1.0:
            raise ValueError(
                f"diagonal_fraction + boundary_fraction = {diagonal_fraction + boundary_fraction} > 1; "
                "lower one of them (the rest of the batch is off-diagonal)"
            )
        if gap not in _GAPS:
            raise ValueError(f"gap must be one of {_GAPS}, got {gap!r}")
        if intermediate not in _INTERMEDIATE:
            raise ValueError(f"intermediate must be one of {_INTERMEDIATE}, got {intermediate!r}")
        self.schedule = schedule
        self.diagonal_fraction = float(diagonal_fraction)
        self.boundary_fraction = float(boundary_fraction)
        self.gap = gap
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

        s = self.schedule.t_of_tau(tau_s)
        t = self.schedule.t_of_tau(tau_t)
        # exact endpoints (a numerical inverse can be off by an ulp)
        s = torch.where(tau_s == 0, zero, s)
        t = torch.where(tau_t == 1, one, t)
        t = torch.where(diagonal, s, torch.maximum(t, s))

        if self.intermediate == "tau_midpoint":
            u = self.schedule.t_of_tau(0.5 * (tau_s + tau_t))
        elif self.intermediate == "t_midpoint":
            u = 0.5 * (s + t)
        else:  # uniform in τ between τ_s and τ_t
            u = self.schedule.t_of_tau(tau_s + rand() * (tau_t - tau_s))
        u = torch.minimum(torch.maximum(u, s), t)
        u = torch.where(diagonal, s, u)
        return TimePairs(s=s, u=u, t=t, diagonal=diagonal, boundary=boundary)

    def __repr__(self) -> str:
        return (
            f"TimePairSampler({self.schedule!r}, diagonal_fraction={self.diagonal_fraction}, "
            f"boundary_fraction={self.boundary_fraction}, gap={self.gap!r}, intermediate={self.intermediate!r})"
        )

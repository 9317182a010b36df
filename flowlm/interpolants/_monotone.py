r"""The one inverse of an increasing function, used by every schedule table.

Every time change in flowlm (t ↔ τ of a :class:`~flowlm.interpolants.TimeSchedule`, t ↔ ν of the
log-SNR flow) inverts a strictly increasing function ``f`` on an interval. The pieces, each written
once here:

* :func:`bisect_increasing`: elementwise bisection; ``n`` halvings shrink the bracket by ``2^-n``
  (60 from [0, 1] reach float64 resolution). Robust, derivative-free, the reference.
* :func:`bracket_on_grid`: the bracket ``[g_{k−1}, g_k]`` of each target from ``f`` tabulated on
  a sorted grid (one ``searchsorted``), so bisection can start from a narrow interval.
* :class:`MonotoneCubicTable`: ``x(u)`` on a uniform grid in a coordinate ``u`` (e.g. ``logit τ``
  or ``ν``) from exact nodes and slopes, joined by cubic Hermite pieces whose slopes are limited
  (Fritsch–Carlson) so the interpolant stays monotone. Lookup is O(1) (no search, no host sync).
* :func:`newton_increasing` (exact slope) and :func:`secant_in_bracket` (no slope) polish a table
  value to full precision; both stay inside a safeguarding bracket.

All functions work elementwise on tensors of any shape and do no autograd (``no_grad``).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["bisect_increasing", "bracket_on_grid", "MonotoneCubicTable", "newton_increasing", "secant_in_bracket"]

Fn = Callable[[Tensor], Tensor]


@typing.no_type_check  # hot path (called per ODE evaluation beyond the ν table)
@torch.no_grad()
def bisect_increasing(f: Fn, target: Tensor, lo: Tensor | float = 0.0, hi: Tensor | float = 1.0,
                      steps: int = 60) -> Tensor:
    """The ``x`` in ``[lo, hi]`` with ``f(x) = target`` for increasing ``f``, by ``steps`` halvings.

    Returns the midpoint of the final bracket (error ≤ ``(hi − lo)·2^−(steps+1)``); a target below
    ``f(lo)`` (above ``f(hi)``) gives ``lo`` (``hi``) up to that error. Same shape as ``target``.
    """
    lo = torch.as_tensor(lo, dtype=target.dtype, device=target.device).expand_as(target)
    hi = torch.as_tensor(hi, dtype=target.dtype, device=target.device).expand_as(target)
    for _ in range(int(steps)):
        mid = 0.5 * (lo + hi)
        below = f(mid) < target
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def bracket_on_grid(grid: Tensor, values: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """``(grid[k−1], grid[k])`` with ``values[k−1] < target ≤ values[k]`` (clamped to the grid).

    ``grid`` and ``values = f(grid)`` are sorted 1-D tensors of one length; ``target`` any shape.
    """
    k = torch.searchsorted(values, target.contiguous()).clamp(1, grid.numel() - 1)
    return grid[k - 1], grid[k]


@dataclass(frozen=True)
class MonotoneCubicTable:
    """Monotone piecewise-cubic ``x(u)`` on the uniform grid ``u_k = u_lo + k·h``, k = 0..K.

    ``coef[k] = (c0, c1, c2, c3)``: ``x = c0 + c1 s + c2 s² + c3 s³`` with ``s = (u − u_k)/h`` in
    cell ``k``. Build it with :meth:`fit`; evaluate with ``table(u)`` (``u`` is clamped to the grid).
    """

    coef: Tensor  # [K, 4]
    u_lo: float
    h: float

    @classmethod
    @torch.no_grad()
    def fit(cls, u_lo: float, h: float, x: Tensor, slope: Tensor) -> MonotoneCubicTable:
        """Cubic Hermite pieces through nodes ``x [K+1]`` (non-decreasing) with slopes ``dx/du [K+1]``.

        Non-finite or negative slopes count as 0; slopes are scaled down where a piece would
        overshoot (Fritsch–Carlson, radius 3), and each node takes the smaller of its two
        neighbours' limited slopes, so every piece is monotone and the whole curve is C¹.
        """
        slope = torch.nan_to_num(slope, nan=0.0, posinf=0.0, neginf=0.0).clamp(min=0.0)
        secant = (x[1:] - x[:-1]) / h  # [K]
        rising = secant > 0
        a = torch.where(rising, slope[:-1] / secant, torch.zeros_like(secant))
        b = torch.where(rising, slope[1:] / secant, torch.zeros_like(secant))
        r = torch.sqrt(a * a + b * b)
        scale = torch.where(r > 3.0, 3.0 / r, torch.ones_like(r))  # [K]
        left = torch.where(rising, scale * a * secant, torch.zeros_like(secant))  # slope at cell start
        right = torch.where(rising, scale * b * secant, torch.zeros_like(secant))  # slope at cell end
        shared = torch.minimum(left[1:], right[:-1])
        m0 = torch.cat([left[:1], shared])  # [K]
        m1 = torch.cat([shared, right[-1:]])  # [K]
        x0, x1 = x[:-1], x[1:]
        coef = torch.stack(
            [x0, h * m0, 3.0 * (x1 - x0) - h * (2.0 * m0 + m1), 2.0 * (x0 - x1) + h * (m0 + m1)], dim=-1
        )
        return cls(coef, float(u_lo), float(h))

    @property
    def n_cells(self) -> int:
        return int(self.coef.shape[0])

    @typing.no_type_check  # hot path
    def cell(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``(k, s)``: the cell index (long) and the position ``s ∈ [0, 1]`` in it of each ``u``."""
        pos = (u.clamp(self.u_lo, self.u_lo + self.n_cells * self.h) - self.u_lo) * (1.0 / self.h)
        k = pos.floor().clamp(max=self.n_cells - 1)
        return k.long(), pos - k

    @typing.no_type_check  # hot path
    def __call__(self, u: Tensor) -> Tensor:
        """``x(u)``, same shape as ``u`` (Horner's rule in each cell)."""
        k, s = self.cell(u)
        c = self.coef.index_select(0, k.reshape(-1)).reshape(*u.shape, 4)  # [*shape, 4]
        x = torch.addcmul(c[..., 2], s, c[..., 3])
        x = torch.addcmul(c[..., 1], s, x)
        return torch.addcmul(c[..., 0], s, x)


@typing.no_type_check
@torch.no_grad()
def newton_increasing(value_and_slope: Callable[[Tensor], tuple[Tensor, Tensor]], x: Tensor, target: Tensor,
                      steps: int, lo: Tensor | float = 0.0, hi: Tensor | float = 1.0) -> Tensor:
    """``steps`` Newton steps ``x ← x − (f(x) − target)/f'(x)`` kept inside ``[lo, hi]``.

    ``value_and_slope(x) = (f(x), f'(x))``. A point with ``f' ≤ 0`` (flat, e.g. at an end) stays put.
    """
    for _ in range(int(steps)):
        value, slope = value_and_slope(x)
        step = torch.where(slope > 0, (value - target) / slope, torch.zeros_like(x))
        x = torch.minimum(torch.maximum(x - step, torch.as_tensor(lo, dtype=x.dtype, device=x.device)),
                          torch.as_tensor(hi, dtype=x.dtype, device=x.device))
    return x


@typing.no_type_check  # hot path: called per ODE evaluation
@torch.no_grad()
def secant_in_bracket(f: Fn, target: Tensor, lo: Tensor, hi: Tensor, f_lo: Tensor, f_hi: Tensor,
                      steps: int) -> Tensor:
    """Secant steps from the bracket ends (``f_lo = f(lo) − target ≤ 0 ≤ f_hi = f(hi) − target``).

    Each iterate is clamped into the initial bracket ``[lo, hi]``; superlinear on a smooth ``f``.
    Returns the last iterate.
    """
    a, b = lo, hi
    for _ in range(int(steps)):
        step = f_hi * (hi - lo) / (f_hi - f_lo)
        m = torch.where(torch.isfinite(step), hi - step, hi).clamp(a, b)
        lo, f_lo, hi, f_hi = hi, f_hi, m, f(m) - target
    return hi

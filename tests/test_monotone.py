"""The one monotone inverse (flowlm/interpolants/_monotone.py) against closed-form inverses."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlm.interpolants._monotone import (
    MonotoneCubicTable,
    bisect_increasing,
    bracket_on_grid,
    newton_increasing,
    secant_in_bracket,
)

F64 = torch.float64


def f(x):  # 2x² + x: strictly increasing on [0, 1]; inverse x = (√(1 + 8y) − 1)/4
    return 2 * x * x + x


def f_inv(y):
    return (torch.sqrt(1 + 8 * y) - 1) / 4


def test_bisection_reaches_float64_and_clamps():
    y = torch.linspace(0, 3, 101, dtype=F64)
    assert torch.allclose(bisect_increasing(f, y, 0.0, 1.0, steps=60), f_inv(y), atol=1e-15, rtol=0)
    coarse = bisect_increasing(f, y, 0.0, 1.0, steps=10)
    assert (coarse - f_inv(y)).abs().max() <= 2.0**-11
    out = bisect_increasing(f, torch.tensor([-1.0, 5.0], dtype=F64), 0.0, 1.0, steps=60)
    assert torch.allclose(out, torch.tensor([0.0, 1.0], dtype=F64), atol=1e-15, rtol=0)  # clamped to [lo, hi]


def test_bracket_on_grid_then_bisect():
    grid = torch.linspace(0, 1, 17, dtype=F64)
    y = torch.rand(50, dtype=F64) * 3
    lo, hi = bracket_on_grid(grid, f(grid), y)
    assert bool((f(lo) <= y).all() and (f(hi) >= y).all() and ((hi - lo) <= 1 / 16 + 1e-15).all())
    assert torch.allclose(bisect_increasing(f, y, lo, hi, steps=50), f_inv(y), atol=1e-15, rtol=0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-6.0, 6.0), min_size=1, max_size=20))
def test_cubic_table_is_monotone_and_accurate(us):
    # x(u) = sigmoid(u) on u ∈ [-6, 6]: exact nodes and slopes
    K, u_lo = 256, -6.0
    h = 12.0 / K
    u_nodes = u_lo + h * torch.arange(K + 1, dtype=F64)
    x = torch.sigmoid(u_nodes)
    table = MonotoneCubicTable.fit(u_lo, h, x, x * (1 - x))
    u = torch.tensor(sorted(us), dtype=F64)
    got = table(u)
    assert torch.allclose(got, torch.sigmoid(u), atol=1e-8, rtol=0)  # cubic Hermite: O(h^4)
    assert bool((got[1:] >= got[:-1]).all())
    assert torch.allclose(table(u_nodes), x, atol=1e-15, rtol=0)  # interpolates the nodes


def test_cubic_table_limits_overshoot():
    # a step: bad slopes would overshoot; the limited cubic stays monotone and inside [0, 1]
    x = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=F64)
    table = MonotoneCubicTable.fit(0.0, 1.0, x, torch.tensor([0.0, 5.0, 5.0, 0.0], dtype=F64))
    vals = table(torch.linspace(0, 3, 301, dtype=F64))
    assert bool((vals[1:] >= vals[:-1] - 1e-15).all()) and vals.min() >= 0 and vals.max() <= 1


def test_newton_and_secant_polish_to_float64():
    y = torch.linspace(0.01, 2.9, 64, dtype=F64)
    start = f_inv(y) + 1e-4  # a table-quality guess
    newton = newton_increasing(lambda x: (f(x), 4 * x + 1), start, y, steps=3)
    assert torch.allclose(newton, f_inv(y), atol=1e-15, rtol=0)
    grid = torch.linspace(0, 1, 65, dtype=F64)
    lo, hi = bracket_on_grid(grid, f(grid), y)
    sec = secant_in_bracket(f, y, lo, hi, f(lo) - y, f(hi) - y, steps=6)
    assert torch.allclose(sec, f_inv(y), atol=1e-14, rtol=0)
    assert math.isclose(float(newton_increasing(lambda x: (f(x), 4 * x + 1), torch.tensor(0.9, dtype=F64),
                                                torch.tensor(100.0, dtype=F64), steps=5)), 1.0)  # kept in [0, 1]

r"""The probability-flow ODE in log-SNR-like time :math:`\nu = \log(1 + \rho)`.

In interpolation time the flow :math:`\dot x = b_u(x) = (\alpha'/\alpha)x + \alpha\rho' D_u(x)`
is singular at :math:`u = 1` (:math:`\alpha = 0`); explicit solvers need steps
:math:`\propto 1-u` there. Two changes of variables remove the singularity.

* :math:`y = x/\alpha` satisfies :math:`dy/d\rho = D` (differentiate: :math:`\dot y = \dot x/\alpha
  - \alpha' x/\alpha^2 = \rho' D`), so :math:`y_t - y_s = \int_s^t D\,d\rho` and
  :math:`\delta_{s,t} = (y_t - y_s)/(\rho_t - \rho_s)` is a :math:`\rho`-average of denoisers.
* With :math:`\nu = \log(1+\rho)` (:math:`\nu(0) = 0`, :math:`\nu(1) = \infty`) and
  :math:`z = x/(\alpha+\beta) = y/(1+\rho) = e^{-\nu}y`,

  .. math::
      \frac{dz}{d\nu} = D_u\big((\alpha+\beta)\,z\big) - z,

  for every interpolant: the state relaxes toward the denoiser at unit rate, with no stiffness
  and no derivative of α, β. Linear: :math:`u = 1 - e^{-\nu}`, α + β = 1, z = x.

Because the right-hand side is affine in ``(x, D)``, the same ODE runs on projected states
``h = x @ E`` with ``D`` replaced by ``space.embed(D)``.

This module sits with the interpolants, below the samplers and the oracles, which both use it
(DESIGN §4): it needs only α, β and a denoiser's ``probs(x, t)``.
"""

from __future__ import annotations

import math
import typing

import torch
from jaxtyping import Float
from torch import Tensor

from flowlm.interpolants._monotone import bisect_increasing, secant_in_bracket
from flowlm.interpolants.base import Interpolant
from flowlm.interpolants.builtins import Cosine, Linear

__all__ = ["nu_of_t", "t_of_nu", "LogSNRFlow"]


@typing.no_type_check  # hot path: called per ODE evaluation
def nu_of_t(interpolant: Interpolant, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """ν(t) = log(1 + ρ(t)) = log((α + β)/α); 0 at t = 0, ``inf`` at t = 1."""
    a, b = interpolant.alpha(t), interpolant.beta(t)
    return torch.log1p(b / a)


@typing.no_type_check  # hot path: called per ODE evaluation
def t_of_nu(
    interpolant: Interpolant, nu: Float[Tensor, "*shape"], n_bisect: int = 64
) -> Float[Tensor, "*shape"]:
    """Inverse of :func:`nu_of_t`: closed form for ``Linear`` (t = 1 − e^{−ν}) and ``Cosine``
    (t = (2/π)·atan(e^ν − 1)); for any other interpolant a cached table of t on a uniform ν grid
    brackets the root and a few secant steps (kept inside the bracket) refine it to float64
    precision; bisection with ``n_bisect`` halvings beyond the table."""
    if type(interpolant) is Linear:
        return (-torch.expm1(-nu)).clamp(0.0, 1.0)
    if type(interpolant) is Cosine:
        return ((2.0 / math.pi) * torch.atan(torch.expm1(nu))).clamp(0.0, 1.0)
    return _NuTable.get(interpolant, nu.dtype, nu.device).invert(nu, n_bisect)


@typing.no_type_check
def _bisect_t_of_nu(interpolant: Interpolant, nu: Tensor, n_bisect: int) -> Tensor:
    t = bisect_increasing(lambda t: nu_of_t(interpolant, t), nu, 0.0, 1.0, steps=n_bisect)
    return torch.where(torch.isinf(nu), torch.ones_like(nu), t)


class _NuTable:
    """t on the grid ν_k = k·h, k = 0..K (h = ``nu_max``/K), built once per (interpolant, dtype, device)."""

    K, nu_max, n_refine = 4096, 40.0, 5
    _cache: dict = {}

    def __init__(self, interpolant: Interpolant, dtype: torch.dtype, device: torch.device) -> None:
        self.interpolant = interpolant
        grid = torch.linspace(0.0, self.nu_max, self.K + 1, dtype=dtype, device=device)
        self.t = _bisect_t_of_nu(interpolant, grid, 64)  # [K + 1]
        self.nu = nu_of_t(interpolant, self.t)  # [K + 1], the exact ν of each node
        self.h = self.nu_max / self.K

    @classmethod
    def get(cls, interpolant: Interpolant, dtype: torch.dtype, device: torch.device) -> "_NuTable":
        key = (id(interpolant), dtype, str(device))
        table = cls._cache.get(key)
        if table is None or table.interpolant is not interpolant:
            if len(cls._cache) > 64:
                cls._cache.clear()
            table = cls._cache[key] = cls(interpolant, dtype, device)
        return table

    @typing.no_type_check
    def invert(self, nu: Tensor, n_bisect: int) -> Tensor:
        it = self.interpolant
        k = (nu / self.h).floor().clamp(0, self.K - 1).long()
        lo, hi = self.t[k], self.t[k + 1]
        f_lo, f_hi = self.nu[k] - nu, self.nu[k + 1] - nu  # f_lo <= 0 <= f_hi inside the table
        t = secant_in_bracket(lambda t: nu_of_t(it, t), nu, lo, hi, f_lo, f_hi, self.n_refine)
        outside = nu > self.nu[-1]
        if bool(outside.any()):
            t = torch.where(outside, _bisect_t_of_nu(it, nu, n_bisect), t)
        return t


@typing.no_type_check  # hot path: called per ODE evaluation
class LogSNRFlow:
    r"""Right-hand side of the probability-flow ODE in ν = log(1 + ρ) for the rescaled state
    :math:`z = x/(\alpha + \beta)`:

    .. math::
        \frac{dz}{d\nu} = D_u\big((\alpha+\beta)(u)\,z\big) - z,\qquad u = t(\nu).

    (From :math:`y = x/\alpha = (1+\rho)z = e^\nu z` and :math:`dy/d\nu = (1+\rho)D`.) It needs
    no derivative of the interpolant, and the state relaxes toward the denoiser at unit rate for
    every interpolant; ``Linear`` has α + β = 1, so z = x there.

    ``flow(z, nu) -> (dz/dν, D)`` with ``z: [B, L, D]`` (a state of ``space``), ``nu: [B]``;
    ``D = denoiser.probs(x, t(ν))`` (a :class:`flowlm.denoisers.Denoiser`) is returned too (the
    flow-map oracle accumulates it). ``nfe`` counts denoiser evaluations.
    """

    def __init__(self, denoiser, interpolant: Interpolant, space=None) -> None:
        self.denoiser, self.interpolant, self.space = denoiser, interpolant, space
        self.nfe = 0

    @typing.no_type_check  # hot path: called per ODE evaluation
    def scale(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """α(t) + β(t) (> 0 on [0, 1]): x = (α + β)·z."""
        return self.interpolant.alpha(t) + self.interpolant.beta(t)

    @typing.no_type_check
    def __call__(self, z: Tensor, nu: Tensor) -> tuple[Tensor, Tensor]:
        t = t_of_nu(self.interpolant, nu)  # [B]
        x = self.scale(t)[:, None, None] * z  # [B, L, D]
        probs = self.denoiser.probs(x, t).to(z.dtype)  # [B, L, V]
        self.nfe += 1
        emb = probs if self.space is None else self.space.embed(probs)  # [B, L, D]
        return emb - z, probs

r"""The affine interpolant between Gaussian noise and one-hot data.

.. math::
    x_t = \alpha(t)\,x_0 + \beta(t)\,x_1,\qquad x_0\sim\mathcal N(0,I),\; x_1\in\{e_1..e_V\}^L

with :math:`\alpha(0)=1,\beta(0)=0,\alpha(1)=0,\beta(1)=1`, :math:`\alpha` decreasing and
:math:`\beta` increasing. Write :math:`\rho=\beta/\alpha` (signal-to-noise ratio, 0 → ∞).

A subclass supplies only ``alpha`` and ``beta`` as torch functions of ``t``; every derivative is
taken by autograd (``torch.func``). All methods take ``t`` of any shape and return the same shape;
the ``x``-valued helpers broadcast a per-sequence time ``t: [B]`` over ``x: [B, L, V]``.

Coefficients that multiply a denoiser or a two-time denoiser are written multiplied through by
``α`` so they stay finite at ``t = 1``:

* velocity: :math:`b_t(x) = (\alpha'/\alpha)\,x + \alpha\rho'\,D_t(x)` with
  :math:`\alpha\rho' = (\beta'\alpha - \beta\alpha')/\alpha`;
* flow map: :math:`X_{s,t}(x) = (\alpha_t/\alpha_s)\,x + (\beta_t - \alpha_t\beta_s/\alpha_s)\,\delta_{s,t}(x)`,
  where :math:`\beta_t - \alpha_t\beta_s/\alpha_s = \alpha_t(\rho_t-\rho_s)`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor


__all__ = ["Interpolant", "FunctionInterpolant", "expand_time"]


def expand_time(t: Tensor, x: Tensor) -> Tensor:
    """View a per-sequence time ``[B]`` (or a scalar) as ``[B, 1, ..., 1]`` to broadcast over ``x``."""
    if t.ndim == 0:
        return t
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def _elementwise_derivative(f: Callable[[Tensor], Tensor], t: Tensor) -> Tensor:
    """d f / d t elementwise, for a scalar function ``f`` applied pointwise (autograd, no hand derivation)."""
    flat = t.reshape(-1)
    d = torch.func.vmap(torch.func.grad(f))(flat)
    return d.reshape(t.shape)


class Interpolant(ABC):
    r"""Abstract affine interpolant :math:`x_t = \alpha(t)x_0 + \beta(t)x_1`.

    Subclasses implement :meth:`alpha` and :meth:`beta` with torch operations that act
    elementwise on a tensor (they are differentiated with ``torch.func.grad``).
    """

    name: str = "interpolant"

    # ----------------------------------------------------------------- schedule
    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """Noise coefficient α(t); α(0) = 1, α(1) = 0, decreasing."""

    @abstractmethod
    def beta(self, t: Tensor) -> Tensor:
        """Data coefficient β(t); β(0) = 0, β(1) = 1, increasing."""

    def alpha_dot(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """dα/dt by autograd."""
        return _elementwise_derivative(self.alpha, t)

    def beta_dot(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """dβ/dt by autograd."""
        return _elementwise_derivative(self.beta, t)

    def rho(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """Signal-to-noise ratio ρ = β/α (``inf`` at t = 1)."""
        return self.beta(t) / self.alpha(t)

    def alpha_rho_dot(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """α·ρ' = (β'α − βα')/α: the denoiser's coefficient in the velocity."""
        a, b = self.alpha(t), self.beta(t)
        return (self.beta_dot(t) * a - b * self.alpha_dot(t)) / a

    def rho_dot(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """dρ/dt = (β'α − βα')/α²."""
        return self.alpha_rho_dot(t) / self.alpha(t)

    # ----------------------------------------------------------------- velocity <-> denoiser
    def velocity_from_denoiser(
        self, x: Float[Tensor, "B L V"], t: Float[Tensor, "B *tokens"], denoised: Float[Tensor, "B L V"]
    ) -> Float[Tensor, "B L V"]:
        """b_t(x) = (α'/α)·x + α·ρ'·D_t(x). Singular at t = 1 (α = 0); use the denoiser there."""
        a = self.alpha(t)
        c_x = expand_time(self.alpha_dot(t) / a, x)
        c_d = expand_time(self.alpha_rho_dot(t), x)
        return c_x * x + c_d * denoised

    def denoiser_from_velocity(
        self, x: Float[Tensor, "B L V"], t: Float[Tensor, "B *tokens"], velocity: Float[Tensor, "B L V"]
    ) -> Float[Tensor, "B L V"]:
        """D_t(x) = (b_t(x) − (α'/α)·x) / (α·ρ'), the inverse of :meth:`velocity_from_denoiser`."""
        a = self.alpha(t)
        c_x = expand_time(self.alpha_dot(t) / a, x)
        c_d = expand_time(self.alpha_rho_dot(t), x)
        return (velocity - c_x * x) / c_d

    # ----------------------------------------------------------------- flow map <-> two-time denoiser
    def flow_map_coefficients(
        self, s: Float[Tensor, "*shape"], t: Float[Tensor, "*shape"]
    ) -> tuple[Float[Tensor, "*shape"], Float[Tensor, "*shape"]]:
        """(c_x, c_δ) with X_{s,t}(x) = c_x·x + c_δ·δ_{s,t}(x):

        c_x = α_t/α_s,   c_δ = β_t − α_t·β_s/α_s  (= α_t(ρ_t − ρ_s), finite at t = 1).
        Requires s < 1 (α_s > 0).
        """
        a_s, a_t = self.alpha(s), self.alpha(t)
        ratio = a_t / a_s
        return ratio, self.beta(t) - ratio * self.beta(s)

    def flow_map_from_delta(
        self,
        x: Float[Tensor, "B L V"],
        s: Float[Tensor, "B *tokens"],
        t: Float[Tensor, "B *tokens"],
        delta: Float[Tensor, "B L V"],
    ) -> Float[Tensor, "B L V"]:
        """X_{s,t}(x) = (α_t/α_s)·x + (β_t − α_tβ_s/α_s)·δ_{s,t}(x)."""
        c_x, c_d = self.flow_map_coefficients(s, t)
        return expand_time(c_x, x) * x + expand_time(c_d, x) * delta

    def delta_from_flow_map(
        self,
        x: Float[Tensor, "B L V"],
        s: Float[Tensor, "B *tokens"],
        t: Float[Tensor, "B *tokens"],
        flow: Float[Tensor, "B L V"],
    ) -> Float[Tensor, "B L V"]:
        """δ_{s,t}(x) = (X_{s,t}(x) − (α_t/α_s)·x) / (β_t − α_tβ_s/α_s); requires s < t."""
        c_x, c_d = self.flow_map_coefficients(s, t)
        return (flow - expand_time(c_x, x) * x) / expand_time(c_d, x)

    def semigroup_weight(
        self, s: Float[Tensor, "*shape"], u: Float[Tensor, "*shape"], t: Float[Tensor, "*shape"]
    ) -> Float[Tensor, "*shape"]:
        """w = (ρ_u − ρ_s)/(ρ_t − ρ_s), written finite at t = 1:

        w = α_t(β_u α_s − α_u β_s) / (α_u(β_t α_s − α_t β_s));  0 at t = 1, → 0 as u → s.
        Linear: (1−t)(u−s) / ((1−u)(t−s)). Requires s ≤ u ≤ t, s < t, u < 1.
        """
        a_s, a_u, a_t = self.alpha(s), self.alpha(u), self.alpha(t)
        b_s, b_u, b_t = self.beta(s), self.beta(u), self.beta(t)
        return a_t * (b_u * a_s - a_u * b_s) / (a_u * (b_t * a_s - a_t * b_s))

    # ----------------------------------------------------------------- constructors
    @staticmethod
    def from_functions(
        alpha: Callable[[Tensor], Tensor],
        beta: Callable[[Tensor], Tensor],
        name: str = "custom",
        atol: float = 1e-5,
    ) -> "FunctionInterpolant":
        """Build an interpolant from two elementwise torch functions, validated at construction.

        >>> import torch
        >>> from flowlm.interpolants import Interpolant
        >>> quad = Interpolant.from_functions(lambda t: 1 - t**2, lambda t: 1 - (1 - t) ** 2)
        >>> float(quad.alpha(torch.tensor(0.5)))
        0.75
        """
        return FunctionInterpolant(alpha, beta, name=name, atol=atol)

    def validate(self, atol: float = 1e-5, n_grid: int = 257) -> None:
        """Check endpoints and monotonicity on a float64 grid; raise ``ValueError`` with the fix."""
        t = torch.linspace(0.0, 1.0, n_grid, dtype=torch.float64)
        try:
            a, b = self.alpha(t), self.beta(t)
        except Exception as err:  # noqa: BLE001 - rethrown with context
            raise ValueError(
                f"interpolant {self.name!r}: alpha/beta must be elementwise torch functions of a tensor t ({err})"
            ) from err
        if not (torch.is_tensor(a) and torch.is_tensor(b)):
            raise ValueError(
                f"interpolant {self.name!r}: alpha(t) and beta(t) must return tensors, got "
                f"{type(a).__name__} and {type(b).__name__}; write them with torch ops, e.g. 1 - t"
            )
        if a.shape != t.shape or b.shape != t.shape:
            raise ValueError(
                f"interpolant {self.name!r}: alpha(t) and beta(t) must return the shape of t; got "
                f"{tuple(a.shape)} and {tuple(b.shape)} for t of shape {tuple(t.shape)}"
            )
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise ValueError(f"interpolant {self.name!r}: alpha or beta is not finite on [0, 1]")
        ends = {"alpha(0)": (a[0], 1.0), "alpha(1)": (a[-1], 0.0), "beta(0)": (b[0], 0.0), "beta(1)": (b[-1], 1.0)}
        for label, (value, want) in ends.items():
            if abs(float(value) - want) > atol:
                raise ValueError(
                    f"interpolant {self.name!r}: {label} = {float(value):.6g}, must be {want} "
                    "(t = 0 is pure noise, t = 1 is data)"
                )
        if bool((a.diff() > atol).any()):
            raise ValueError(f"interpolant {self.name!r}: alpha must be non-increasing on [0, 1]")
        if bool((b.diff() < -atol).any()):
            raise ValueError(f"interpolant {self.name!r}: beta must be non-decreasing on [0, 1]")
        if bool((a[:-1] <= 0).any()):
            raise ValueError(f"interpolant {self.name!r}: alpha must be > 0 on [0, 1) so that rho = beta/alpha is finite")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FunctionInterpolant(Interpolant):
    """An interpolant given by two user functions (see :meth:`Interpolant.from_functions`)."""

    def __init__(
        self,
        alpha: Callable[[Tensor], Tensor],
        beta: Callable[[Tensor], Tensor],
        name: str = "custom",
        atol: float = 1e-5,
    ) -> None:
        if not (callable(alpha) and callable(beta)):
            raise TypeError(
                f"alpha and beta must be callables t -> tensor, got {type(alpha).__name__} and {type(beta).__name__}"
            )
        self._alpha, self._beta, self.name = alpha, beta, name
        self.validate(atol=atol)

    def alpha(self, t: Tensor) -> Tensor:
        return self._alpha(t)

    def beta(self, t: Tensor) -> Tensor:
        return self._beta(t)

    def __repr__(self) -> str:
        return f"FunctionInterpolant(name={self.name!r})"

r"""Jacobian-vector products as a swappable backend.

Both backends share one call signature::

    out, tangent_out = jvp(fn, primals, tangents)

with ``out = fn(*primals)`` and ``tangent_out = Σ_i ∂fn/∂primals_i · tangents_i``.

* :class:`ExactJVP` — forward-mode AD (``torch.func.jvp``): exact, one forward pass of dual
  numbers. Every op on the path needs a forward-mode rule; fused attention kernels (SDPA) and
  custom autograd functions without ``jvp`` do not have one.
* :class:`FiniteDifferenceJVP` — central differences
  ``(fn(p + εv) − fn(p − εv)) / (2ε)``: three plain forward passes, works through any kernel
  (and under DDP), error O(ε²) plus rounding O(u/ε) (u = unit roundoff).

``margin`` is how far inside [0, 1] a *time* primal must sit for the central stencil to see only
valid times (0 for forward mode, ε for central differences). For rows closer to a boundary a
caller passes ``row_shift`` (``[B]``, entries −1, 0, +1; ignored by forward mode): row b then uses
the second-order one-sided stencil ``±(−3f(p) + 4f(p ± εv) − f(p ± 2εv))/(2ε)``, whose points
stay on one side of ``p`` (same three passes, error O(ε²) with a larger constant).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["JVPBackend", "ExactJVP", "FiniteDifferenceJVP", "ForwardModeADError"]

_FORWARD_AD_HINTS = ("forward ad", "forward-mode", "forward mode", "jvp", "functorch", "dual", "setup_context")


class ForwardModeADError(RuntimeError):
    """Forward-mode AD could not pass through a component of the function."""


class JVPBackend(ABC):
    """Abstract JVP backend; see the module docstring."""

    margin: float = 0.0

    @abstractmethod
    def __call__(
        self,
        fn: Callable[..., Tensor],
        primals: Sequence[Tensor],
        tangents: Sequence[Tensor],
        row_shift: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Return ``(fn(*primals), J·tangents)``; ``row_shift`` see the module docstring."""

    @staticmethod
    def _check(primals: Sequence[Tensor], tangents: Sequence[Tensor]) -> None:
        if len(primals) != len(tangents):
            raise ValueError(f"jvp needs one tangent per primal, got {len(primals)} primals and {len(tangents)} tangents")
        for i, (p, v) in enumerate(zip(primals, tangents)):
            if p.shape != v.shape:
                raise ValueError(f"tangent {i} has shape {tuple(v.shape)} but its primal has shape {tuple(p.shape)}")


class ExactJVP(JVPBackend):
    """Forward-mode AD via ``torch.func.jvp`` (exact)."""

    margin = 0.0

    def __call__(
        self,
        fn: Callable[..., Tensor],
        primals: Sequence[Tensor],
        tangents: Sequence[Tensor],
        row_shift: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        self._check(primals, tangents)
        try:
            return torch.func.jvp(fn, tuple(primals), tuple(tangents))
        except (RuntimeError, NotImplementedError) as err:
            msg = str(err)
            if not any(h in msg.lower() for h in _FORWARD_AD_HINTS):
                raise
            raise ForwardModeADError(
                "forward-mode AD (torch.func.jvp) failed inside the network: "
                f"{msg.splitlines()[0] if msg else type(err).__name__}\n"
                "Fix: pass jvp=FiniteDifferenceJVP() to the distiller (works through any kernel), or "
                "switch the model's attention to its plain-math path (fused SDPA kernels have no "
                "forward-mode rule)."
            ) from err

    def __repr__(self) -> str:
        return "ExactJVP()"


class FiniteDifferenceJVP(JVPBackend):
    """Central differences ``(fn(p + εv) − fn(p − εv))/(2ε)``; ``out`` is a third plain pass ``fn(p)``.

    With ``row_shift`` the stencil of each flagged row is one-sided (module docstring).
    """

    def __init__(self, eps: float = 1e-3) -> None:
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.eps = float(eps)
        self.margin = float(eps)

    def __call__(
        self,
        fn: Callable[..., Tensor],
        primals: Sequence[Tensor],
        tangents: Sequence[Tensor],
        row_shift: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        self._check(primals, tangents)
        eps = self.eps
        if row_shift is None:
            plus = fn(*(p + eps * v for p, v in zip(primals, tangents)))
            minus = fn(*(p - eps * v for p, v in zip(primals, tangents)))
            return fn(*primals), (plus - minus) / (2.0 * eps)
        # per-row stencils, all second order (k = row_shift ∈ {−1, 0, +1}, h = ε):
        #   k = 0:  (f(p + h) − f(p − h)) / 2h
        #   k = ±1: ±(−3 f(p) + 4 f(p ± h) − f(p ± 2h)) / 2h
        k = row_shift.to(primals[0].dtype)  # [B]
        c_a = torch.where(k < 0, -torch.ones_like(k), torch.ones_like(k))  # offset of point a, in units of h
        c_b = torch.where(k == 0, -torch.ones_like(k), 2.0 * k)  # offset of point b
        w_0, w_a, w_b = -3.0 * k, (1.0 + 3.0 * k.abs()) * c_a, -c_a  # stencil weights ×2h

        def rows(c: Tensor, like: Tensor) -> Tensor:
            return c.to(like.dtype).reshape(c.shape + (1,) * (like.ndim - c.ndim))

        f_0 = fn(*primals)
        f_a = fn(*(p + eps * rows(c_a, v) * v for p, v in zip(primals, tangents)))
        f_b = fn(*(p + eps * rows(c_b, v) * v for p, v in zip(primals, tangents)))
        deriv = rows(w_0, f_0) * f_0 + rows(w_a, f_0) * f_a + rows(w_b, f_0) * f_b
        return f_0, deriv / (2.0 * eps)

    def __repr__(self) -> str:
        return f"FiniteDifferenceJVP(eps={self.eps})"

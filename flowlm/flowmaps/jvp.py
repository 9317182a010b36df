r"""Jacobian-vector products as a swappable backend.

Both backends share one call signature::

    out, tangent_out = jvp(fn, primals, tangents)

with ``out = fn(*primals)`` and ``tangent_out = Σ_i ∂fn/∂primals_i · tangents_i``.

* :class:`ExactJVP` — forward-mode AD (``torch.func.jvp``): exact, one forward pass of dual
  numbers. Every op on the path needs a forward-mode rule; fused attention kernels (SDPA) and
  custom autograd functions without ``jvp`` do not have one.
* :class:`FiniteDifferenceJVP` — central differences
  ``(fn(p + εv) − fn(p − εv)) / (2ε)``: three plain forward passes, works through any kernel
  (and under DDP), error O(ε²) times the third derivative plus rounding O(u/ε) (u = unit
  roundoff). The distillers differentiate in **model time τ** (dτ/dt reaches ~10 under the
  decoding-error schedule, so a step in t is far too coarse). The right ε depends on how fast the
  network varies in τ: the DiT's time embedding (the authors': frequencies exp(−ln(1e4)·i/128) ≤ 1
  in τ) is smooth, and on a random float32 DiT the relative error against forward mode measured
  0.79 / 0.082 / 0.0089 / 0.0011 / 0.00014 / 0.0013 at ε = 1e-6 / 1e-5 / 1e-4 / 1e-3 / 1e-2 / 1e-1
  (rounding dominates below 1e-3); the default ε = 1e-3 (an embedding with frequencies up to
  ~1e3, as flowlm's pre-authors' DiT had, needs ε ≈ 1e-5 instead). The three passes run with
  the same RNG state (the same dropout masks in train mode), and the backend refuses bf16/fp16
  autocast and half-precision inputs, where no ε gives a usable derivative (the audit measured
  85–102 % error for the DiT at ε = 1e-3 in t, and 450 % in train mode with independent masks).

``margin`` is how far inside [0, 1] a *time* primal (in the units the caller differentiates in,
τ for the distillers) must sit for the central stencil to see only valid times (0 for forward
mode, ε for central differences). For rows closer to a boundary a
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


_HALF = (torch.bfloat16, torch.float16)


def _check_precision(primals: Sequence[Tensor]) -> None:
    """Refuse half-precision autocast and half-precision primals (no ε works there)."""
    for device_type in ("cpu", "cuda"):
        if torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) in _HALF:
            raise RuntimeError(
                f"FiniteDifferenceJVP under {torch.get_autocast_dtype(device_type)} autocast ({device_type}): "
                "differences of half-precision outputs are rounding noise at any ε. Compute the distillation "
                "targets outside autocast (float32), or use ExactJVP()"
            )
    for i, p in enumerate(primals):
        if p.dtype in _HALF:
            raise RuntimeError(
                f"FiniteDifferenceJVP: primal {i} is {p.dtype}; finite differences need float32 or float64 "
                "inputs (cast the state and times up, or use ExactJVP())"
            )


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []


def _capture_rng() -> tuple[Tensor, list[Tensor]]:
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in _cuda_devices()]


def _restore_rng(state: tuple[Tensor, list[Tensor]]) -> None:
    torch.set_rng_state(state[0])
    for d, st in zip(_cuda_devices(), state[1]):
        torch.cuda.set_rng_state(st, d)


class FiniteDifferenceJVP(JVPBackend):
    """Central differences ``(fn(p + εv) − fn(p − εv))/(2ε)``; ``out`` is a third plain pass ``fn(p)``.

    ``eps`` is in the units of the primals (τ for the distillers; default 1e-3, sized for
    the DiT's smooth time embedding in float32: see the module docstring).
    All passes draw the same random numbers (the RNG is reset to one state before each, so
    dropout masks agree); half precision is refused (module docstring). With ``row_shift`` the
    stencil of each flagged row is one-sided.
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
        _check_precision(primals)
        eps = self.eps
        state = _capture_rng()

        def same_rng(*args: Tensor) -> Tensor:
            _restore_rng(state)  # every pass draws the same dropout masks
            return fn(*args)

        if row_shift is None:
            plus = same_rng(*(p + eps * v for p, v in zip(primals, tangents)))
            minus = same_rng(*(p - eps * v for p, v in zip(primals, tangents)))
            return same_rng(*primals), (plus - minus) / (2.0 * eps)
        # per-row stencils, all second order (k = row_shift ∈ {−1, 0, +1}, h = ε):
        #   k = 0:  (f(p + h) − f(p − h)) / 2h
        #   k = ±1: ±(−3 f(p) + 4 f(p ± h) − f(p ± 2h)) / 2h
        k = row_shift.to(primals[0].dtype)  # [B]
        c_a = torch.where(k < 0, -torch.ones_like(k), torch.ones_like(k))  # offset of point a, in units of h
        c_b = torch.where(k == 0, -torch.ones_like(k), 2.0 * k)  # offset of point b
        w_0, w_a, w_b = -3.0 * k, (1.0 + 3.0 * k.abs()) * c_a, -c_a  # stencil weights ×2h

        def rows(c: Tensor, like: Tensor) -> Tensor:
            return c.to(like.dtype).reshape(c.shape + (1,) * (like.ndim - c.ndim))

        f_a = same_rng(*(p + eps * rows(c_a, v) * v for p, v in zip(primals, tangents)))
        f_b = same_rng(*(p + eps * rows(c_b, v) * v for p, v in zip(primals, tangents)))
        f_0 = same_rng(*primals)
        deriv = rows(w_0, f_0) * f_0 + rows(w_a, f_0) * f_a + rows(w_b, f_0) * f_b
        return f_0, deriv / (2.0 * eps)

    def __repr__(self) -> str:
        return f"FiniteDifferenceJVP(eps={self.eps})"

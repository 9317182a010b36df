"""Built-in interpolants: the paper's ``Linear``, the trigonometric ``Cosine`` and ``Quadratic`` (not in
the paper; the third arm of the interpolant ablation), and the name registry the run configuration
reads (``model.interpolant``)."""

from __future__ import annotations

import math

from torch import Tensor
import torch

from flowlm.interpolants.base import Interpolant

__all__ = ["Linear", "Cosine", "Quadratic", "INTERPOLANTS", "interpolant_from_name", "register_interpolant"]


class Linear(Interpolant):
    """α(t) = 1 − t, β(t) = t (the paper's choice); ρ = t/(1 − t)."""

    name = "linear"

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def beta(self, t: Tensor) -> Tensor:
        return t


class Cosine(Interpolant):
    """α(t) = sin(π(1 − t)/2), β(t) = sin(πt/2) (= cos/sin of the trigonometric path, exact 0 at t = 1)."""

    name = "cosine"

    def alpha(self, t: Tensor) -> Tensor:
        return torch.sin(0.5 * math.pi * (1.0 - t))

    def beta(self, t: Tensor) -> Tensor:
        return torch.sin(0.5 * math.pi * t)


class Quadratic(Interpolant):
    """α(t) = 1 − t², β(t) = t² (not in the paper); ρ = t²/(1 − t²), slower to leave the noise than ``Linear``.

    Under the decoding-error schedule every interpolant reaches the same SNR ρ at a given model time τ
    (the decoding error depends on ρ alone), so ``x_t / α(t)`` at equal τ is the same for all of them:
    the interpolant then changes only the state's scale α(t(τ)).
    """

    name = "quadratic"

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t * t

    def beta(self, t: Tensor) -> Tensor:
        return t * t


#: name -> interpolant class with a no-argument constructor (``model.interpolant`` of a run config)
INTERPOLANTS: dict[str, type[Interpolant]] = {"linear": Linear, "cosine": Cosine, "quadratic": Quadratic}


def register_interpolant(name: str, cls: type[Interpolant]) -> None:
    """Make ``cls`` (an :class:`Interpolant` subclass with a no-argument constructor) available to run
    configs as ``model.interpolant=name``. Register it before building or loading a model that names it."""
    if not (isinstance(cls, type) and issubclass(cls, Interpolant)):
        raise TypeError(f"register_interpolant needs an Interpolant subclass, got {cls!r}")
    if name in INTERPOLANTS and INTERPOLANTS[name] is not cls:
        raise ValueError(f"the interpolant name {name!r} is taken by {INTERPOLANTS[name].__name__}")
    INTERPOLANTS[name] = cls


def interpolant_from_name(name: str) -> Interpolant:
    """A fresh interpolant of the registered ``name`` (``"linear"``, ``"cosine"``, ``"quadratic"`` or one
    added with :func:`register_interpolant`)."""
    if name not in INTERPOLANTS:
        import difflib

        close = difflib.get_close_matches(name, list(INTERPOLANTS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown interpolant {name!r}; {hint}choose one of {', '.join(INTERPOLANTS)} "
                         "(or register yours with flowlm.interpolants.register_interpolant)")
    return INTERPOLANTS[name]()

"""Built-in interpolants: the paper's ``Linear`` and the trigonometric ``Cosine``."""

from __future__ import annotations

import math

from torch import Tensor
import torch

from flowlm.interpolants.base import Interpolant

__all__ = ["Linear", "Cosine"]


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

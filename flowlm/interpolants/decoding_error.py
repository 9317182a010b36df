r"""Decoding-error time (placeholder implementation; refined in the schedule work).

q(t) = E_{z~N(0,1)}[Φ(z + ρ(t))^{V−1}],  τ(t) = (V·q(t) − 1)/(V − 1).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from flowlm.interpolants.base import Interpolant
from flowlm.interpolants.builtins import Linear
from flowlm.interpolants.schedule import TimeSchedule

__all__ = ["DecodingErrorSchedule"]


class DecodingErrorSchedule(TimeSchedule):
    """τ(t) = normalized probability that argmax-decoding x_t gives the clean token."""

    def __init__(self, vocab_size: int, interpolant: Interpolant | None = None, n_nodes: int = 128) -> None:
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        self.vocab_size = int(vocab_size)
        self.interpolant = interpolant if interpolant is not None else Linear()
        z, w = np.polynomial.hermite_e.hermegauss(n_nodes)
        self._z = torch.as_tensor(z, dtype=torch.float64)
        self._logw = torch.as_tensor(np.log(w / math.sqrt(2 * math.pi)), dtype=torch.float64)

    def tau_of_t(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        V = self.vocab_size
        rho = self.interpolant.rho(t.double()).clamp(max=1e6)
        z = self._z.to(t.device)
        logw = self._logw.to(t.device)
        logq = torch.logsumexp(logw + (V - 1) * torch.special.log_ndtr(rho.unsqueeze(-1) + z), dim=-1)
        tau = (V * logq.exp() - 1.0) / (V - 1)
        return tau.clamp(0.0, 1.0).to(t.dtype)

    def __repr__(self) -> str:
        return f"DecodingErrorSchedule(vocab_size={self.vocab_size}, interpolant={self.interpolant!r})"

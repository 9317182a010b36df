r"""Two-time denoisers and the flow maps they parameterize.

A *two-time denoiser* maps a state and a pair of interpolation times to per-token logits:
``delta(x: [B, L, D], s: [B], t: [B]) -> logits [B, L, V]``; ``softmax(logits)`` estimates
:math:`\delta_{s,t}(x)`, a point of the probability simplex per token (D = V in the one-hot
space; D = d when the state is the projection ``x @ E``).

The flow map is recovered losslessly (DESIGN §1):

.. math::
    X_{s,t}(x) = c_x\,x + c_\delta\,\mathrm{embed}(\delta_{s,t}(x)),\qquad
    c_x = \alpha_t/\alpha_s,\quad c_\delta = \beta_t - \alpha_t\beta_s/\alpha_s = \alpha_t(\rho_t-\rho_s),

finite at ``t = 1`` (``c_x = 0``, ``c_δ = 1``), and the *average velocity* is
:math:`v_{s,t}(x) = (X_{s,t}(x) - x)/(t - s)`. All conversions below hold for any affine
interpolant and act on states, so in a projected space they carry ``embed(δ)`` rather than δ.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor

from flowlm._checks import check_batch_times
from flowlm.denoisers import probs_from_logits
from flowlm.interpolants.base import Interpolant, expand_time
from flowlm.states import OneHotSpace, StateSpace

__all__ = [
    "TwoTimeDenoiser",
    "FlowMap",
    "delta_probs",
    "flow_map_from_delta",
    "delta_from_flow_map",
    "average_velocity_from_flow_map",
    "flow_map_from_average_velocity",
    "average_velocity_from_delta",
    "delta_from_average_velocity",
]


@runtime_checkable
class TwoTimeDenoiser(Protocol):
    """``delta(x, s, t) -> logits`` with ``x: [B, L, D]``, ``s, t: [B]`` (interpolation times, s ≤ t)."""

    vocab_size: int

    def __call__(
        self, x: Float[Tensor, "B L D"], s: Float[Tensor, " B"], t: Float[Tensor, " B"]
    ) -> Float[Tensor, "B L V"]: ...


def delta_probs(
    delta: TwoTimeDenoiser, x: Float[Tensor, "B L D"], s: Float[Tensor, " B"], t: Float[Tensor, " B"]
) -> Float[Tensor, "B L V"]:
    """δ̂_{s,t}(x) = softmax of the two-time denoiser's logits (computed in at least float32)."""
    return probs_from_logits(delta(x, s, t), x.dtype)


# --------------------------------------------------------------------------- conversions
def flow_map_from_delta(
    interpolant: Interpolant,
    x: Float[Tensor, "B L D"],
    s: Float[Tensor, " B"],
    t: Float[Tensor, " B"],
    delta_state: Float[Tensor, "B L D"],
) -> Float[Tensor, "B L D"]:
    """X_{s,t}(x) = (α_t/α_s)·x + (β_t − α_tβ_s/α_s)·δ, with δ already embedded in the state space."""
    return interpolant.flow_map_from_delta(x, s, t, delta_state)


def delta_from_flow_map(
    interpolant: Interpolant,
    x: Float[Tensor, "B L D"],
    s: Float[Tensor, " B"],
    t: Float[Tensor, " B"],
    flow: Float[Tensor, "B L D"],
) -> Float[Tensor, "B L D"]:
    """δ_{s,t}(x) = (X_{s,t}(x) − (α_t/α_s)·x)/(β_t − α_tβ_s/α_s); requires s < t (and s < 1)."""
    return interpolant.delta_from_flow_map(x, s, t, flow)


def average_velocity_from_flow_map(
    x: Float[Tensor, "B L D"], s: Float[Tensor, " B"], t: Float[Tensor, " B"], flow: Float[Tensor, "B L D"]
) -> Float[Tensor, "B L D"]:
    """v_{s,t}(x) = (X_{s,t}(x) − x)/(t − s); requires s < t."""
    return (flow - x) / expand_time(t - s, x)


def flow_map_from_average_velocity(
    x: Float[Tensor, "B L D"], s: Float[Tensor, " B"], t: Float[Tensor, " B"], velocity: Float[Tensor, "B L D"]
) -> Float[Tensor, "B L D"]:
    """X_{s,t}(x) = x + (t − s)·v_{s,t}(x)."""
    return x + expand_time(t - s, x) * velocity


def average_velocity_from_delta(
    interpolant: Interpolant,
    x: Float[Tensor, "B L D"],
    s: Float[Tensor, " B"],
    t: Float[Tensor, " B"],
    delta_state: Float[Tensor, "B L D"],
) -> Float[Tensor, "B L D"]:
    """v_{s,t}(x) = ((c_x − 1)·x + c_δ·δ)/(t − s)  (Linear: (δ − x)/(1 − s), independent of t)."""
    return average_velocity_from_flow_map(x, s, t, flow_map_from_delta(interpolant, x, s, t, delta_state))


def delta_from_average_velocity(
    interpolant: Interpolant,
    x: Float[Tensor, "B L D"],
    s: Float[Tensor, " B"],
    t: Float[Tensor, " B"],
    velocity: Float[Tensor, "B L D"],
) -> Float[Tensor, "B L D"]:
    """δ_{s,t}(x) = (x + (t − s)·v − c_x·x)/c_δ, the inverse of :func:`average_velocity_from_delta`."""
    return delta_from_flow_map(interpolant, x, s, t, flow_map_from_average_velocity(x, s, t, velocity))


# --------------------------------------------------------------------------- the flow map object
class FlowMap:
    r"""The flow map :math:`\hat X_{s,t}` of a two-time denoiser under an affine interpolant.

    ``FlowMap(delta, interpolant, space)(x, s, t)`` returns
    :math:`\hat X_{s,t}(x) = (\alpha_t/\alpha_s)x + (\beta_t - \alpha_t\beta_s/\alpha_s)\,
    \mathrm{embed}(\mathrm{softmax}\,\hat\delta(x,s,t))` with shapes ``x: [B, L, D]``,
    ``s, t: [B]``. ``space`` defaults to :class:`~flowlm.states.OneHotSpace`.
    """

    def __init__(
        self, delta: TwoTimeDenoiser, interpolant: Interpolant, space: StateSpace | None = None
    ) -> None:
        self.delta = delta
        self.interpolant = interpolant
        self.space = space if space is not None else OneHotSpace(delta.vocab_size)

    def probs(
        self, x: Float[Tensor, "B L D"], s: Float[Tensor, " B"], t: Float[Tensor, " B"]
    ) -> Float[Tensor, "B L V"]:
        """δ̂_{s,t}(x) on the simplex."""
        check_batch_times("s", s, x.shape[0])
        check_batch_times("t", t, x.shape[0])
        if not torch.compiler.is_compiling() and bool((s > t).any()):
            raise ValueError("a flow map step needs s <= t (s is the start time, t the end time); swap them")
        return delta_probs(self.delta, x, s, t)

    def __call__(
        self, x: Float[Tensor, "B L D"], s: Float[Tensor, " B"], t: Float[Tensor, " B"]
    ) -> Float[Tensor, "B L D"]:
        """X̂_{s,t}(x) = c_x·x + c_δ·embed(δ̂_{s,t}(x))."""
        return flow_map_from_delta(self.interpolant, x, s, t, self.space.embed(self.probs(x, s, t)))

    def average_velocity(
        self, x: Float[Tensor, "B L D"], s: Float[Tensor, " B"], t: Float[Tensor, " B"]
    ) -> Float[Tensor, "B L D"]:
        """v̂_{s,t}(x) = (X̂_{s,t}(x) − x)/(t − s); requires s < t."""
        return average_velocity_from_flow_map(x, s, t, self(x, s, t))

    def __repr__(self) -> str:
        return f"FlowMap({self.delta!r}, {self.interpolant!r}, {self.space!r})"

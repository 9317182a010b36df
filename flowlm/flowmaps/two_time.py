r"""Flow maps of two-time denoisers.

A *two-time denoiser* (:class:`flowlm.denoisers.TwoTimeDenoiser`) maps a state and a pair of
interpolation times to per-token logits whose softmax estimates :math:`\delta_{s,t}(x)`, a point
of the probability simplex per token. The flow map is recovered losslessly (DESIGN §1):

.. math::
    X_{s,t}(x) = c_x\,x + c_\delta\,\mathrm{embed}(\delta_{s,t}(x)),\qquad
    c_x = \alpha_t/\alpha_s,\quad c_\delta = \beta_t - \alpha_t\beta_s/\alpha_s = \alpha_t(\rho_t-\rho_s),

finite at ``t = 1`` (``c_x = 0``, ``c_δ = 1``), and the *average velocity* is
:math:`v_{s,t}(x) = (X_{s,t}(x) - x)/(t - s)`. :class:`FlowMap` is the object the distillers and
the few-step sampler call; the free functions below are the same algebra on given tensors, for
any affine interpolant, acting on states (in a projected space they carry ``embed(δ)``).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from flowlm._checks import check_times
from flowlm.denoisers import TwoTimeDenoiser
from flowlm.flow import Flow
from flowlm.interpolants.base import Interpolant, expand_time
from flowlm.states import OneHotSpace, StateSpace

__all__ = [
    "FlowMap",
    "flow_map_from_delta",
    "delta_from_flow_map",
    "average_velocity_from_flow_map",
    "flow_map_from_average_velocity",
    "average_velocity_from_delta",
    "delta_from_average_velocity",
]


# --------------------------------------------------------------------------- conversions
def flow_map_from_delta(
    interpolant: Interpolant,
    x: Float[Tensor, "B L D"],
    s: Float[Tensor, "B *tokens"],
    t: Float[Tensor, "B *tokens"],
    delta_state: Float[Tensor, "B L D"],
) -> Float[Tensor, "B L D"]:
    """X_{s,t}(x) = (α_t/α_s)·x + (β_t − α_tβ_s/α_s)·δ, with δ already embedded in the state space."""
    return interpolant.flow_map_from_delta(x, s, t, delta_state)


def delta_from_flow_map(
    interpolant: Interpolant,
    x: Float[Tensor, "B L D"],
    s: Float[Tensor, "B *tokens"],
    t: Float[Tensor, "B *tokens"],
    flow: Float[Tensor, "B L D"],
) -> Float[Tensor, "B L D"]:
    """δ_{s,t}(x) = (X_{s,t}(x) − (α_t/α_s)·x)/(β_t − α_tβ_s/α_s); requires s < t (and s < 1)."""
    return interpolant.delta_from_flow_map(x, s, t, flow)


def average_velocity_from_flow_map(
    x: Float[Tensor, "B L D"], s: Float[Tensor, "B *tokens"], t: Float[Tensor, "B *tokens"], flow: Float[Tensor, "B L D"]
) -> Float[Tensor, "B L D"]:
    """v_{s,t}(x) = (X_{s,t}(x) − x)/(t − s); requires s < t."""
    return (flow - x) / expand_time(t - s, x)


def flow_map_from_average_velocity(
    x: Float[Tensor, "B L D"], s: Float[Tensor, "B *tokens"], t: Float[Tensor, "B *tokens"], velocity: Float[Tensor, "B L D"]
) -> Float[Tensor, "B L D"]:
    """X_{s,t}(x) = x + (t − s)·v_{s,t}(x)."""
    return x + expand_time(t - s, x) * velocity


def average_velocity_from_delta(
    interpolant: Interpolant,
    x: Float[Tensor, "B L D"],
    s: Float[Tensor, "B *tokens"],
    t: Float[Tensor, "B *tokens"],
    delta_state: Float[Tensor, "B L D"],
) -> Float[Tensor, "B L D"]:
    """v_{s,t}(x) = ((c_x − 1)·x + c_δ·δ)/(t − s)  (Linear: (δ − x)/(1 − s), independent of t)."""
    return average_velocity_from_flow_map(x, s, t, flow_map_from_delta(interpolant, x, s, t, delta_state))


def delta_from_average_velocity(
    interpolant: Interpolant,
    x: Float[Tensor, "B L D"],
    s: Float[Tensor, "B *tokens"],
    t: Float[Tensor, "B *tokens"],
    velocity: Float[Tensor, "B L D"],
) -> Float[Tensor, "B L D"]:
    """δ_{s,t}(x) = (x + (t − s)·v − c_x·x)/c_δ, the inverse of :func:`average_velocity_from_delta`."""
    return delta_from_flow_map(interpolant, x, s, t, flow_map_from_average_velocity(x, s, t, velocity))


def _held_clean(s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Times for the flow-map coefficients: a clean position (per-token s = 1) gets s = t = 0, where
    c_x = 1 and c_δ = 0, so X = x keeps its clean state (α_s = 0 would give 0/0 otherwise)."""
    if s.ndim < 2:
        return s, t
    clean = s >= 1
    return torch.where(clean, torch.zeros_like(s), s), torch.where(clean, torch.zeros_like(t), t)


# --------------------------------------------------------------------------- the flow map object
class FlowMap:
    r"""The flow map :math:`\hat X_{s,t}` of a two-time denoiser on a flow.

    ``FlowMap(delta, flow, space=None).X(x, s, t)`` (also ``fm(x, s, t)``) returns
    :math:`\hat X_{s,t}(x) = (\alpha_t/\alpha_s)x + (\beta_t - \alpha_t\beta_s/\alpha_s)\,
    \mathrm{embed}(\hat\delta_{s,t}(x))` with ``x: [B, L, D]``, ``s, t: [B]`` or per-token ``[B, L]``
    (s ≤ t; a clean position has s = t = 1 and keeps its state: X = x there). ``space``
    defaults to the one-hot space of δ̂'s vocabulary. ``delta`` must have been built for ``flow``.
    """

    def __init__(self, delta: TwoTimeDenoiser, flow: Flow, space: StateSpace | None = None) -> None:
        if not isinstance(delta, TwoTimeDenoiser):
            raise TypeError(
                f"FlowMap needs a flowlm TwoTimeDenoiser (subclass flowlm.denoisers.TwoTimeDenoiser), got {type(delta).__name__}"
            )
        if not isinstance(flow, Flow):
            raise TypeError(f"FlowMap(delta, flow): flow must be a flowlm.Flow, got {type(flow).__name__}")
        flow.check(delta, "two-time denoiser")
        if space is not None and space.vocab_size != delta.vocab_size:
            raise ValueError(f"state space vocabulary ({space.vocab_size}) differs from δ̂'s ({delta.vocab_size})")
        self.delta = delta
        self.flow = flow
        self.space = space if space is not None else OneHotSpace(delta.vocab_size)

    @property
    def vocab_size(self) -> int:
        return self.delta.vocab_size

    def X(
        self,
        x: Float[Tensor, "B L D"],
        s: Float[Tensor, "B *tokens"],
        t: Float[Tensor, "B *tokens"],
        *,
        tau_s: Float[Tensor, "B *tokens"] | None = None,
        tau_t: Float[Tensor, "B *tokens"] | None = None,
        return_delta: bool = False,
    ) -> Float[Tensor, "B L D"] | tuple[Float[Tensor, "B L D"], Float[Tensor, "B L V"]]:
        """X̂_{s,t}(x); with ``return_delta`` also δ̂_{s,t}(x) ``[B, L, V]`` (one network pass for both).
        ``tau_s, tau_t``: the model times, passed on to the network when the caller holds them."""
        check_times("s", s, x.shape[0], x.shape[1])
        check_times("t", t, x.shape[0], x.shape[1])
        if not torch.compiler.is_compiling() and bool((s > t).any()):
            raise ValueError("a flow map step needs s <= t (s is the start time, t the end time); swap them")
        if return_delta:
            probs = self.delta.probs(x, s, t, tau_s=tau_s, tau_t=tau_t)
            return self.combine(x, s, t, probs), probs
        emb = self.delta.probs(x, s, t, tau_s=tau_s, tau_t=tau_t, space=self.space)
        return self.flow.interpolant.flow_map_from_delta(x, *_held_clean(s, t), emb)

    __call__ = X

    def combine(
        self, x: Float[Tensor, "B L D"], s: Float[Tensor, "B *tokens"], t: Float[Tensor, "B *tokens"], probs: Float[Tensor, "B L V"]
    ) -> Float[Tensor, "B L D"]:
        """c_x·x + c_δ·embed(probs): the flow map for δ̂ values already computed (e.g. the primal of a JVP)."""
        return self.flow.interpolant.flow_map_from_delta(x, *_held_clean(s, t), self.space.embed(probs))

    def average_velocity(
        self, x: Float[Tensor, "B L D"], s: Float[Tensor, "B *tokens"], t: Float[Tensor, "B *tokens"]
    ) -> Float[Tensor, "B L D"]:
        """v̂_{s,t}(x) = (X̂_{s,t}(x) − x)/(t − s); requires s < t."""
        return average_velocity_from_flow_map(x, s, t, self.X(x, s, t))

    def __repr__(self) -> str:
        return f"FlowMap({type(self.delta).__name__}, {self.flow!r}, {self.space!r})"

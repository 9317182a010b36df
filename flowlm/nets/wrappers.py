r"""Network wrappers that satisfy the math-layer protocols.

These are the **only** place where interpolation time ``t`` becomes model time ``τ``:

* :class:`NetDenoiser` — ``den(x, t) -> logits`` with ``τ = schedule.tau_of_t(t)``,
  ``logits = net(h, τ)`` (a :class:`flowlm.denoisers.Denoiser`);
* :class:`NetTwoTimeDenoiser` — ``delta(x, s, t) -> logits`` with ``τ_s, τ_t`` from ``s, t``,
  ``logits = net(h, τ_s, τ_t)`` (a two-time denoiser δ̂_{s,t}).

``x`` is a state of ``space``: the projected state ``h = x @ E`` (``[B, L, d]``) for a
:class:`~flowlm.nets.ProjectedSpace`, or the V-wide state (``[B, L, V]``, projected here) for a
:class:`~flowlm.states.OneHotSpace`. So an exact oracle and a trained network are
interchangeable wherever a denoiser is expected.

Both wrappers also offer ``chunked_probs(x, *times, space=None)``: the softmax of the same logits
(or, with ``space``, its embedding ``space.embed(probs)``) computed a chunk of positions at a
time from the network's last features, so sampling never holds ``[B, L, V]`` logits and, on the
projected space, no ``[B, L, V]`` tensor at all between steps. The samplers use it when present.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from flowlm._checks import check_batch_times, check_finite
from flowlm.denoisers import probs_from_logits
from flowlm.interpolants.schedule import TimeSchedule
from flowlm.nets.projection import ProjectedSpace
from flowlm.states import OneHotSpace, StateSpace

__all__ = ["NetDenoiser", "NetTwoTimeDenoiser"]


class _NetWrapper(nn.Module):
    """An ``nn.Module`` around the network (so ``eval()``, ``requires_grad_()``, ``parameters()``
    reach it, e.g. when a distiller freezes its teacher); holds the schedule and the state space."""

    def __init__(self, net: nn.Module, schedule: TimeSchedule, space: StateSpace | None = None) -> None:
        super().__init__()
        self.net = net
        self.schedule = schedule
        self.space = space if space is not None else ProjectedSpace(net)
        self.vocab_size = int(net.E.shape[0])

    @property
    def projected(self) -> bool:
        return isinstance(self.space, ProjectedSpace)

    def project(self, x: Tensor) -> Tensor:
        """The network input h: ``x`` itself on the projected space, ``x @ E`` on the V-wide space."""
        V, d = self.net.E.shape
        if x.ndim != 3:
            raise ValueError(f"state must be [batch, length, width], got shape {tuple(x.shape)}")
        if self.projected:
            if x.shape[-1] != d:
                raise ValueError(
                    f"this denoiser runs on the projected space: expected states [B, L, {d}] (h = x @ E), got "
                    f"{tuple(x.shape)}; pass space=OneHotSpace(V) to feed V-wide states"
                )
            return x
        if x.shape[-1] != V:
            raise ValueError(f"expected V-wide states [B, L, {V}], got {tuple(x.shape)}")
        return x.to(self.net.E.dtype) @ self.net.E  # [B, L, d]

    def chunked_probs(
        self, x: Float[Tensor, "B L D"], *times: Float[Tensor, " B"], space: StateSpace | None = None
    ) -> Float[Tensor, "B L K"]:
        """softmax(self(x, *times)) ``[B, L, V]`` in the dtype of ``x``, or ``space.embed`` of it
        (``[B, L, D]``), without ``[B, L, V]`` logits (see the module docstring)."""
        if not hasattr(self.net, "probs_from_features"):  # a network without a separable head
            probs = probs_from_logits(self(x, *times), x.dtype)
            return probs if space is None else space.embed(probs)
        for name, t in zip("st" if len(times) == 2 else "t", times):
            check_batch_times(name, t, x.shape[0])
        check_finite("x", x)
        taus = [self.schedule.tau_of_t(t) for t in times]
        features = self.net(self.project(x), *taus, return_features=True)  # [B, L, W]
        if isinstance(space, ProjectedSpace) and space.E is self.net.E:
            return self.net.probs_from_features(features, project=space.E)  # [B, L, d]
        probs = self.net.probs_from_features(features, dtype=x.dtype)  # [B, L, V]
        return probs if space is None else space.embed(probs)


class NetDenoiser(_NetWrapper):
    """``den(x, t) = net(h(x), τ(t))``: a :class:`~flowlm.denoisers.Denoiser` backed by a network."""

    def forward(self, x: Float[Tensor, "B L D"], t: Float[Tensor, " B"]) -> Float[Tensor, "B L V"]:
        check_batch_times("t", t, x.shape[0])
        check_finite("x", x)
        return self.net(self.project(x), self.schedule.tau_of_t(t))

    def logits_tau(self, x: Float[Tensor, "B L D"], tau: Float[Tensor, " B"]) -> Float[Tensor, "B L V"]:
        """Logits at model time τ directly (training draws τ and needs no t → τ round trip)."""
        return self.net(self.project(x), tau)

    def __repr__(self) -> str:
        return f"NetDenoiser({type(self.net).__name__}, schedule={self.schedule!r}, space={self.space!r})"


class NetTwoTimeDenoiser(_NetWrapper):
    """``δ̂(x, s, t) = net(h(x), τ(s), τ(t))``: logits of the two-time denoiser δ̂_{s,t}(x)."""

    def forward(
        self, x: Float[Tensor, "B L D"], s: Float[Tensor, " B"], t: Float[Tensor, " B"]
    ) -> Float[Tensor, "B L V"]:
        check_batch_times("s", s, x.shape[0])
        check_batch_times("t", t, x.shape[0])
        return self.net(self.project(x), self.schedule.tau_of_t(s), self.schedule.tau_of_t(t))

    def logits_tau(
        self, x: Float[Tensor, "B L D"], tau_s: Float[Tensor, " B"], tau_t: Float[Tensor, " B"]
    ) -> Float[Tensor, "B L V"]:
        return self.net(self.project(x), tau_s, tau_t)

    def __repr__(self) -> str:
        return f"NetTwoTimeDenoiser({type(self.net).__name__}, schedule={self.schedule!r}, space={self.space!r})"

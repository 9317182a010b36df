r"""Network wrappers: a network as a :class:`~flowlm.denoisers.Denoiser` or
:class:`~flowlm.denoisers.TwoTimeDenoiser` on a :class:`flowlm.Flow`.

These are the place where interpolation time ``t`` becomes model time ``τ``, and only when the
caller does not already hold τ (samplers, distillers and training pass ``tau=`` on):

* :class:`NetDenoiser` — ``den.logits(x, t, tau=None) = net(h, τ)``, τ = ``tau`` or τ(t);
  times ``[B]`` or ``[B, L]`` (per-token times: per-token adaLN conditioning in the DiT);
* :class:`NetTwoTimeDenoiser` — ``delta.logits(x, s, t, tau_s=None, tau_t=None) = net(h, τ_s, τ_t)``.

``x`` is a state of ``space``: the projected state ``h = x @ E`` (``[B, L, d]``) for a
:class:`~flowlm.nets.ProjectedSpace`, or the V-wide state (``[B, L, V]``, projected here) for a
:class:`~flowlm.states.OneHotSpace`. So an exact oracle and a trained network are
interchangeable wherever a denoiser is expected.

Both override ``probs(x, *times, space=None)`` with the chunked head: the softmax of the same
logits (or, with ``space``, its embedding ``space.embed(probs)``) computed a chunk of positions
at a time from the network's last features, so sampling never holds ``[B, L, V]`` logits and, on
the projected space, no ``[B, L, V]`` tensor at all between steps.
"""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor, nn

from flowlm._checks import check_finite, check_times
from flowlm.denoisers import Denoiser, TwoTimeDenoiser, softmax_probs
from flowlm.flow import Flow
from flowlm.interpolants.schedule import TimeSchedule
from flowlm.nets.projection import ProjectedSpace
from flowlm.states import StateSpace

__all__ = ["NetDenoiser", "VelocityNetDenoiser", "NetTwoTimeDenoiser"]


class _NetWrapper(nn.Module):
    """An ``nn.Module`` around the network (so ``eval()``, ``requires_grad_()``, ``parameters()``
    reach it, e.g. when a distiller freezes its teacher); holds the flow and the state space."""

    def __init__(self, net: nn.Module, flow: Flow, space: StateSpace | None = None) -> None:
        super().__init__()
        if not isinstance(flow, Flow):
            raise TypeError(
                f"{type(self).__name__}(net, flow): flow must be a flowlm.Flow (the network is conditioned on "
                f"its τ), got {type(flow).__name__}"
            )
        self.net = net
        self.flow = flow
        self.space = space if space is not None else ProjectedSpace(net)
        self.vocab_size = int(net.E.shape[0])
        flow.check(self, "network")

    @property
    def schedule(self) -> TimeSchedule:
        return self.flow.schedule

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

    def _taus(self, x: Tensor, times: tuple[Tensor, ...], taus: tuple[Tensor | None, ...]) -> list[Tensor]:
        for name, t in zip("st" if len(times) == 2 else "t", times):
            check_times(name, t, x.shape[0], x.shape[1])
        check_finite("x", x)
        return [self.schedule.tau_of_t(t) if tau is None else tau for t, tau in zip(times, taus)]

    def _chunked(
        self, x: Tensor, times: tuple[Tensor, ...], taus: tuple[Tensor | None, ...], space: StateSpace | None
    ) -> Tensor:
        """softmax of the logits ``[B, L, V]`` in the dtype of ``x``, or ``space.embed`` of it, without
        ``[B, L, V]`` logits when the network has a separable head."""
        if not hasattr(self.net, "probs_from_features"):  # a network without a separable head
            probs = softmax_probs(self.net(self.project(x), *self._taus(x, times, taus)), x.dtype)
            return probs if space is None else space.embed(probs)
        features = self.net(self.project(x), *self._taus(x, times, taus), return_features=True)  # [B, L, W]
        if isinstance(space, ProjectedSpace) and space.E is self.net.E:
            return self.net.probs_from_features(features, project=space.E)  # [B, L, d]
        probs = self.net.probs_from_features(features, dtype=x.dtype)  # [B, L, V]
        return probs if space is None else space.embed(probs)


class NetDenoiser(_NetWrapper, Denoiser):
    """``den(x, t, tau=None) = net(h(x), τ)``: a :class:`~flowlm.denoisers.Denoiser` backed by a network."""

    def logits(
        self, x: Float[Tensor, "B L D"], t: Float[Tensor, "B *tokens"], *, tau: Float[Tensor, "B *tokens"] | None = None
    ) -> Float[Tensor, "B L V"]:
        return self.net(self.project(x), *self._taus(x, (t,), (tau,)))

    def forward(self, x: Tensor, t: Tensor, *, tau: Tensor | None = None) -> Tensor:
        return self.logits(x, t, tau=tau)

    def probs(
        self,
        x: Float[Tensor, "B L D"],
        t: Float[Tensor, "B *tokens"],
        *,
        tau: Float[Tensor, "B *tokens"] | None = None,
        space: StateSpace | None = None,
    ) -> Float[Tensor, "B L K"]:
        """D_t(x) through the chunked head (module docstring)."""
        return self._chunked(x, (t,), (tau,), space)

    def __repr__(self) -> str:
        return f"NetDenoiser({type(self.net).__name__}, {self.flow!r}, space={self.space!r})"


class VelocityNetDenoiser(NetDenoiser):
    r"""A velocity-parametrized network read as a denoiser (the velocity + MSE ablation of
    :class:`flowlm.models.FLM`): the network's V outputs are a velocity :math:`u` of the one-hot
    space, and ``probs`` returns the implied clean estimate in the state space

    .. math::
        \hat x_1 = \frac{u - (\dot\alpha/\alpha)\,x_t}{\dot\beta - \dot\alpha\beta/\alpha},

    so that the probability-flow drift built from it, :math:`(\dot\alpha/\alpha)x_t + (\dot\beta -
    \dot\alpha\beta/\alpha)\hat x_1`, is :math:`u` itself (projected states: :math:`uE` and
    :math:`h_t`). It is not a probability: ``logits`` raises, and it needs ``α(t) > 0`` (t < 1;
    samplers never evaluate at t = 1). Asked for V-wide output (``space=None``) on projected states,
    it returns the scores :math:`\hat x_1 E^\top`, whose argmax is the decoded token.
    """

    def logits(self, x: Tensor, t: Tensor, *, tau: Tensor | None = None) -> Tensor:
        raise TypeError("a velocity-parametrized FLM (loss velocity_mse) has no logits; its probs() is the implied "
                        "clean estimate (not a probability), which every FLM sampler accepts")

    def velocity(self, x: Tensor, t: Tensor, *, tau: Tensor | None = None) -> Float[Tensor, "B L V"]:
        """The network's velocity :math:`u` in the one-hot space, ``[B, L, V]``."""
        return self.net(self.project(x), *self._taus(x, (t,), (tau,)))

    def probs(
        self,
        x: Float[Tensor, "B L D"],
        t: Float[Tensor, "B *tokens"],
        *,
        tau: Float[Tensor, "B *tokens"] | None = None,
        space: StateSpace | None = None,
    ) -> Float[Tensor, "B L K"]:
        u = self.velocity(x, t, tau=tau).to(x.dtype)  # [B, L, V]
        E = self.net.E.to(x.dtype)
        v = u @ E if self.projected else u  # [B, L, K]: the velocity of the state (u, or u @ E on projected states)
        tt = (t if t.ndim == 2 else t[:, None].expand(x.shape[0], x.shape[1]))[..., None].to(x.dtype)  # [B, L, 1]
        path = self.flow.interpolant
        a, b, da, db = path.alpha(tt), path.beta(tt), path.alpha_dot(tt), path.beta_dot(tt)
        x1 = (v - (da / a) * x) / (db - da * b / a)  # [B, L, K]: the implied clean state
        if space is None and self.projected:
            return x1 @ E.T  # [B, L, V]: scores <x̂1, E_v>, whose argmax decodes the token
        return x1

    def __repr__(self) -> str:
        return f"VelocityNetDenoiser({type(self.net).__name__}, {self.flow!r}, space={self.space!r})"


class NetTwoTimeDenoiser(_NetWrapper, TwoTimeDenoiser):
    """``δ̂(x, s, t) = net(h(x), τ_s, τ_t)``: logits of the two-time denoiser δ̂_{s,t}(x)."""

    def logits(
        self,
        x: Float[Tensor, "B L D"],
        s: Float[Tensor, "B *tokens"],
        t: Float[Tensor, "B *tokens"],
        *,
        tau_s: Float[Tensor, "B *tokens"] | None = None,
        tau_t: Float[Tensor, "B *tokens"] | None = None,
    ) -> Float[Tensor, "B L V"]:
        return self.net(self.project(x), *self._taus(x, (s, t), (tau_s, tau_t)))

    def forward(
        self, x: Tensor, s: Tensor, t: Tensor, *, tau_s: Tensor | None = None, tau_t: Tensor | None = None
    ) -> Tensor:
        return self.logits(x, s, t, tau_s=tau_s, tau_t=tau_t)

    def probs(
        self,
        x: Float[Tensor, "B L D"],
        s: Float[Tensor, "B *tokens"],
        t: Float[Tensor, "B *tokens"],
        *,
        tau_s: Float[Tensor, "B *tokens"] | None = None,
        tau_t: Float[Tensor, "B *tokens"] | None = None,
        space: StateSpace | None = None,
    ) -> Float[Tensor, "B L K"]:
        """δ̂_{s,t}(x) through the chunked head (module docstring)."""
        return self._chunked(x, (s, t), (tau_s, tau_t), space)

    def __repr__(self) -> str:
        return f"NetTwoTimeDenoiser({type(self.net).__name__}, {self.flow!r}, space={self.space!r})"

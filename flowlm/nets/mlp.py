r"""A tiny MLP denoiser and two-time denoiser for toy laws (tests, the distiller harness, notebooks).

The whole sequence is flattened: ``x: [B, L, D] → [B, L·D]``. Times enter through Fourier
features of model time (``τ`` passed by the caller, else ``τ = flow.schedule.tau_of_t(t)``; the
flow is required: ``Flow.identity(interpolant, V)`` for τ = t)

.. math::
    \phi(\tau) = [\tau,\ \cos(\pi k\tau),\ \sin(\pi k\tau)]_{k=1..K},

each mapped by its own ``Linear → SiLU → Linear`` embedder to the hidden width and *added* to
the input projection, followed by ``depth`` ``SiLU → Linear`` layers and a ``Linear`` head to
``[B, L, V]`` logits. SiLU keeps the network smooth, so forward-mode JVPs and central
differences agree. :class:`TwoTimeMLP` has a second embedder for the end time ``t`` whose output
layer starts at zero, so a student built with :meth:`TwoTimeMLP.from_denoiser` satisfies
:math:`\hat\delta(x, s, t) = \hat D(x, s)` at step 0 (DESIGN §1).

Both are :class:`~flowlm.denoisers.Denoiser` / :class:`~flowlm.denoisers.TwoTimeDenoiser`
subclasses on a :class:`flowlm.Flow`: they take interpolation times and convert them to τ
themselves unless the caller passes ``tau=`` on, so they drop in wherever a denoiser is expected.
"""

from __future__ import annotations

import copy
import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

from flowlm.denoisers import Denoiser, TwoTimeDenoiser
from flowlm.flow import Flow

__all__ = ["MLPDenoiser", "TwoTimeMLP", "fourier_features"]


def fourier_features(tau: Float[Tensor, " B"], n_freq: int) -> Float[Tensor, "B F"]:
    """φ(τ) = [τ, cos(πkτ), sin(πkτ)] for k = 1..n_freq: ``[B, 1 + 2·n_freq]``."""
    k = torch.arange(1, n_freq + 1, device=tau.device, dtype=tau.dtype) * math.pi  # [K]
    ang = tau[:, None] * k[None, :]  # [B, K]
    return torch.cat((tau[:, None], ang.cos(), ang.sin()), dim=-1)


class _TimeEmbed(nn.Module):
    def __init__(self, n_freq: int, width: int) -> None:
        super().__init__()
        self.n_freq = n_freq
        self.mlp = nn.Sequential(nn.Linear(1 + 2 * n_freq, width), nn.SiLU(), nn.Linear(width, width))

    @property
    def last(self) -> nn.Linear:
        return self.mlp[2]

    def forward(self, tau: Float[Tensor, "B *tokens"]) -> Float[Tensor, "B W"]:
        """emb(τ) ``[B, W]``; per-token times ``[B, L]`` give the mean over positions of emb(τ_l)
        (equal to emb(τ) when every τ_l = τ; the state itself shows which positions are clean)."""
        if tau.ndim == 2:
            B, L = tau.shape
            return self.mlp(fourier_features(tau.reshape(B * L), self.n_freq)).view(B, L, -1).mean(1)
        return self.mlp(fourier_features(tau, self.n_freq))


class _Body(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.head = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = self.inp(x) + cond
        for layer in self.layers:
            h = h + layer(torch.nn.functional.silu(h))
        return self.head(torch.nn.functional.silu(h))


class _MLPNet(nn.Module):
    """Shared body of the toy MLP denoisers: flattened state + time conditioning -> logits.

    ``two_time`` subclasses get a second time embedder ``time_embed_t`` with a zeroed output layer
    (created before the body, so seeded initial weights do not depend on this class layout)."""

    two_time = False

    def __init__(
        self,
        vocab_size: int,
        length: int,
        flow: Flow,
        state_dim: int | None = None,
        hidden: int = 128,
        depth: int = 3,
        n_freq: int = 8,
    ) -> None:
        super().__init__()
        if not isinstance(flow, Flow):
            raise TypeError(
                f"{type(self).__name__}(vocab_size, length, flow): flow must be a flowlm.Flow (e.g. "
                f"Flow.decoding_error(Linear(), V) or Flow.identity(Linear(), V)), got {type(flow).__name__}"
            )
        self.vocab_size, self.length = int(vocab_size), int(length)
        self.flow = flow
        flow.check(self, "network")
        self.state_dim = int(state_dim) if state_dim is not None else self.vocab_size
        self.hidden, self.depth, self.n_freq = hidden, depth, n_freq
        self.time_embed = _TimeEmbed(n_freq, hidden)
        if self.two_time:
            self.time_embed_t = _TimeEmbed(n_freq, hidden)
            nn.init.zeros_(self.time_embed_t.last.weight)
            nn.init.zeros_(self.time_embed_t.last.bias)
        self.body = _Body(self.length * self.state_dim, self.length * self.vocab_size, hidden, depth)

    def _logits(self, x: Tensor, cond: Tensor) -> Tensor:
        """logits [B, L, V] of x [B, L, D] under the conditioning vector cond [B, H]."""
        if x.ndim != 3 or x.shape[1] != self.length or x.shape[2] != self.state_dim:
            raise ValueError(
                f"{type(self).__name__} expects x of shape [B, {self.length}, {self.state_dim}], got {tuple(x.shape)}"
            )
        return self.body(x.flatten(1), cond).view(x.shape[0], self.length, self.vocab_size)


    def _tau(self, t: Tensor, tau: Tensor | None) -> Tensor:
        return self.flow.schedule.tau_of_t(t) if tau is None else tau


class MLPDenoiser(_MLPNet, Denoiser):
    """``den(x: [B, L, D], t: [B], tau=None) -> logits [B, L, V]`` (a one-time FLM denoiser)."""

    def logits(
        self, x: Float[Tensor, "B L D"], t: Float[Tensor, "B *tokens"], *, tau: Float[Tensor, "B *tokens"] | None = None
    ) -> Float[Tensor, "B L V"]:
        return self._logits(x, self.time_embed(self._tau(t, tau)))  # cond [B, H]

    def forward(self, x: Tensor, t: Tensor, *, tau: Tensor | None = None) -> Tensor:
        return self.logits(x, t, tau=tau)


class TwoTimeMLP(_MLPNet, TwoTimeDenoiser):
    """``delta(x: [B, L, D], s: [B], t: [B]) -> logits [B, L, V]`` (a two-time denoiser).

    A second time embedder for t, with a zeroed output layer, is summed with the first."""

    two_time = True

    @classmethod
    def from_denoiser(cls, teacher: MLPDenoiser) -> "TwoTimeMLP":
        """A student with δ̂(x, s, t) = D̂(x, s) at step 0: the teacher's weights, t-embedder output zeroed."""
        student = cls(
            teacher.vocab_size, teacher.length, teacher.flow, teacher.state_dim, teacher.hidden, teacher.depth,
            teacher.n_freq,
        )
        student.time_embed.load_state_dict(copy.deepcopy(teacher.time_embed.state_dict()))
        student.body.load_state_dict(copy.deepcopy(teacher.body.state_dict()))
        student.time_embed_t.load_state_dict(copy.deepcopy(teacher.time_embed.state_dict()))
        nn.init.zeros_(student.time_embed_t.last.weight)
        nn.init.zeros_(student.time_embed_t.last.bias)
        return student.to(next(teacher.parameters()).device)

    def logits(
        self,
        x: Float[Tensor, "B L D"],
        s: Float[Tensor, "B *tokens"],
        t: Float[Tensor, "B *tokens"],
        *,
        tau_s: Float[Tensor, "B *tokens"] | None = None,
        tau_t: Float[Tensor, "B *tokens"] | None = None,
    ) -> Float[Tensor, "B L V"]:
        cond = self.time_embed(self._tau(s, tau_s)) + self.time_embed_t(self._tau(t, tau_t))  # [B, H]
        return self._logits(x, cond)

    def forward(
        self, x: Tensor, s: Tensor, t: Tensor, *, tau_s: Tensor | None = None, tau_t: Tensor | None = None
    ) -> Tensor:
        return self.logits(x, s, t, tau_s=tau_s, tau_t=tau_t)

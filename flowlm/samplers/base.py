r"""Sampler interface for flow language models.

A sampler integrates the probability-flow ODE :math:`\dot x = b_t(x)` from a noise state
:math:`x_0` over interpolation times :math:`t_0 = 0 < t_1 < \dots < t_{N-1}` and then returns the
denoiser's probabilities :math:`D_{t_{N-1}}(x_{N-1})` instead of stepping to :math:`t_N = 1`
(for ``Linear`` the Euler step to 1 is exactly that). Tokens are the per-position argmax.

Call: ``sampler(den, interpolant, schedule, x0, space=None) -> SamplerOutput``.

* ``den``: a :class:`~flowlm.denoisers.Denoiser` (network or exact oracle), called on states;
* ``schedule``: a :class:`~flowlm.interpolants.TimeSchedule`; steps lie on its uniform τ grid;
* ``x0``: the initial noise *state* ``[B, L, D]`` (``D = V`` for the one-hot space);
* ``space``: a :class:`~flowlm.states.StateSpace` (default ``OneHotSpace(den.vocab_size)``);
  every denoiser output enters the state update through ``space.embed``, so the same code runs
  on projected states ``h = x @ E``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from flowlm._checks import check_finite
from flowlm.denoisers import Denoiser
from flowlm.interpolants.base import Interpolant
from flowlm.interpolants.schedule import TimeSchedule
from flowlm.samplers.decode import argmax_decode
from flowlm.samplers.pf_ode import probs_from_logits
from flowlm.states import OneHotSpace, StateSpace

__all__ = ["SamplerOutput", "Sampler", "FixedStepSampler", "denoise", "denoise_embedded", "network_probs", "drift", "time_dtype"]


@dataclass
class SamplerOutput:
    """Result of a sampler call.

    ``probs``: final denoiser probabilities ``[B, L, V]``; ``tokens``: their argmax ``[B, L]``;
    ``nfe``: number of denoiser evaluations; ``times``: the interpolation times of the
    trajectory; ``trajectory``: states ``[B, L, D]`` at those times (when requested).
    """

    probs: Float[Tensor, "B L V"]
    tokens: Int[Tensor, "B L"]
    nfe: int
    times: Float[Tensor, " T"] | None = None
    trajectory: list[Tensor] | None = None


def time_dtype(x: Tensor) -> torch.dtype:
    """Times are kept in at least float32, whatever the state's dtype (a bf16 grid would collapse near 1)."""
    return torch.promote_types(x.dtype, torch.float32)


def network_probs(fn: Any, x: Tensor, *times: Tensor, space: StateSpace | None = None) -> Tensor:
    """softmax(fn(x, *times)) ``[B, L, V]`` in the dtype of ``x``, or ``space.embed`` of it
    ``[B, L, D]``; times are ``[B]``. Goes through ``fn.chunked_probs`` when the denoiser (or
    two-time denoiser) has it, so network samplers hold no ``[B, L, V]`` logits
    (:mod:`flowlm.nets.wrappers`)."""
    chunked = getattr(fn, "chunked_probs", None)
    if chunked is not None:
        out = chunked(x, *times, space=space)
        return out.to(x.dtype) if space is None else out
    probs = probs_from_logits(fn(x, *times), x.dtype)
    return probs if space is None else space.embed(probs)


def denoise(den: Denoiser, x: Tensor, t: Tensor) -> Tensor:
    """D_t(x) = softmax(den(x, t)) in the dtype of ``x``; ``t`` a scalar tensor or ``[B]``."""
    return network_probs(den, x, t.expand(x.shape[0]))


def denoise_embedded(den: Denoiser, x: Tensor, t: Tensor, space: StateSpace) -> Tensor:
    """space.embed(D_t(x)) ``[B, L, D]``: what a state update needs (no ``[B, L, V]`` tensor on the
    projected space when the denoiser offers ``chunked_probs``)."""
    return network_probs(den, x, t.expand(x.shape[0]), space=space)


def drift(interpolant: Interpolant, x: Tensor, t: Tensor, embedded: Tensor) -> Tensor:
    """b_t(x) = (α'/α)·x + αρ'·embed(D) for a scalar or ``[B]`` time ``t < 1`` (in the dtype of x)."""
    return interpolant.velocity_from_denoiser(x, t.expand(x.shape[0]), embedded).to(x.dtype)


def resolve_space(den: Denoiser, space: StateSpace | None) -> StateSpace:
    """The default one-hot space of the denoiser's vocabulary, or ``space`` after a consistency check."""
    if space is None:
        return OneHotSpace(den.vocab_size)
    if space.vocab_size != den.vocab_size:
        raise ValueError(
            f"state space vocabulary ({space.vocab_size}) differs from the denoiser's ({den.vocab_size})"
        )
    return space


def check_initial_state(x0: Tensor, den: Denoiser, space: StateSpace) -> None:
    """``x0`` must be a finite floating ``[B, L, D]`` state (D = V in the one-hot space)."""
    if not torch.is_tensor(x0) or not torch.is_floating_point(x0):
        raise TypeError(f"x0 must be a floating-point tensor [batch, length, dim], got {getattr(x0, 'dtype', type(x0))}")
    if x0.ndim != 3:
        raise ValueError(f"x0 must have shape [batch, length, dim], got {tuple(x0.shape)}")
    if isinstance(space, OneHotSpace) and x0.shape[-1] != den.vocab_size:
        raise ValueError(
            f"x0 has last dimension {x0.shape[-1]} but the denoiser's vocabulary is {den.vocab_size}; "
            "draw it with space.noise(batch, length)"
        )
    check_finite("x0", x0)


class Sampler(ABC):
    """Abstract FLM sampler: integrate up to the last interior time, then return D there."""

    @abstractmethod
    def times(self, schedule: TimeSchedule, interpolant: Interpolant, x0: Tensor) -> Float[Tensor, " T"]:
        """Interpolation times t_0 = 0 < … < t_end < 1 visited before the final denoiser call."""

    @abstractmethod
    def integrate(
        self,
        den: Denoiser,
        interpolant: Interpolant,
        times: Float[Tensor, " T"],
        x: Float[Tensor, "B L D"],
        space: StateSpace | None = None,
        trajectory: list[Tensor] | None = None,
    ) -> tuple[Float[Tensor, "B L D"], int]:
        """Solve the flow from ``times[0]`` to ``times[-1] < 1``; returns (state, nfe).

        States at every entry of ``times`` are appended to ``trajectory`` when it is a list.
        """

    def __call__(
        self,
        den: Denoiser,
        interpolant: Interpolant,
        schedule: TimeSchedule,
        x0: Float[Tensor, "B L D"],
        space: StateSpace | None = None,
        *,
        return_trajectory: bool = False,
    ) -> SamplerOutput:
        space = resolve_space(den, space)
        check_initial_state(x0, den, space)
        times = self.times(schedule, interpolant, x0)
        traj: list[Tensor] | None = [] if return_trajectory else None
        with torch.no_grad():
            x, nfe = self.integrate(den, interpolant, times, x0, space, traj)
            probs = denoise(den, x, times[-1])  # D_{t_end}(x): the step to t = 1
        return SamplerOutput(probs, argmax_decode(probs), nfe + 1, times if return_trajectory else None, traj)


class FixedStepSampler(Sampler):
    """A one-step method applied on the τ grid ``schedule.grid(n_steps)``: ``n_steps − 1`` steps
    between t_0 = 0 and t_{N−1}, then D_{t_{N−1}}."""

    def __init__(self, n_steps: int) -> None:
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        self.n_steps = n_steps

    def times(self, schedule: TimeSchedule, interpolant: Interpolant, x0: Tensor) -> Float[Tensor, " T"]:
        return schedule.grid(self.n_steps, device=x0.device, dtype=time_dtype(x0))[:-1]

    @abstractmethod
    def step(
        self, den: Denoiser, interpolant: Interpolant, space: StateSpace, x: Tensor, t: Tensor, t_next: Tensor
    ) -> tuple[Tensor, int]:
        """One step x_t → x_{t_next} (scalar times, t_next < 1); returns (state, nfe)."""

    def integrate(
        self,
        den: Denoiser,
        interpolant: Interpolant,
        times: Float[Tensor, " T"],
        x: Float[Tensor, "B L D"],
        space: StateSpace | None = None,
        trajectory: list[Tensor] | None = None,
    ) -> tuple[Float[Tensor, "B L D"], int]:
        space = resolve_space(den, space)
        if times.ndim != 1 or bool((times.diff() <= 0).any()) or float(times[0]) < 0 or float(times[-1]) >= 1:
            raise ValueError("times must be a strictly increasing 1-D tensor in [0, 1) (the final step to 1 is D)")
        nfe = 0
        if trajectory is not None:
            trajectory.append(x)
        for i in range(times.shape[0] - 1):
            x_next, n = self.step(den, interpolant, space, x, times[i], times[i + 1])
            x = x_next.to(x.dtype)
            nfe += n
            if trajectory is not None:
                trajectory.append(x)
        return x, nfe

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_steps={self.n_steps})"

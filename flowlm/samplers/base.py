r"""One sampler hierarchy for FLM and FMLM sampling.

Every sampler is called the same way::

    out = sampler(model_fn, flow, x0, *, space=None, prompt=None, return_trajectory=False, generator=None)

* ``model_fn``: a :class:`~flowlm.denoisers.Denoiser` for the FLM samplers (network or exact
  oracle), a :class:`~flowlm.denoisers.TwoTimeDenoiser` for :class:`~flowlm.flowmaps.FlowMapSampler`;
  it must have been built for ``flow`` (:meth:`flowlm.Flow.check`);
* ``flow``: a :class:`flowlm.Flow`; steps lie on the uniform τ grid of its schedule, times kept in
  at least float32;
* ``x0``: the initial noise *state* ``[B, L, D]`` (``D = V`` for the one-hot space);
* ``space``: a :class:`~flowlm.states.StateSpace` (default: the one-hot space of the model's
  vocabulary); every model output enters the state update through ``space.embed``, so the same
  code runs on projected states ``h = x @ E``;
* ``prompt``: a :class:`flowlm.Prompt` (``tokens [B, L]``, ``mask [B, L]``): masked positions are
  held clean (t = τ = 1, clean state re-imposed at every model call; :mod:`flowlm.prompt`), and
  the returned probabilities and tokens equal the prompt there. Every sampler supports it.

and returns ``SamplerOutput(probs, tokens, nfe, times, trajectory)``. Each sampler declares its
``order``: the measured convergence order of ``probs`` in the τ step ``1/N`` against an exact
oracle (``tests/test_samplers.py`` reads the attribute). The FLM samplers stop at the last interior
time :math:`t_{N-1}` and return :math:`D_{t_{N-1}}(x)` (for ``Linear`` the Euler step to 1 is exactly
that); this final denoiser step is first order, so every FLM sampler has ``order = 1`` whatever its
interior method, whose order is ``interior_order`` (DESIGN §1).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from flowlm._checks import check_finite
from flowlm.denoisers import Denoiser, TwoTimeDenoiser
from flowlm.flow import Flow
from flowlm.samplers.decode import argmax_decode
from flowlm.states import OneHotSpace, StateSpace

__all__ = ["SamplerOutput", "Sampler", "FLMSampler", "FixedStepSampler", "drift", "time_dtype"]


@dataclass
class SamplerOutput:
    """Result of a sampler call.

    ``probs``: final probabilities ``[B, L, V]``; ``tokens``: their argmax ``[B, L]``;
    ``nfe``: number of network (or oracle) evaluations: the sampler's calls of ``model_fn`` times
    ``model_fn.calls_per_eval`` (default 1; 2 for a guided denoiser that calls a model and a weak
    model, :mod:`flowlm.guidance`); ``times``: the interpolation times of the
    trajectory and ``trajectory``: the states ``[B, L, D]`` at those times (when requested).
    """

    probs: Float[Tensor, "B L V"]
    tokens: Int[Tensor, "B L"]
    nfe: int
    times: Float[Tensor, " T"] | None = None
    trajectory: list[Tensor] | None = None


def time_dtype(x: Tensor) -> torch.dtype:
    """Times are kept in at least float32, whatever the state's dtype (a bf16 grid would collapse near 1)."""
    return torch.promote_types(x.dtype, torch.float32)


def drift(flow: Flow, x: Tensor, t: Tensor, embedded: Tensor) -> Tensor:
    """b_t(x) = (α'/α)·x + αρ'·embed(D) for a scalar or ``[B]`` time ``t < 1`` (in the dtype of x)."""
    return flow.interpolant.velocity_from_denoiser(x, t.expand(x.shape[0]), embedded).to(x.dtype)


def _resolve_space(model_fn: Any, flow: Flow, space: StateSpace | None) -> StateSpace:
    if space is None:
        return OneHotSpace(model_fn.vocab_size)
    if space.vocab_size != model_fn.vocab_size:
        raise ValueError(
            f"state space vocabulary ({space.vocab_size}) differs from the model's ({model_fn.vocab_size})"
        )
    return space


def _check_initial_state(x0: Any, vocab_size: int, space: StateSpace) -> None:
    """``x0`` must be a finite floating ``[B, L, D]`` state (D = V in the one-hot space)."""
    if not torch.is_tensor(x0) or not torch.is_floating_point(x0):
        raise TypeError(f"x0 must be a floating-point tensor [batch, length, dim], got {getattr(x0, 'dtype', type(x0))}")
    if x0.ndim != 3:
        raise ValueError(f"x0 must have shape [batch, length, dim], got {tuple(x0.shape)}")
    if isinstance(space, OneHotSpace) and x0.shape[-1] != vocab_size:
        raise ValueError(
            f"x0 has last dimension {x0.shape[-1]} but the model's vocabulary is {vocab_size}; "
            "draw it with space.noise(batch, length)"
        )
    check_finite("x0", x0)


class Sampler(ABC):
    """Abstract sampler: validation shared by every sampler, then :meth:`run`.

    Class attributes: ``order`` (convergence order of ``probs`` in the τ step, ``inf`` when exact
    for an exact model) and ``expects`` (the model class: Denoiser or TwoTimeDenoiser).
    """

    order: ClassVar[float]
    expects: ClassVar[type] = Denoiser

    def __call__(
        self,
        model_fn: Denoiser | TwoTimeDenoiser,
        flow: Flow,
        x0: Float[Tensor, "B L D"],
        *,
        space: StateSpace | None = None,
        prompt: Any = None,
        return_trajectory: bool = False,
        generator: torch.Generator | None = None,
    ) -> SamplerOutput:
        if not isinstance(flow, Flow):
            raise TypeError(
                f"{type(self).__name__} takes a flowlm.Flow as its second argument (e.g. "
                f"Flow.decoding_error(Linear(), V)), got {type(flow).__name__}"
            )
        if not isinstance(model_fn, self.expects):
            raise TypeError(
                f"{type(self).__name__} samples with a {self.expects.__name__} (subclass "
                f"flowlm.denoisers.{self.expects.__name__} and implement logits), got {type(model_fn).__name__}"
            )
        flow.check(model_fn, "model")
        space = _resolve_space(model_fn, flow, space)
        _check_initial_state(x0, model_fn.vocab_size, space)
        traj: list[Tensor] | None = [] if return_trajectory else None
        if prompt is not None:
            return self._run_prompted(model_fn, flow, x0, space, prompt, traj, generator)
        with torch.no_grad():
            out = self.run(model_fn, flow, x0, space, traj, generator)
        out.nfe *= int(getattr(model_fn, "calls_per_eval", 1))  # e.g. 2 for autoguidance
        if not return_trajectory:
            out.times = None
        return out

    def _run_prompted(
        self, model_fn: Any, flow: Flow, x0: Tensor, space: StateSpace, prompt: Any,
        traj: list[Tensor] | None, generator: torch.Generator | None,
    ) -> SamplerOutput:
        """Sampling with clean positions (:mod:`flowlm.prompt`): the model sees the clean state and
        t = τ = 1 at the masked positions; the states, probabilities and tokens returned hold the prompt."""
        from flowlm.prompt import Prompt, prompted

        if not isinstance(prompt, Prompt):
            raise TypeError(
                f"prompt must be a flowlm.Prompt (e.g. Prompt.prefix(tokens, length)), got {type(prompt).__name__}"
            )
        B, L = x0.shape[0], x0.shape[1]
        prompt = prompt.validate(model_fn.vocab_size, B, L).to(x0.device)
        wrapped = prompted(model_fn, prompt, space, x0.dtype)
        x0 = prompt.hold(x0, wrapped.clean)
        with torch.no_grad():
            out = self.run(wrapped, flow, x0, space, traj, generator)
        one_hot = torch.nn.functional.one_hot(prompt.tokens, model_fn.vocab_size).to(out.probs.dtype)
        out.probs = torch.where(prompt.mask[..., None], one_hot, out.probs)
        out.tokens = torch.where(prompt.mask, prompt.tokens, out.tokens)
        if out.trajectory is not None:
            out.trajectory = [prompt.hold(x, wrapped.clean) for x in out.trajectory]
        else:
            out.times = None
        return out

    @abstractmethod
    def run(
        self,
        model_fn: Any,
        flow: Flow,
        x0: Float[Tensor, "B L D"],
        space: StateSpace,
        trajectory: list[Tensor] | None,
        generator: torch.Generator | None,
    ) -> SamplerOutput:
        """The sampler proper, on validated arguments, under ``torch.no_grad()``."""


class FLMSampler(Sampler):
    """Integrate the probability-flow ODE up to the last interior time t_end < 1, then return
    D_{t_end}(x). ``order = 1`` (the final denoiser step); ``interior_order`` is the order of the
    integration up to t_end."""

    order: ClassVar[float] = 1
    interior_order: ClassVar[float | None] = None

    @abstractmethod
    def times(self, flow: Flow, x0: Tensor) -> tuple[Float[Tensor, " T"], Float[Tensor, " T"] | None]:
        """``(t, tau)``: interpolation times t_0 = 0 < … < t_end < 1 visited before the final
        denoiser call, and their model times (None when not on a τ grid)."""

    @abstractmethod
    def integrate(
        self,
        den: Denoiser,
        flow: Flow,
        times: Float[Tensor, " T"],
        x: Float[Tensor, "B L D"],
        space: StateSpace,
        trajectory: list[Tensor] | None = None,
        taus: Float[Tensor, " T"] | None = None,
    ) -> tuple[Float[Tensor, "B L D"], int]:
        """Solve the flow from ``times[0]`` to ``times[-1] < 1``; returns (state, nfe). States at
        every entry of ``times`` are appended to ``trajectory`` when it is a list."""

    def run(self, den, flow, x0, space, trajectory, generator) -> SamplerOutput:
        times, taus = self.times(flow, x0)
        x, nfe = self.integrate(den, flow, times, x0, space, trajectory, taus)
        B = x.shape[0]
        tau_end = None if taus is None else taus[-1].expand(B)
        probs = den.probs(x, times[-1].expand(B), tau=tau_end)  # D_{t_end}(x): the step to t = 1
        return SamplerOutput(probs, argmax_decode(probs), nfe + 1, times, trajectory)


class FixedStepSampler(FLMSampler):
    """A one-step method applied on the uniform τ grid of ``n_steps`` steps: ``n_steps − 1`` steps
    between t_0 = 0 and t_{N−1}, then D_{t_{N−1}}."""

    def __init__(self, n_steps: int) -> None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        self.n_steps = n_steps

    def times(self, flow: Flow, x0: Tensor) -> tuple[Tensor, Tensor]:
        t, tau = flow.grid(self.n_steps, device=x0.device, dtype=time_dtype(x0))
        return t[:-1], tau[:-1]

    @abstractmethod
    def step(
        self, den: Denoiser, flow: Flow, space: StateSpace, x: Tensor, t: Tensor, t_next: Tensor,
        tau: Tensor | None, tau_next: Tensor | None,
    ) -> tuple[Tensor, int]:
        """One step x_t → x_{t_next} (scalar times, t_next < 1); returns (state, nfe)."""

    def integrate(self, den, flow, times, x, space, trajectory=None, taus=None):
        if times.ndim != 1 or bool((times.diff() <= 0).any()) or float(times[0]) < 0 or float(times[-1]) >= 1:
            raise ValueError("times must be a strictly increasing 1-D tensor in [0, 1) (the final step to 1 is D)")
        B = x.shape[0]
        nfe = 0
        if trajectory is not None:
            trajectory.append(x)
        for i in range(times.shape[0] - 1):
            tau, tau_next = (None, None) if taus is None else (taus[i].expand(B), taus[i + 1].expand(B))
            x_next, n = self.step(den, flow, space, x, times[i], times[i + 1], tau, tau_next)
            x = x_next.to(x.dtype)
            nfe += n
            if trajectory is not None:
                trajectory.append(x)
        return x, nfe

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_steps={self.n_steps})"

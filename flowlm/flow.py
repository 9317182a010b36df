r"""The one composing object: an interpolant and its t ↔ τ schedule.

A :class:`Flow` is what the samplers, the flow maps, the distillers, the time-pair sampler and
the network wrappers take wherever an interpolant and a schedule travel together (DESIGN §4)::

    flow = Flow.decoding_error(Linear(), vocab_size=V)      # τ = decoding-error time of V tokens
    path = flow.noisy(tokens, tau=tau)                      # PathSample(x0, x1, t, tau, xt)
    out = EulerSampler(16)(oracle, flow, x0)                # SamplerOutput(probs, tokens, nfe, ...)

:meth:`Flow.noisy` is the single place where the noisy state
:math:`x_t = \alpha(t)\,x_0 + \beta(t)\,x_1` is built. Nothing falls back silently to ``Linear()``
or to an identity schedule: ``Flow(interpolant, IdentitySchedule())`` says τ = t explicitly.
:meth:`Flow.check` refuses a denoiser, an oracle or a network built for another interpolant,
schedule or vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from flowlm.interpolants.base import FunctionInterpolant, Interpolant, expand_time
from flowlm.interpolants.decoding_error import DecodingErrorSchedule
from flowlm.interpolants.schedule import IdentitySchedule, TimeSchedule
from flowlm.states import OneHotSpace, StateSpace

__all__ = ["Flow", "PathSample", "same_interpolant", "same_schedule"]


def same_interpolant(a: Interpolant, b: Interpolant) -> bool:
    """True when ``a`` and ``b`` are the same path: the same object, or two instances of one
    built-in class (``Linear() == Linear()``). Interpolants made from user functions compare by
    identity (two lambdas cannot be compared)."""
    if a is b:
        return True
    if type(a) is not type(b) or isinstance(a, FunctionInterpolant):
        return False
    return repr(a) == repr(b)


def same_schedule(a: TimeSchedule, b: TimeSchedule) -> bool:
    """True when ``a`` and ``b`` are the same t ↔ τ map (same object, or same class, parameters
    and interpolant)."""
    if a is b:
        return True
    if type(a) is not type(b) or repr(a) != repr(b):
        return False
    ia, ib = getattr(a, "interpolant", None), getattr(b, "interpolant", None)
    return ia is None or ib is None or same_interpolant(ia, ib)


@dataclass(frozen=True)
class PathSample:
    """A draw from the path: ``x0`` noise, ``x1`` clean data (a state of the space), times ``t``
    (interpolation) and ``tau`` (model) of shape ``[B]`` or ``[B, L]``, and
    ``xt = α(t)·x0 + β(t)·x1``; states are ``[B, L, D]`` (``D = V`` in the one-hot space)."""

    x0: Float[Tensor, "B L D"]
    x1: Float[Tensor, "B L D"]
    t: Tensor
    tau: Tensor
    xt: Float[Tensor, "B L D"]


@dataclass(frozen=True, eq=False)
class Flow:
    r"""An interpolant (α, β) and its schedule τ(t), frozen.

    Args:
        interpolant: the affine path :math:`x_t = \alpha(t)x_0 + \beta(t)x_1`.
        schedule: the strictly increasing map t ↔ τ that networks are conditioned on.
        vocab_size: V, when known (taken from a :class:`DecodingErrorSchedule`); used for the
            default one-hot space of :meth:`noisy` and to refuse components of another vocabulary.
    """

    interpolant: Interpolant
    schedule: TimeSchedule
    vocab_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.interpolant, Interpolant):
            raise TypeError(
                f"Flow(interpolant, schedule): interpolant must be a flowlm Interpolant (Linear(), Cosine(), "
                f"Interpolant.from_functions(alpha, beta)), got {type(self.interpolant).__name__}"
            )
        if not isinstance(self.schedule, TimeSchedule):
            raise TypeError(
                f"Flow(interpolant, schedule): schedule must be a TimeSchedule (IdentitySchedule(), "
                f"DecodingErrorSchedule(V, interpolant)), got {type(self.schedule).__name__}"
            )
        sched_interp = getattr(self.schedule, "interpolant", None)
        if sched_interp is not None and not same_interpolant(sched_interp, self.interpolant):
            raise ValueError(
                f"the schedule {self.schedule!r} was built for the interpolant {sched_interp!r}, not for "
                f"{self.interpolant!r}; use Flow.decoding_error(interpolant, vocab_size)"
            )
        sched_vocab = getattr(self.schedule, "vocab_size", None)
        if self.vocab_size is None and sched_vocab is not None:
            object.__setattr__(self, "vocab_size", int(sched_vocab))
        elif self.vocab_size is not None:
            if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size < 2:
                raise ValueError(f"vocab_size must be an integer >= 2, got {self.vocab_size!r}")
            if sched_vocab is not None and int(sched_vocab) != self.vocab_size:
                raise ValueError(f"vocab_size {self.vocab_size} differs from the schedule's {sched_vocab}")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def decoding_error(cls, interpolant: Interpolant, vocab_size: int) -> "Flow":
        """The reference flow: τ = the decoding-error time of ``vocab_size`` tokens under ``interpolant``."""
        return cls(interpolant, DecodingErrorSchedule(vocab_size, interpolant))

    @classmethod
    def identity(cls, interpolant: Interpolant, vocab_size: int | None = None) -> "Flow":
        """τ = t (no schedule); for toy networks and ablations."""
        return cls(interpolant, IdentitySchedule(), vocab_size)

    @classmethod
    def from_names(cls, interpolant: str, schedule: str, vocab_size: int) -> "Flow":
        """The flow a run config names: ``interpolant`` from :data:`flowlm.interpolants.INTERPOLANTS`,
        ``schedule`` ``"decoding_error"`` (τ = decoding-error time, the paper's) or ``"uniform"`` (τ = t)."""
        from flowlm.interpolants import interpolant_from_name

        path = interpolant_from_name(interpolant)
        if schedule == "decoding_error":
            return cls.decoding_error(path, vocab_size)
        if schedule == "uniform":
            return cls.identity(path, vocab_size)
        raise ValueError(f"unknown schedule {schedule!r}; choose decoding_error or uniform")

    # ------------------------------------------------------------------ times
    def tau_of_t(self, t: Tensor) -> Tensor:
        """τ(t) (any shape)."""
        return self.schedule.tau_of_t(t)

    def t_of_tau(self, tau: Tensor) -> Tensor:
        """t(τ) (any shape)."""
        return self.schedule.t_of_tau(tau)

    def t_of_tau_differentiable(self, tau: Tensor) -> Tensor:
        r"""t(τ) whose derivative in τ (autograd, forward or reverse mode) is exact:
        :math:`t = t_0 + (\tau - \tau(t_0))/\tau'(t_0)` with :math:`t_0 = t(\tau)` detached (one
        Newton step: the value is t_0 up to the inverse's error, the tangent is :math:`1/\tau'(t)`).
        Where τ'(t_0) = 0 (an end of a flat schedule) the tangent is 0."""
        t0 = self.schedule.t_of_tau(tau.detach()).detach()
        slope = self.schedule.dtau_dt(t0).detach()
        inv = torch.where(slope > 0, 1.0 / slope.clamp(min=torch.finfo(slope.dtype).tiny), torch.zeros_like(slope))
        return t0 + (tau - tau.detach()) * inv

    def grid(
        self, n_steps: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[Float[Tensor, " n_plus_1"], Float[Tensor, " n_plus_1"]]:
        """``(t, tau)``: the uniform τ grid τ_i = i/N and its interpolation times, t_0 = 0, t_N = 1
        exactly; in ``dtype`` promoted to at least float32 (a bf16 grid has duplicate times)."""
        dtype = torch.promote_types(dtype, torch.float32)
        t = self.schedule.grid(n_steps, device=device, dtype=dtype)
        tau = torch.linspace(0.0, 1.0, n_steps + 1, device=device, dtype=dtype)
        return t, tau

    # ------------------------------------------------------------------ the path
    def noisy(
        self,
        tokens: Int[Tensor, "B L"],
        *,
        tau: Tensor | None = None,
        t: Tensor | None = None,
        space: StateSpace | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> PathSample:
        r"""Draw :math:`x_t = \alpha(t)x_0 + \beta(t)x_1` for clean ``tokens`` ``[B, L]``.

        Give exactly one of ``tau`` (model time; then t = t(τ)) or ``t`` (interpolation time; then
        τ = τ(t)), each ``[B]`` or ``[B, L]``. ``x1 = space.one_hot(tokens)``,
        ``x0 = space.noise(B, L)``; ``space`` defaults to the one-hot space of the flow's vocabulary.
        States come out in ``dtype``; the times keep their own dtype.
        """
        if (tau is None) == (t is None):
            raise ValueError("flow.noisy needs exactly one of tau= (model time) or t= (interpolation time)")
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape [batch, length], got {tuple(tokens.shape)}")
        B, L = tokens.shape
        given = tau if tau is not None else t
        if not torch.is_tensor(given) or given.shape not in ((B,), (B, L)):
            raise ValueError(
                f"times must have shape [{B}] (one per sequence) or [{B}, {L}] (one per token), got "
                f"{tuple(given.shape) if torch.is_tensor(given) else type(given).__name__}"
            )
        if tau is not None:
            t = self.schedule.t_of_tau(tau)
        else:
            tau = self.schedule.tau_of_t(t)
        space = self.space(space)
        x1 = space.one_hot(tokens).to(dtype)  # [B, L, D]
        x0 = space.noise(B, L, device=tokens.device, dtype=dtype, generator=generator)  # [B, L, D]
        a = expand_time(self.interpolant.alpha(t), x1).to(dtype)
        b = expand_time(self.interpolant.beta(t), x1).to(dtype)
        return PathSample(x0=x0, x1=x1, t=t, tau=tau, xt=a * x0 + b * x1)

    def space(self, space: StateSpace | None = None) -> StateSpace:
        """``space``, or the one-hot space of the flow's vocabulary (an error when V is unknown)."""
        if space is not None:
            if self.vocab_size is not None and space.vocab_size != self.vocab_size:
                raise ValueError(
                    f"the state space has vocabulary {space.vocab_size} but the flow has {self.vocab_size}"
                )
            return space
        if self.vocab_size is None:
            raise ValueError(
                "this flow does not know its vocabulary: pass space=OneHotSpace(V), or build the flow with "
                "Flow.decoding_error(interpolant, V) / Flow(interpolant, schedule, vocab_size=V)"
            )
        return OneHotSpace(self.vocab_size)

    # ------------------------------------------------------------------ compatibility
    def check(self, component: Any, what: str = "component") -> None:
        """Raise ``ValueError`` if ``component`` (a denoiser, oracle, network wrapper or two-time
        denoiser) was built for another interpolant, schedule or vocabulary than this flow."""
        name = type(component).__name__
        vocab = getattr(component, "vocab_size", None)
        if vocab is not None and self.vocab_size is not None and int(vocab) != self.vocab_size:
            raise ValueError(
                f"the {what} ({name}) has vocabulary {vocab} but the flow has {self.vocab_size}; "
                "build the flow with the component's vocabulary"
            )
        own = getattr(component, "flow", None)
        if isinstance(own, Flow):
            if not same_interpolant(own.interpolant, self.interpolant) or not same_schedule(own.schedule, self.schedule):
                raise ValueError(
                    f"the {what} ({name}) was built for {own!r}, not for {self!r}; pass the same Flow to both"
                )
            return
        interp = getattr(component, "interpolant", None)
        if isinstance(interp, Interpolant) and not same_interpolant(interp, self.interpolant):
            raise ValueError(
                f"the {what} ({name}) was built for the interpolant {interp!r}, but the flow uses "
                f"{self.interpolant!r}; build it with the flow's interpolant"
            )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Flow):
            return NotImplemented
        return (
            same_interpolant(self.interpolant, other.interpolant)
            and same_schedule(self.schedule, other.schedule)
            and self.vocab_size == other.vocab_size
        )

    def __hash__(self) -> int:
        return hash((type(self.interpolant), type(self.schedule), self.vocab_size))

    def __repr__(self) -> str:
        return f"Flow({self.interpolant!r}, {self.schedule!r})"

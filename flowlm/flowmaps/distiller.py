r"""The distiller interface shared by the semigroup, Lagrangian and Eulerian objectives.

A distiller trains a student two-time denoiser :math:`\hat\delta_\theta(x, s, t)` from a frozen
teacher denoiser :math:`\hat D` (or from data alone: self-distillation). One call of
:meth:`Distiller.loss` on a batch of clean tokens ``[B, L]``:

1. draws per-sequence times ``(s, u, t)`` with the shared :class:`TimePairSampler`;
2. noises the data at the start time: ``x1 = space.one_hot(tokens)``, ``x0 = space.noise(B, L)``,
   :math:`x_s = \alpha_s x_0 + \beta_s x_1`;
3. **diagonal rows** (s = t): CE of :math:`\hat\delta(x_t, t, t)` against the teacher's
   probabilities :math:`\hat D_t(x_t)` (or the data one-hot when ``teacher=None``);
4. **off-diagonal rows** (s < t): CE of :math:`\hat\delta_{s,t}(x_s)` against a stop-gradient
   target :math:`\bar\delta` that each subclass defines (:meth:`Distiller.target`), computed under
   ``torch.no_grad()`` with the *online* student (no EMA copy; the student stays in whatever
   mode it is in, i.e. train mode during training); targets that can leave the simplex go
   through the named ``projection`` policy (:mod:`flowlm.flowmaps.projections`).

The loss is the mean over the batch of the per-sequence losses (each the mean over positions),
so the diagonal/off-diagonal balance is set by the time sampler's fractions.

In self-distillation (``teacher=None``) every place where a target needs :math:`\hat D_t` uses the
student's own diagonal :math:`\hat\delta(x, t, t)` (under ``no_grad``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from flowlm.denoisers import Denoiser, denoised_probs
from flowlm.flowmaps.jvp import ExactJVP, JVPBackend
from flowlm.flowmaps.projections import PROJECTIONS, soft_cross_entropy, target_loss
from flowlm.flowmaps.time_pairs import TimePairs, TimePairSampler
from flowlm.flowmaps.two_time import TwoTimeDenoiser, delta_probs
from flowlm.interpolants.base import Interpolant
from flowlm.interpolants.schedule import TimeSchedule
from flowlm.states import OneHotSpace, StateSpace

__all__ = ["Distiller", "Target", "Teacher"]


@dataclass
class Target:
    """A stop-gradient target for the off-diagonal rows.

    ``probs``: :math:`\\bar\\delta` ``[b, L, V]`` (may leave the simplex); ``weight``: per-row loss
    weight ``[b]`` or None (all ones); ``n_jvp``, ``n_forward``: JVP calls and plain network
    passes (student + teacher) spent on it.
    """

    probs: Tensor
    weight: Tensor | None = None
    n_jvp: int = 0
    n_forward: int = 0


class Teacher:
    r"""The frozen teacher :math:`\hat D_t(x)` as the distillers see it.

    Wraps a :class:`~flowlm.denoisers.Denoiser` (put in eval mode, parameters frozen), or, when
    ``denoiser`` is None, the student's diagonal :math:`\hat\delta(x, t, t)` (self-distillation).
    All calls run under ``torch.no_grad()``.
    """

    def __init__(self, denoiser: Denoiser | None) -> None:
        self.denoiser = denoiser
        if isinstance(denoiser, nn.Module):
            denoiser.eval()
            denoiser.requires_grad_(False)

    @torch.no_grad()
    def probs(
        self, student: TwoTimeDenoiser, x: Float[Tensor, "B L D"], t: Float[Tensor, " B"]
    ) -> Float[Tensor, "B L V"]:
        """D̂_t(x) on the simplex."""
        if self.denoiser is None:
            return delta_probs(student, x, t, t)
        return denoised_probs(self.denoiser, x, t)

    @torch.no_grad()
    def velocity(
        self,
        student: TwoTimeDenoiser,
        interpolant: Interpolant,
        space: StateSpace,
        x: Float[Tensor, "B L D"],
        t: Float[Tensor, " B"],
    ) -> Float[Tensor, "B L D"]:
        """b_t(x) = (α'_t/α_t)·x + α_tρ'_t·embed(D̂_t(x)) in the state space; requires t < 1."""
        return interpolant.velocity_from_denoiser(x, t, space.embed(self.probs(student, x, t)))


class Distiller(ABC):
    """Abstract flow-map distiller; subclasses define the off-diagonal :meth:`target`.

    Args:
        interpolant: the affine interpolant (α, β) of the teacher's flow.
        schedule: t ↔ τ map used by the default time-pair sampler.
        teacher: frozen FLM denoiser, or None for self-distillation.
        pairs: time-pair sampler (default ``TimePairSampler(schedule)``, the reference law).
        projection: policy for targets that leave the simplex (None = the target is on it).
        jvp: JVP backend for the derivative-based targets (default :class:`ExactJVP`).
    """

    name: str = "distiller"

    def __init__(
        self,
        interpolant: Interpolant,
        schedule: TimeSchedule,
        teacher: Denoiser | None = None,
        pairs: TimePairSampler | None = None,
        projection: str | None = None,
        jvp: JVPBackend | None = None,
    ) -> None:
        if projection is not None and projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS} (or None for on-simplex targets), got {projection!r}")
        self.interpolant = interpolant
        self.schedule = schedule
        self.teacher = Teacher(teacher)
        self.pairs = pairs if pairs is not None else TimePairSampler(schedule)
        self.projection = projection
        self.jvp = jvp if jvp is not None else ExactJVP()

    # ------------------------------------------------------------------ subclass API
    def student_times(
        self, s: Float[Tensor, " b"], t: Float[Tensor, " b"]
    ) -> tuple[Float[Tensor, " b"], Float[Tensor, " b"]]:
        """Times at which the student is fitted on off-diagonal rows (default: as drawn)."""
        return s, t

    @abstractmethod
    def target(
        self,
        student: TwoTimeDenoiser,
        x: Float[Tensor, "b L D"],
        s: Float[Tensor, " b"],
        u: Float[Tensor, " b"],
        t: Float[Tensor, " b"],
        space: StateSpace,
    ) -> Target:
        """The stop-gradient target δ̄ for rows with s < t (called under ``torch.no_grad()``)."""

    # ------------------------------------------------------------------ the objective
    def noisy_state(
        self,
        tokens: Int[Tensor, "B L"],
        s: Float[Tensor, " B"],
        space: StateSpace,
        dtype: torch.dtype,
        generator: torch.Generator | None = None,
    ) -> Float[Tensor, "B L D"]:
        """x_s = α_s·x0 + β_s·x1 with x1 = space.one_hot(tokens), x0 = space.noise(B, L)."""
        B, L = tokens.shape
        x1 = space.one_hot(tokens).to(dtype)
        x0 = space.noise(B, L, device=tokens.device, dtype=dtype, generator=generator)
        return self.interpolant.sample(x1, s, x0)

    def loss(
        self,
        student: TwoTimeDenoiser,
        tokens: Int[Tensor, "B L"],
        space: StateSpace | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[Float[Tensor, ""], dict[str, float]]:
        """Diagonal CE + off-diagonal target loss on one batch; returns (scalar loss, float metrics)."""
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape [batch, length], got {tuple(tokens.shape)}")
        V = student.vocab_size
        space = space if space is not None else OneHotSpace(V)
        if dtype is None:
            param = next(iter(student.parameters()), None) if isinstance(student, nn.Module) else None
            dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        B = tokens.shape[0]
        pairs = self.pairs(B, device=tokens.device, dtype=dtype, generator=generator)
        x = self.noisy_state(tokens, pairs.s, space, dtype, generator)  # [B, L, D]

        diag, off = pairs.diagonal, pairs.off_diagonal
        per_row = torch.zeros(B, device=tokens.device, dtype=torch.float32)
        metrics: dict[str, float] = {}

        n_diag = int(diag.sum())
        if n_diag:
            xd, td = x[diag], pairs.t[diag]
            logits_d = student(xd, td, td)  # [b, L, V]
            if self.teacher.denoiser is None:
                target_d = F.one_hot(tokens[diag], V).to(logits_d.dtype)
            else:
                target_d = self.teacher.probs(student, xd, td)
            loss_d = soft_cross_entropy(logits_d, target_d)
            per_row = per_row.index_put((diag.nonzero(as_tuple=True)[0],), loss_d.float())
            metrics["loss_diagonal"] = float(loss_d.detach().mean())

        n_jvp = n_fwd = 0
        if B - n_diag:
            xo = x[off]
            so, uo, to = pairs.s[off], pairs.u[off], pairs.t[off]
            with torch.no_grad():
                tgt = self.target(student, xo, so, uo, to, space)
            s_st, t_st = self.student_times(so, to)
            logits_o = student(xo, s_st, t_st)
            loss_o = target_loss(logits_o, tgt.probs.detach(), self.projection)
            if tgt.weight is not None:
                loss_o = loss_o * tgt.weight.to(loss_o.dtype)
            per_row = per_row.index_put((off.nonzero(as_tuple=True)[0],), loss_o.float())
            metrics["loss_off_diagonal"] = float(loss_o.detach().mean())
            metrics["target_negative_mass"] = float(tgt.probs.clamp(max=0).sum(-1).mean().neg())
            n_jvp, n_fwd = tgt.n_jvp, tgt.n_forward

        loss = per_row.mean()
        metrics.update(
            loss=float(loss.detach()),
            n_jvp=float(n_jvp),
            n_target_forward=float(n_fwd),
            diagonal_rows=float(n_diag),
            off_diagonal_rows=float(B - n_diag),
        )
        return loss, metrics

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.interpolant!r}, {self.schedule!r}, teacher="
            f"{'self' if self.teacher.denoiser is None else type(self.teacher.denoiser).__name__}, "
            f"projection={self.projection!r}, jvp={self.jvp!r})"
        )

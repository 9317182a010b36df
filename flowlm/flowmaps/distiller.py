r"""The distiller interface shared by the semigroup, Lagrangian and Eulerian objectives.

A distiller trains a student two-time denoiser :math:`\hat\delta_\theta(x, s, t)` from a frozen
teacher denoiser :math:`\hat D` (or from data alone: self-distillation). One call of
:meth:`Distiller.loss` on a batch of clean tokens ``[B, L]``:

1. draws per-sequence times ``(s, u, t)`` and their model times with the shared
   :class:`TimePairSampler` (τ is drawn; the network receives it, no τ → t → τ round trip);
2. noises the data at the start time with ``flow.noisy(tokens, tau=tau_s, space=space)``;
3. **diagonal rows** (s = t): CE of :math:`\hat\delta(x_t, t, t)` against the teacher's
   probabilities :math:`\hat D_t(x_t)` (or the data one-hot when ``teacher=None``);
4. **off-diagonal rows** (s < t): CE of :math:`\hat\delta_{s,t}(x_s)` against a stop-gradient
   target :math:`\bar\delta` that each subclass defines (:meth:`Distiller.target`), computed under
   ``torch.no_grad()`` with the *online* student through its :class:`~flowlm.flowmaps.FlowMap`
   (no EMA copy; the student stays in whatever mode it is in, i.e. train mode during training);
   targets that can leave the simplex go through the named ``projection`` policy
   (:mod:`flowlm.flowmaps.projections`); a non-finite target raises instead of being projected.

The loss is the mean over the batch of the per-sequence losses (each the mean over positions),
so the diagonal/off-diagonal balance is set by the time sampler's fractions. The metrics are
tensors (no host synchronization per step beyond the two that split the batch into row kinds).

In self-distillation (``teacher=None``) every place where a target needs :math:`\hat D_t` uses the
student's own diagonal :math:`\hat\delta(x, t, t)` (under ``no_grad``).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from flowlm.denoisers import Denoiser, TwoTimeDenoiser
from flowlm.flow import Flow, same_schedule
from flowlm.flowmaps.jvp import ExactJVP, JVPBackend
from flowlm.flowmaps.projections import PROJECTIONS, soft_cross_entropy, target_loss
from flowlm.flowmaps.time_pairs import TimePairs, TimePairSampler
from flowlm.flowmaps.two_time import FlowMap
from flowlm.prompt import Prompt, prompted, random_clean_mask
from flowlm.states import StateSpace

__all__ = ["Distiller", "Target", "rows_of"]


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


def rows_of(pairs: TimePairs, index: Int[Tensor, " b"]) -> TimePairs:
    """The sub-batch of ``pairs`` at the row indices ``index`` (no host synchronization)."""
    pick = lambda v: v.index_select(0, index)  # noqa: E731
    return TimePairs(
        pick(pairs.s), pick(pairs.u), pick(pairs.t), pick(pairs.tau_s), pick(pairs.tau_u), pick(pairs.tau_t),
        pick(pairs.diagonal), pick(pairs.boundary),
    )


class Distiller(ABC):
    """Abstract flow-map distiller; subclasses define the off-diagonal :meth:`target`.

    Args:
        flow: the teacher's :class:`flowlm.Flow` (interpolant and t ↔ τ schedule).
        teacher: frozen FLM denoiser built for ``flow``, or None for self-distillation.
        pairs: time-pair sampler (default ``TimePairSampler(flow)``, the reference law).
        projection: policy for targets that leave the simplex (None = the target is on it).
        jvp: JVP backend for the derivative-based targets (default :class:`ExactJVP`).
    """

    name: str = "distiller"

    def __init__(
        self,
        flow: Flow,
        teacher: Denoiser | None = None,
        pairs: TimePairSampler | None = None,
        projection: str | None = None,
        jvp: JVPBackend | None = None,
    ) -> None:
        if not isinstance(flow, Flow):
            raise TypeError(
                f"{type(self).__name__}(flow, teacher=...): flow must be a flowlm.Flow (e.g. "
                f"Flow.decoding_error(Linear(), V)), got {type(flow).__name__}"
            )
        if projection is not None and projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS} (or None for on-simplex targets), got {projection!r}")
        if teacher is not None:
            if not isinstance(teacher, Denoiser):
                raise TypeError(f"teacher must be a flowlm Denoiser (or None for self-distillation), got {type(teacher).__name__}")
            flow.check(teacher, "teacher")
            if isinstance(teacher, nn.Module):
                teacher.eval()
                teacher.requires_grad_(False)
        if pairs is not None and not (isinstance(pairs, TimePairSampler) and same_schedule(pairs.flow.schedule, flow.schedule)):
            raise ValueError("pairs must be a TimePairSampler built on the distiller's flow: TimePairSampler(flow, ...)")
        self.flow = flow
        self.teacher = teacher
        self.pairs = pairs if pairs is not None else TimePairSampler(flow)
        self.projection = projection
        self.jvp = jvp if jvp is not None else ExactJVP()

    # ------------------------------------------------------------------ helpers for targets
    @torch.no_grad()
    def teacher_probs(
        self, flow_map: FlowMap, x: Float[Tensor, "b L D"], t: Float[Tensor, " b"], tau: Float[Tensor, " b"]
    ) -> Float[Tensor, "b L V"]:
        """D̂_t(x) on the simplex: the teacher, or the student's diagonal δ̂(x, t, t) in self-distillation."""
        if self.teacher is None:
            return flow_map.delta.probs(x, t, t, tau_s=tau, tau_t=tau)
        return self.teacher.probs(x, t, tau=tau)

    # ------------------------------------------------------------------ prompts (condition_fraction)
    def _held(self, student: TwoTimeDenoiser, fm: FlowMap, prompt: Prompt | None, space: StateSpace, dtype: torch.dtype):
        """The student and its flow map with ``prompt``'s positions held clean (unchanged without one)."""
        if prompt is None:
            return student, fm
        held = prompted(student, prompt, space, dtype)
        return held, FlowMap(held, self.flow, space)

    @contextlib.contextmanager
    def _teacher_held(self, prompt: Prompt | None, space: StateSpace, dtype: torch.dtype) -> Iterator[None]:
        """Within the block, ``self.teacher`` sees ``prompt``'s positions clean (t = 1)."""
        saved = self.teacher
        if prompt is not None and saved is not None:
            self.teacher = prompted(saved, prompt, space, dtype)
        try:
            yield
        finally:
            self.teacher = saved

    # ------------------------------------------------------------------ subclass API
    def student_times(self, rows: TimePairs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(s, t, tau_s, tau_t)`` at which the student is fitted on off-diagonal rows (default: as drawn)."""
        return rows.s, rows.t, rows.tau_s, rows.tau_t

    @abstractmethod
    def target(self, flow_map: FlowMap, x: Float[Tensor, "b L D"], rows: TimePairs) -> Target:
        """The stop-gradient target δ̄ for rows with s < t (called under ``torch.no_grad()``);
        ``flow_map`` is the student's :class:`FlowMap` on the distiller's flow."""

    # ------------------------------------------------------------------ the objective
    def loss(
        self,
        student: TwoTimeDenoiser,
        tokens: Int[Tensor, "B L"],
        space: StateSpace | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        condition_fraction: float = 0.0,
    ) -> tuple[Float[Tensor, ""], dict[str, Tensor]]:
        """Diagonal CE + off-diagonal target loss on one batch; returns (scalar loss, tensor metrics).

        ``condition_fraction`` > 0 trains for prompts: that share of the sequences holds a random
        prefix, suffix or outside-of-a-span clean (:func:`flowlm.prompt.random_clean_mask`); the
        student, the teacher and every target see those positions clean with s = u = t = 1 (and
        τ = 1), and they are left out of the loss (the mean runs over the free positions)."""
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape [batch, length], got {tuple(tokens.shape)}")
        fm = FlowMap(student, self.flow, space)
        space = fm.space
        V = student.vocab_size
        if dtype is None:
            param = next(iter(student.parameters()), None) if isinstance(student, nn.Module) else None
            dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        B = tokens.shape[0]
        pairs = self.pairs(B, device=tokens.device, dtype=dtype, generator=generator)
        x = self.flow.noisy(tokens, tau=pairs.tau_s, space=space, generator=generator, dtype=dtype).xt  # [B, L, D]
        prompt = None
        if condition_fraction:
            clean = random_clean_mask(B, tokens.shape[1], condition_fraction, device=tokens.device, generator=generator)
            prompt = Prompt(tokens, clean)
            x = prompt.hold(x, prompt.clean_state(space, dtype))

        idx_d = pairs.diagonal.nonzero().squeeze(1)  # host sync 1
        idx_o = pairs.off_diagonal.nonzero().squeeze(1)  # host sync 2
        n_diag, n_off = idx_d.numel(), idx_o.numel()
        per_row = torch.zeros(B, device=tokens.device, dtype=torch.float32)
        zero = torch.zeros((), device=tokens.device)
        metrics: dict[str, Tensor] = {}

        if n_diag:
            rows = rows_of(pairs, idx_d)
            xd = x.index_select(0, idx_d)
            sub = None if prompt is None else prompt.rows(idx_d)
            student_d, fm_d = self._held(student, fm, sub, space, dtype)
            logits_d = student_d(xd, rows.t, rows.t, tau_s=rows.tau_t, tau_t=rows.tau_t)  # [b, L, V]
            with self._teacher_held(sub, space, dtype):
                if self.teacher is None:
                    target_d = F.one_hot(tokens.index_select(0, idx_d), V).to(logits_d.dtype)
                else:
                    target_d = self.teacher_probs(fm_d, xd, rows.t, rows.tau_t)
            loss_d = soft_cross_entropy(logits_d, target_d, None if sub is None else ~sub.mask)
            per_row = per_row.index_put((idx_d,), loss_d.float())
            metrics["loss_diagonal"] = loss_d.detach().mean()

        n_jvp = n_fwd = 0
        if n_off:
            rows = rows_of(pairs, idx_o)
            xo = x.index_select(0, idx_o)
            sub = None if prompt is None else prompt.rows(idx_o)
            student_o, fm_o = self._held(student, fm, sub, space, dtype)
            with torch.no_grad(), self._teacher_held(sub, space, dtype):
                tgt = self.target(fm_o, xo, rows)
            probs = tgt.probs.detach()
            torch._assert_async(
                torch.isfinite(probs).all(),
                f"{self.name} distiller: the target has NaN/inf entries (check the interpolant near t = 1 and "
                "the JVP backend); refusing to project them",
            )
            s_st, t_st, tau_s_st, tau_t_st = self.student_times(rows)
            logits_o = student_o(xo, s_st, t_st, tau_s=tau_s_st, tau_t=tau_t_st)
            loss_o = target_loss(logits_o, probs, self.projection, None if sub is None else ~sub.mask)
            if tgt.weight is not None:
                loss_o = loss_o * tgt.weight.to(loss_o.dtype)
            per_row = per_row.index_put((idx_o,), loss_o.float())
            metrics["loss_off_diagonal"] = loss_o.detach().mean()
            metrics["target_negative_mass"] = probs.clamp(max=0).sum(-1).mean().neg()
            n_jvp, n_fwd = tgt.n_jvp, tgt.n_forward

        loss = per_row.mean()
        if prompt is not None:
            metrics["clean_fraction"] = prompt.mask.float().mean()
        metrics.update(
            loss=loss.detach(),
            n_jvp=zero + n_jvp,
            n_target_forward=zero + n_fwd,
            diagonal_rows=zero + n_diag,
            off_diagonal_rows=zero + n_off,
        )
        return loss, metrics

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.flow!r}, teacher="
            f"{'self' if self.teacher is None else type(self.teacher).__name__}, "
            f"projection={self.projection!r}, jvp={self.jvp!r})"
        )

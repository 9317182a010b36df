r"""Autoguidance: extrapolate from a weak model towards the model (DESIGN §6, REFERENCE §3).

Two named forms, for an FLM denoiser :math:`D` and for an FMLM two-time denoiser :math:`\delta`
(the same formula with the pair of times ``(s, t)``):

* ``form="probs"`` (the paper's): :math:`D_\eta = D_{weak} + \eta\,(D - D_{weak})`.
  For :math:`\eta > 1` this **may leave the simplex** (negative entries, rows still summing to 1).
  The samplers accept it: the velocity :math:`b = (\alpha'/\alpha)x + \alpha\rho'\,D` and the flow
  map :math:`X_{s,t} = c_x x + c_\delta\,\delta` are affine in the denoiser, so
  :math:`b_\eta = b_{weak} + \eta(b - b_{weak})` (guidance in velocity form is the same update)
  and every sampler runs unchanged; the returned ``probs`` may hold negative entries, tokens are
  their argmax. :meth:`logits` is then only a view, ``log(max(D_η, tiny))``.
* ``form="logits"``: :math:`\mathrm{softmax}(\ell_{weak} + \eta\,(\ell - \ell_{weak}))`, on the
  simplex for every η, a different update (it reads ``[B, L, V]`` logits of both models).

η = 1 returns the model itself (bitwise: the weak model is not called) and η = 0 the weak model;
otherwise both are called, and ``calls_per_eval = 2`` makes a sampler's ``nfe`` count both
(:class:`flowlm.samplers.SamplerOutput`). η < 0 is an error.

Weak models (any :class:`~flowlm.denoisers.Denoiser` / ``TwoTimeDenoiser`` on the same flow):
the same network with dropout on (:class:`DropoutDenoiser`, :class:`DropoutTwoTimeDenoiser`),
an earlier checkpoint, or the online weights beside the EMA ones (:func:`flowlm.guidance.weak_model`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from flowlm.denoisers import Denoiser, TwoTimeDenoiser, softmax_probs
from flowlm.states import StateSpace

__all__ = [
    "FORMS",
    "AutoGuidedDenoiser",
    "AutoGuidedTwoTimeDenoiser",
    "DropoutDenoiser",
    "DropoutTwoTimeDenoiser",
    "check_guidance_weight",
]

FORMS = ("probs", "logits")


def check_guidance_weight(weight: Any) -> float:
    """η as a float; a clear error unless it is a finite number >= 0."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise TypeError(f"the guidance weight η must be a number >= 0, got {type(weight).__name__}")
    w = float(weight)
    if not (w >= 0.0 and w < float("inf")):
        raise ValueError(
            f"the guidance weight η must be a finite number >= 0 (1 = the plain model, 0 = the weak model, "
            f"> 1 = guided), got {weight}"
        )
    return w


def _check_pair(strong: Any, weak: Any, base: type, form: str) -> None:
    if not isinstance(strong, base) or not isinstance(weak, base):
        raise TypeError(
            f"autoguidance needs two {base.__name__}s (the model and the weak model), got "
            f"{type(strong).__name__} and {type(weak).__name__}"
        )
    if strong.vocab_size != weak.vocab_size:
        raise ValueError(f"the weak model has vocabulary {weak.vocab_size}, the model {strong.vocab_size}")
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS} (probability or logit extrapolation), got {form!r}")


class _Guided:
    """Shared attributes: ``strong``, ``weak``, ``weight`` (η), ``form``; ``vocab_size``, ``flow`` /
    ``interpolant`` of the model (so :meth:`flowlm.Flow.check` sees them)."""

    def _init(self, strong: Any, weak: Any, weight: float, form: str, base: type) -> None:
        _check_pair(strong, weak, base, form)
        self.strong, self.weak = strong, weak
        self.weight = check_guidance_weight(weight)
        self.form = form
        self.vocab_size = strong.vocab_size
        for attr in ("flow", "interpolant"):
            if getattr(strong, attr, None) is not None:
                setattr(self, attr, getattr(strong, attr))

    @property
    def calls_per_eval(self) -> int:
        """Model evaluations per call: the model's alone at η = 1, the weak model's at η = 0, else both."""
        strong, weak = getattr(self.strong, "calls_per_eval", 1), getattr(self.weak, "calls_per_eval", 1)
        return strong if self.weight == 1.0 else weak if self.weight == 0.0 else strong + weak

    def _combine(self, p_weak: Tensor, p_strong: Tensor) -> Tensor:
        return p_weak + self.weight * (p_strong - p_weak)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weight={self.weight:g}, form={self.form!r}, strong={self.strong!r}, weak={self.weak!r})"


class AutoGuidedDenoiser(_Guided, Denoiser):
    r"""``AutoGuidedDenoiser(model, weak, weight, form="probs")``: the guided FLM denoiser
    :math:`D_\eta = D_{weak} + \eta(D - D_{weak})` (or its logit form; module docstring).

    ``probs(x: [B, L, D], t: [B], tau=None, space=None) -> [B, L, V]`` (or ``[B, L, D]`` embedded:
    the embedding is linear, so each model's own, possibly chunked, ``probs(space=...)`` is used).
    """

    def __init__(self, model: Denoiser, weak: Denoiser, weight: float, form: str = "probs") -> None:
        self._init(model, weak, weight, form, Denoiser)

    def probs(
        self,
        x: Float[Tensor, "B L D"],
        t: Float[Tensor, "B *tokens"],
        *,
        tau: Float[Tensor, "B *tokens"] | None = None,
        space: StateSpace | None = None,
    ) -> Float[Tensor, "B L K"]:
        """D_η(x) (probability form: may leave the simplex for η > 1), embedded when ``space`` is given."""
        if self.weight == 1.0:
            return self.strong.probs(x, t, tau=tau, space=space)
        if self.weight == 0.0:
            return self.weak.probs(x, t, tau=tau, space=space)
        if self.form == "logits":
            probs = softmax_probs(self.logits(x, t, tau=tau), x.dtype)
            return probs if space is None else space.embed(probs)
        return self._combine(self.weak.probs(x, t, tau=tau, space=space), self.strong.probs(x, t, tau=tau, space=space))

    def logits(
        self, x: Float[Tensor, "B L D"], t: Float[Tensor, "B *tokens"], *, tau: Float[Tensor, "B *tokens"] | None = None
    ) -> Float[Tensor, "B L V"]:
        """Logit form: ℓ_w + η(ℓ − ℓ_w). Probability form: ``log(max(D_η, tiny))`` (a lossy view)."""
        if self.weight in (0.0, 1.0):
            return (self.strong if self.weight == 1.0 else self.weak).logits(x, t, tau=tau)
        if self.form == "logits":
            return self._combine(self.weak.logits(x, t, tau=tau), self.strong.logits(x, t, tau=tau))
        p = self.probs(x, t, tau=tau)
        return p.clamp_min(torch.finfo(p.dtype).tiny).log()


class AutoGuidedTwoTimeDenoiser(_Guided, TwoTimeDenoiser):
    r"""``AutoGuidedTwoTimeDenoiser(delta, weak, weight, form="probs")``: the guided FMLM two-time
    denoiser :math:`\delta_\eta = \delta_{weak} + \eta(\delta - \delta_{weak})` (or its logit form).
    Its flow map is :math:`X^\eta_{s,t} = X^{weak}_{s,t} + \eta(X_{s,t} - X^{weak}_{s,t})` (affine in δ)."""

    def __init__(self, delta: TwoTimeDenoiser, weak: TwoTimeDenoiser, weight: float, form: str = "probs") -> None:
        self._init(delta, weak, weight, form, TwoTimeDenoiser)

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
        """δ_η(x) (probability form: may leave the simplex for η > 1), embedded when ``space`` is given."""
        kw = {"tau_s": tau_s, "tau_t": tau_t}
        if self.weight == 1.0:
            return self.strong.probs(x, s, t, space=space, **kw)
        if self.weight == 0.0:
            return self.weak.probs(x, s, t, space=space, **kw)
        if self.form == "logits":
            probs = softmax_probs(self.logits(x, s, t, **kw), x.dtype)
            return probs if space is None else space.embed(probs)
        return self._combine(self.weak.probs(x, s, t, space=space, **kw), self.strong.probs(x, s, t, space=space, **kw))

    def logits(
        self,
        x: Float[Tensor, "B L D"],
        s: Float[Tensor, "B *tokens"],
        t: Float[Tensor, "B *tokens"],
        *,
        tau_s: Float[Tensor, "B *tokens"] | None = None,
        tau_t: Float[Tensor, "B *tokens"] | None = None,
    ) -> Float[Tensor, "B L V"]:
        """Logit form: ℓ_w + η(ℓ − ℓ_w). Probability form: ``log(max(δ_η, tiny))`` (a lossy view)."""
        kw = {"tau_s": tau_s, "tau_t": tau_t}
        if self.weight in (0.0, 1.0):
            return (self.strong if self.weight == 1.0 else self.weak).logits(x, s, t, **kw)
        if self.form == "logits":
            return self._combine(self.weak.logits(x, s, t, **kw), self.strong.logits(x, s, t, **kw))
        p = self.probs(x, s, t, **kw)
        return p.clamp_min(torch.finfo(p.dtype).tiny).log()


# --------------------------------------------------------------------------- the dropout weak model
@contextlib.contextmanager
def _dropout_on(net: nn.Module, seed: int | None, device: torch.device) -> Iterator[None]:
    """``net`` in train mode (dropout active) for the block, its mode restored after; with ``seed``,
    the dropout masks come from a private RNG seeded with ``seed`` (the global RNG is untouched)."""
    was_training = net.training
    net.train()
    try:
        if seed is None:
            yield
        else:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(int(seed))
                yield
    finally:
        net.train(was_training)


def _network_of(den: Any) -> nn.Module:
    net = getattr(den, "net", None)
    if not isinstance(net, nn.Module):
        raise TypeError(
            f"the dropout weak model needs a network-backed denoiser (NetDenoiser / NetTwoTimeDenoiser, e.g. "
            f"model.model_fn), got {type(den).__name__}"
        )
    rate = max((m.p for m in net.modules() if isinstance(m, nn.Dropout)), default=0.0)
    if rate <= 0.0:
        raise ValueError(
            "the network has no active dropout (DiTConfig.dropout = 0), so 'dropout on' would equal the model; "
            "use an earlier checkpoint or the online weights as the weak model"
        )
    return net


class _DropoutMixin:
    def _init(self, den: Any, seed: int | None) -> None:
        self.net = _network_of(den)
        self.inner, self.seed = den, seed
        self.vocab_size = den.vocab_size
        for attr in ("flow", "interpolant"):
            if getattr(den, attr, None) is not None:
                setattr(self, attr, getattr(den, attr))

    def _on(self, x: Tensor):
        return _dropout_on(self.net, self.seed, x.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r}, seed={self.seed})"


class DropoutDenoiser(_DropoutMixin, Denoiser):
    """The weak model "same network, dropout on": every call runs the network in train mode
    (dropout active; its mode is restored afterwards) and returns its probabilities.

    ``seed=None``: fresh dropout masks at every call from the global torch RNG (a stochastic weak
    model). ``seed=k``: every call draws its masks from a private RNG reseeded with ``k`` (the global
    RNG is left as it was), so equal-shaped calls use the same masks: one fixed thinned network.
    Call it under ``torch.no_grad()`` (the samplers do).
    """

    def __init__(self, den: Denoiser, seed: int | None = None) -> None:
        self._init(den, seed)

    def logits(self, x: Float[Tensor, "B L D"], t: Float[Tensor, "B *tokens"], *, tau: Float[Tensor, "B *tokens"] | None = None
               ) -> Float[Tensor, "B L V"]:
        with self._on(x):
            return self.inner.logits(x, t, tau=tau)

    def probs(self, x: Float[Tensor, "B L D"], t: Float[Tensor, "B *tokens"], *, tau: Float[Tensor, "B *tokens"] | None = None,
              space: StateSpace | None = None) -> Float[Tensor, "B L K"]:
        with self._on(x):
            return self.inner.probs(x, t, tau=tau, space=space)


class DropoutTwoTimeDenoiser(_DropoutMixin, TwoTimeDenoiser):
    """:class:`DropoutDenoiser` for a two-time denoiser (FMLM)."""

    def __init__(self, delta: TwoTimeDenoiser, seed: int | None = None) -> None:
        self._init(delta, seed)

    def logits(self, x: Float[Tensor, "B L D"], s: Float[Tensor, "B *tokens"], t: Float[Tensor, "B *tokens"], *,
               tau_s: Float[Tensor, "B *tokens"] | None = None, tau_t: Float[Tensor, "B *tokens"] | None = None
               ) -> Float[Tensor, "B L V"]:
        with self._on(x):
            return self.inner.logits(x, s, t, tau_s=tau_s, tau_t=tau_t)

    def probs(self, x: Float[Tensor, "B L D"], s: Float[Tensor, "B *tokens"], t: Float[Tensor, "B *tokens"], *,
              tau_s: Float[Tensor, "B *tokens"] | None = None, tau_t: Float[Tensor, "B *tokens"] | None = None,
              space: StateSpace | None = None) -> Float[Tensor, "B L K"]:
        with self._on(x):
            return self.inner.probs(x, s, t, tau_s=tau_s, tau_t=tau_t, space=space)

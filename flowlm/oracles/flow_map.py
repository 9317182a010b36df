r"""The exact flow map :math:`X_{s,t}` and two-time denoiser :math:`\delta_{s,t}` of any denoiser,
by float64 ODE integration (torchdiffeq, tight tolerances).

Per-sequence times ``s, t: [B]`` share one integration variable :math:`r \in [0,1]` through
the non-singular time :math:`\nu = \log(1+\rho)` (:mod:`flowlm.interpolants.logsnr`):
:math:`\nu(r) = \nu_s + r\,(\nu_e - \nu_s)`, with :math:`\nu_e = \min(\nu_t, \nu_{\max})`,
:math:`\nu_{\max} = \log(1 + \rho_{\max})`. The state carries :math:`z = x/(\alpha+\beta)`
and a running :math:`\rho`-average of the denoiser,

.. math::
    \frac{dz}{dr} = \Delta\nu\,\big(D_u(x) - z\big),\qquad
    \frac{dA}{dr} = \frac{\Delta\nu\,e^{r\Delta\nu}}{e^{\Delta\nu}-1}\,D_u(x),\qquad
    x = (\alpha+\beta)(u)\,z,

since :math:`d\rho = (1+\rho_s)e^{r\Delta\nu}\Delta\nu\,dr` and
:math:`\rho_e-\rho_s = (1+\rho_s)(e^{\Delta\nu}-1)`; so :math:`A(1) =
\int D\,d\rho/(\rho_e-\rho_s) = \delta_{s,e}`, a convex mixture of denoisers (on the simplex up to
the ODE tolerance, with no cancellation), and :math:`\delta_{s,s} = D_s` exactly.

**Cut-off.** Beyond :math:`\rho_{\max}` (default 1e4; Linear: t > 1 − 1e-4) the denoiser is
treated as constant, :math:`D_u = D_c := D_{u_c}(x_{u_c})`, which solves the remaining flow in
closed form: :math:`X_{s,t} = X_{c,t}` from ``flow_map_coefficients(u_c, t)`` with δ = D_c, and
:math:`\delta_{s,t} = w\,A + (1-w)\,D_c` with :math:`w = (\rho_c-\rho_s)/(\rho_t-\rho_s)`
(``semigroup_weight``; w = 0 at t = 1, so :math:`X_{s,1} = \delta_{s,1} = D_c`). The error is
:math:`\sup_{u>u_c}|D_u(X_{c,u}) - D_c|`. For the exact oracles the logits grow like
:math:`\rho^2` along a trajectory, so at ρ = 1e4 the denoiser is saturated to float64 precision
except on the measure-zero set of ties.
"""

from __future__ import annotations

import math
import typing

import torch
from jaxtyping import Float
from torch import Tensor
from torchdiffeq import odeint

from flowlm._checks import check_state, check_times
from flowlm.denoisers import Denoiser, TwoTimeDenoiser
from flowlm.flow import same_interpolant
from flowlm.interpolants.base import Interpolant, expand_time
from flowlm.interpolants.logsnr import LogSNRFlow, nu_of_t, t_of_nu
from flowlm.oracles._validate import trusted_inputs


def _resolve_interpolant(name: str, denoiser: Denoiser, interpolant: Interpolant | None) -> Interpolant:
    """``interpolant``, or the denoiser's own; an error when neither is known or they differ."""
    if not isinstance(denoiser, Denoiser):
        raise TypeError(f"{name} needs a flowlm Denoiser (subclass flowlm.denoisers.Denoiser), got {type(denoiser).__name__}")
    own = getattr(denoiser, "interpolant", None)
    if interpolant is None:
        if own is None:
            raise ValueError(f"{name}: the denoiser carries no interpolant; pass interpolant= (e.g. flow.interpolant)")
        return own
    if own is not None and not same_interpolant(own, interpolant):
        raise ValueError(f"{name}: the denoiser was built for {own!r}, not for {interpolant!r}")
    return interpolant

__all__ = ["ExactFlowMap", "ExactTwoTimeDenoiser"]


class ExactFlowMap:
    """``X(x: [B, L, V], s: [B], t: [B]) -> X_{s,t}(x)`` for 0 ≤ s ≤ t ≤ 1 (t = 1 allowed).

    Per-token times ``s, t: [B, L]``: positions with s = t = 1 are clean (held, and a hard
    constraint on the denoiser, so the flow is the conditional flow); the other positions of a
    row share the row's (s, t).

    Integrates in ``dtype`` (float64 by default) with ``torchdiffeq.odeint(method, rtol, atol)``;
    the result is returned in the dtype of ``x``. ``interpolant`` defaults to the denoiser's own
    (an oracle carries one); a different one is an error. The denoiser is called with states of ``dtype``:
    pass ``dtype=torch.float32`` for a float32 network. ``nfe`` holds the denoiser evaluations of
    the last call. Global error: roughly the tolerance times the flow's local expansion near
    decision boundaries (measured ≈ 1e-11 at the default 1e-10 on small factorized laws).
    """

    def __init__(
        self,
        denoiser: Denoiser,
        interpolant: Interpolant | None = None,
        *,
        method: str = "dopri8",
        rtol: float = 1e-10,
        atol: float = 1e-10,
        rho_max: float = 1e4,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if not rho_max > 0:
            raise ValueError(f"rho_max must be > 0, got {rho_max}")
        self.interpolant = _resolve_interpolant("ExactFlowMap", denoiser, interpolant)
        self.denoiser = denoiser
        self.vocab_size = denoiser.vocab_size
        self.method, self.rtol, self.atol = method, rtol, atol
        self.rho_max, self.dtype = float(rho_max), dtype
        self.nfe = 0

    def __call__(
        self, x: Float[Tensor, "B L V"], s: Float[Tensor, "B *tokens"], t: Float[Tensor, "B *tokens"]
    ) -> Float[Tensor, "B L V"]:
        return self.solve(x, s, t)[0]

    def solve(
        self, x: Float[Tensor, "B L V"], s: Float[Tensor, "B *tokens"], t: Float[Tensor, "B *tokens"]
    ) -> tuple[Float[Tensor, "B L V"], Float[Tensor, "B L V"]]:
        """(X_{s,t}(x), δ_{s,t}(x)), both from one integration (see the module docstring)."""
        check_state("ExactFlowMap: x", x, self.vocab_size)
        check_times("ExactFlowMap: s", s, x.shape[0], x.shape[1])
        check_times("ExactFlowMap: t", t, x.shape[0], x.shape[1])
        if s.shape != t.shape:
            raise ValueError(f"ExactFlowMap: s and t must have the same shape, got {tuple(s.shape)} and {tuple(t.shape)}")
        if bool((s > t).any()):
            raise ValueError("ExactFlowMap needs s <= t for every sequence (the flow runs from noise to data)")
        out_dtype = x.dtype
        x, s, t = x.to(self.dtype), s.to(self.dtype), t.to(self.dtype)
        denoiser, clean = self.denoiser, None
        if s.ndim == 2:
            s, t, denoiser, clean = self._per_token(x, s, t)
        with trusted_inputs():  # validated above; skip the oracles' per-evaluation checks
            X, delta = self._solve(x, s, t, denoiser)
        if clean is not None:  # a clean position keeps its state; δ there is its one-hot (= D_1)
            X = torch.where(clean[..., None], x, X)
            delta = torch.where(clean[..., None], denoiser.clean, delta)
        return X.to(out_dtype), delta.to(out_dtype)

    def _per_token(self, x: Tensor, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Denoiser, Tensor]:
        """Per-token times ``[B, L]``: positions with s = 1 (hence t = 1) are clean, held at the
        argmax of ``x``, and the denoiser sees them at t = 1 (a hard constraint); every other
        position of a row must share the row's (s, t), which the flow then integrates."""
        from flowlm.prompt import Prompt, PromptedDenoiser
        from flowlm.states import OneHotSpace

        clean = s >= 1.0  # [B, L]
        inf = torch.full_like(s, math.inf)
        s_row, t_row = torch.where(clean, inf, s).amin(1), torch.where(clean, inf, t).amin(1)  # [B]
        s_hi, t_hi = torch.where(clean, -inf, s).amax(1), torch.where(clean, -inf, t).amax(1)
        free = ~clean.all(1)
        if bool(((s_row != s_hi) | (t_row != t_hi))[free].any()):
            raise NotImplementedError(
                "ExactFlowMap integrates one (s, t) per sequence: per-token times must be 1 at clean positions "
                "and equal to the sequence's (s, t) everywhere else"
            )
        zero = torch.zeros_like(s_row)
        s_row, t_row = torch.where(free, s_row, zero), torch.where(free, t_row, zero)  # all-clean rows: no flow
        prompt = Prompt(x.argmax(-1), clean)
        return s_row, t_row, PromptedDenoiser(self.denoiser, prompt, OneHotSpace(self.vocab_size), x.dtype), clean

    @typing.no_type_check
    def _solve(self, x: Tensor, s: Tensor, t: Tensor, denoiser: Denoiser) -> tuple[Tensor, Tensor]:
        it = self.interpolant
        flow = LogSNRFlow(denoiser, it)
        same = s == t  # [B]
        nu_s, nu_t = nu_of_t(it, s), nu_of_t(it, t)  # [B], inf at 1
        nu_cut = torch.full_like(nu_s, math.log1p(self.rho_max))
        nu_e = torch.where(same, nu_s, torch.maximum(torch.minimum(nu_t, nu_cut), nu_s))
        dnu = torch.where(same, torch.zeros_like(nu_s), nu_e - nu_s)  # [B] >= 0, finite
        moving = dnu > 0
        safe_dnu = torch.where(moving, dnu, torch.ones_like(dnu))
        norm = safe_dnu / torch.expm1(safe_dnu)  # [B]

        def rhs(r: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            zr, _ = state
            nu = nu_s + r * dnu  # [B]
            dz_dnu, probs = flow(zr, torch.where(moving, nu, nu_s))
            dz = dnu[:, None, None] * dz_dnu  # 0 where the interval is empty
            kernel = torch.where(moving, norm * torch.exp(r * safe_dnu), torch.ones_like(dnu))  # [B]
            return dz, kernel[:, None, None] * probs

        r = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
        z0 = x / expand_time(flow.scale(s), x)
        # step_t: land a step exactly on r = 1 instead of reading it off the (lower-order) dense output
        zs, avgs = odeint(
            rhs, (z0, torch.zeros_like(x)), r, method=self.method, rtol=self.rtol, atol=self.atol,
            options={"step_t": r[1:]},
        )
        beyond = (nu_t > nu_cut) & ~same  # the saturated finish applies
        u_c = torch.where(moving, t_of_nu(it, nu_e), s)  # [B]; < 1 wherever beyond
        u_e = torch.where(beyond, u_c, t)  # the time the integration reached
        x_e, A = expand_time(flow.scale(u_e), x) * zs[-1], avgs[-1]  # [B, L, V]
        if bool(beyond.any()):
            u_c = torch.where(beyond, u_c, torch.zeros_like(u_c))
            d_c = denoiser.probs(x_e, u_c)  # [B, L, V]
            flow.nfe += 1
            c_x, c_d = it.flow_map_coefficients(u_c, t)
            w = it.semigroup_weight(s, u_c, torch.where(beyond, t, torch.ones_like(t)))
            X_fin = expand_time(c_x, x) * x_e + expand_time(c_d, x) * d_c
            delta_fin = expand_time(w, x) * A + expand_time(1.0 - w, x) * d_c
            b = expand_time(beyond, x)
            x_e, A = torch.where(b, X_fin, x_e), torch.where(b, delta_fin, A)
        self.nfe = flow.nfe
        x_e = torch.where(expand_time(same, x), x, x_e)
        return x_e, A

    def __repr__(self) -> str:
        return (
            f"ExactFlowMap({self.denoiser!r}, {self.interpolant!r}, method={self.method!r}, "
            f"rtol={self.rtol:g}, atol={self.atol:g}, rho_max={self.rho_max:g})"
        )


class ExactTwoTimeDenoiser(TwoTimeDenoiser):
    r"""``delta(x, s, t) -> logits`` whose softmax is the exact :math:`\delta_{s,t}(x)`.

    :math:`\delta_{s,t} = (X_{s,t}(x) - (\alpha_t/\alpha_s)x)/(\beta_t - \alpha_t\beta_s/\alpha_s)`
    (``Interpolant.delta_from_flow_map``), computed here directly as the ρ-average of the
    denoiser along the trajectory (:class:`ExactFlowMap`), so it has no cancellation as t → s;
    :math:`\delta_{s,s} = D_s`, :math:`\delta_{s,1} = X_{s,1}`. Logits are
    ``log(clamp(δ, tiny))`` (tiny negatives from integration error are clamped); :meth:`probs`
    returns δ itself (no log/softmax round trip).
    """

    def __init__(self, denoiser: Denoiser, interpolant: Interpolant | None = None, **solver_options) -> None:
        self.flow_map = ExactFlowMap(denoiser, interpolant, **solver_options)
        self.denoiser, self.interpolant = denoiser, self.flow_map.interpolant
        self.vocab_size = denoiser.vocab_size

    def probs(
        self,
        x: Float[Tensor, "B L V"],
        s: Float[Tensor, "B *tokens"],
        t: Float[Tensor, "B *tokens"],
        *,
        tau_s: Tensor | None = None,
        tau_t: Tensor | None = None,
        space=None,
    ) -> Float[Tensor, "B L K"]:
        """δ_{s,t}(x) itself (on the simplex up to the integration tolerance), or ``space.embed`` of it."""
        delta = self.flow_map.solve(x, s, t)[1]
        return delta if space is None else space.embed(delta)

    def logits(
        self,
        x: Float[Tensor, "B L V"],
        s: Float[Tensor, "B *tokens"],
        t: Float[Tensor, "B *tokens"],
        *,
        tau_s: Tensor | None = None,
        tau_t: Tensor | None = None,
    ) -> Float[Tensor, "B L V"]:
        delta = self.probs(x, s, t)
        return delta.clamp_min(torch.finfo(delta.dtype).tiny).log()

    def __repr__(self) -> str:
        return f"ExactTwoTimeDenoiser({self.denoiser!r}, {self.interpolant!r})"

r"""Decoding-error time: the model time τ used to condition networks.

.. math::
    q(t) = \mathbb E_{z\sim\mathcal N(0,1)}\big[\Phi(z + \rho(t))^{V-1}\big],\qquad
    \tau(t) = \frac{V\,q(t) - 1}{V - 1}

``q`` is the probability that argmax-decoding the noisy one-hot state ``x_t`` returns the clean
token, and ``τ`` normalizes it to ``τ(0) = 0`` (``q = 1/V``: a uniform guess) and ``τ(1) = 1``.
It depends on the interpolant only through ``ρ(t) = β(t)/α(t)``.

**Quadrature.** For large ``V`` the integrand ``Φ(z+ρ)^{V−1}`` is a steep step (width
≈ 1/√(2 log V)) whose position moves with ``ρ``, so a fixed Gauss–Hermite rule in ``z`` needs many
nodes. We integrate the same quantity the other way round: ``Φ(m)^{V−1}`` is the CDF of
``M = max`` of ``V − 1`` iid standard normals, and ``q = P(M ≤ Z + ρ)``, so

.. math::
    q(\rho) = \mathbb E_M\big[\Phi(\rho - M)\big]
            \approx \sum_j w_j\,\Phi(\rho - m_j),

with a Gauss rule ``(m_j, w_j)`` for the law of ``M`` (density ``(V−1)φ(m)Φ(m)^{V−2}``, built in
log space with ``log_ndtr``; nodes by Lanczos on a fine trapezoid discretization of that density,
once per schedule). The integrand ``Φ(ρ − m)`` now has unit width for every ``V`` and every ``ρ``, so
12–32 nodes give ≈ 1e-13 absolute accuracy in τ for ``V`` from 2 to 10^6 (for ``V = 2`` the rule
is Gauss–Hermite and ``τ = erf(ρ/2)``). Normalizing with the rule's own endpoint values,

.. math::
    \tau(\rho) = \frac{\sum_j w_j\,[\Phi(\rho - m_j) - \Phi(-m_j)]}{\sum_j w_j\,\Phi(m_j)},

makes ``τ(0) = 0`` and ``τ(∞) = 1`` exact and ``τ`` strictly increasing in ``ρ`` (positive weights).

**Inverse.** :meth:`DecodingErrorSchedule.t_of_tau` reads a table built once per device: exact
nodes ``t_k = t(τ_k)`` (bisection on the quadrature) on a grid uniform in ``y = logit(τ)`` (fine near
both ends, where ``t(τ)`` is steep), joined by a monotone (Fritsch–Carlson limited) cubic Hermite
interpolant of ``t(y)`` with exact slopes. Lookup is O(1) (no search) and has no host round trip.
Optional exact Newton steps on the quadrature polish the result further.

All computation happens in float64 on the input's device; results come back in the input's dtype.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from flowlm.interpolants._monotone import (
    MonotoneCubicTable,
    bisect_increasing,
    bracket_on_grid,
    newton_increasing,
)
from flowlm.interpolants.base import Interpolant
from flowlm.interpolants.builtins import Linear  # noqa: F401 - used by the doctest
from flowlm.interpolants.schedule import TimeSchedule, _skip_checks, _validate_time, _work_dtype

__all__ = ["DecodingErrorSchedule", "max_of_normals_rule"]

_CANDIDATE_NODES = (8, 12, 16, 20, 24, 32)
_REFERENCE_NODES = 40
_RULE_TOL = 1e-13  # max |Δτ| between a candidate rule and the 40-node reference, over ρ ∈ [0, 30]


def _max_density_grid(n: int, n_fine: int = 4001) -> tuple[Tensor, Tensor]:
    """Trapezoid discretization (nodes, normalized weights) of the law of the max of ``n`` normals.

    log p(m) = log n + log φ(m) + (n − 1)·log Φ(m), evaluated in log space (``log_ndtr``) on the
    region where p > 1e-33·max p. CPU, float64; construction only.
    """

    def log_p(m: Tensor) -> Tensor:
        return math.log(n) - 0.5 * m * m - 0.5 * math.log(2 * math.pi) + (n - 1) * torch.special.log_ndtr(m)

    coarse = torch.linspace(-40.0, 40.0, 80_001, dtype=torch.float64)
    lp = log_p(coarse)
    keep = coarse[lp > lp.max() - 75.0]
    m = torch.linspace(float(keep[0]) - 0.01, float(keep[-1]) + 0.01, n_fine, dtype=torch.float64)
    lw = log_p(m)
    w = torch.exp(lw - lw.max())
    return m, w / w.sum()


def _gauss_rule(x: Tensor, w: Tensor, n_nodes: int) -> tuple[Tensor, Tensor]:
    """``n_nodes``-point Gauss rule of the discrete measure Σ w_i δ_{x_i}.

    Lanczos on diag(x) started at √w (full re-orthogonalization) gives the Jacobi matrix; its
    eigenvalues are the nodes and the squared first eigenvector components the weights (Golub–Welsch).
    """
    basis = torch.zeros(x.numel(), n_nodes, dtype=torch.float64)  # [n_fine, N] orthonormal Lanczos vectors
    diag = torch.zeros(n_nodes, dtype=torch.float64)
    off = torch.zeros(n_nodes - 1, dtype=torch.float64)
    basis[:, 0] = w.sqrt()
    for j in range(n_nodes):
        v = x * basis[:, j]
        diag[j] = basis[:, j] @ v
        q = basis[:, : j + 1]
        for _ in range(2):  # re-orthogonalize twice ("twice is enough")
            v = v - q @ (q.T @ v)
        if j + 1 < n_nodes:
            off[j] = torch.linalg.vector_norm(v)
            basis[:, j + 1] = v / off[j]
    jacobi = torch.diag(diag) + torch.diag(off, 1) + torch.diag(off, -1)
    nodes, vecs = torch.linalg.eigh(jacobi)
    return nodes, vecs[0] ** 2


def _tau_of_rho(nodes: Tensor, weights: Tensor, rho: Tensor) -> Tensor:
    """τ(ρ) = Σ w_j [Φ(ρ − m_j) − Φ(−m_j)] / Σ w_j Φ(m_j) for a rule (m, w); ``rho: [R]``."""
    num = ((torch.special.ndtr(rho[:, None] - nodes) - torch.special.ndtr(-nodes)) * weights).sum(-1)
    return num / (weights * torch.special.ndtr(nodes)).sum()


def max_of_normals_rule(
    vocab_size: int, n_nodes: int | None = None
) -> tuple[Float[Tensor, " N"], Float[Tensor, " N"]]:
    """Gauss rule ``(m_j, w_j)`` for M = max of ``vocab_size − 1`` iid N(0, 1) (CPU, float64).

    With ``n_nodes=None`` the smallest of 8, 12, …, 32 nodes whose τ agrees with a 40-node rule to
    1e-13 on ρ ∈ [0, 30] is chosen (large V needs fewer nodes: the law of M is narrow).
    """
    x, w = _max_density_grid(vocab_size - 1)
    if n_nodes is not None:
        return _gauss_rule(x, w, n_nodes)
    rho = torch.linspace(0.0, 30.0, 601, dtype=torch.float64)
    ref_nodes, ref_weights = _gauss_rule(x, w, _REFERENCE_NODES)
    ref = _tau_of_rho(ref_nodes, ref_weights, rho)
    for k in _CANDIDATE_NODES:
        nodes, weights = _gauss_rule(x, w, k)
        if float((_tau_of_rho(nodes, weights, rho) - ref).abs().max()) < _RULE_TOL:
            return nodes, weights
    return ref_nodes, ref_weights


class DecodingErrorSchedule(TimeSchedule):
    r"""τ(t) = (V·q(t) − 1)/(V − 1), q(t) = E_z[Φ(z + ρ(t))^{V−1}] (see the module docstring).

    Args:
        vocab_size: V ≥ 2.
        interpolant: the affine interpolant whose ρ = β/α enters q (required; e.g. :class:`Linear`).
        n_nodes: quadrature nodes for the law of the max (default: chosen for 1e-13 accuracy).
        table_size: cells of the inverse table on the logit(τ) grid (default 2048).

    >>> import torch
    >>> sched = DecodingErrorSchedule(30522, Linear())
    >>> [round(float(v), 2) for v in sched.t_of_tau(torch.tensor([0.01, 0.99], dtype=torch.float64))]
    [0.63, 0.87]
    """

    #: the inverse table covers τ ∈ [τ_min, 1 − τ_min]; outside, t(τ) is linear: |τ(t(τ)) − τ| < τ_min
    #: there, but the error in t is not small near t = 1 (see :meth:`t_of_tau`).
    tau_min: float = 1e-12

    def __init__(
        self,
        vocab_size: int,
        interpolant: Interpolant,
        n_nodes: int | None = None,
        table_size: int = 2048,
    ) -> None:
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
        if not isinstance(interpolant, Interpolant):
            raise TypeError(
                f"DecodingErrorSchedule(vocab_size, interpolant): interpolant must be a flowlm Interpolant (e.g. Linear(), Cosine(), "
                f"Interpolant.from_functions(alpha, beta)), got {type(interpolant).__name__}"
            )
        if n_nodes is not None and not 2 <= int(n_nodes) <= 200:
            raise ValueError(f"n_nodes must be in [2, 200] (or None for automatic), got {n_nodes}")
        if int(table_size) < 16:
            raise ValueError(f"table_size must be >= 16, got {table_size}")
        self.vocab_size = int(vocab_size)
        self.interpolant = interpolant
        self.table_size = int(table_size)
        nodes, weights = max_of_normals_rule(self.vocab_size, n_nodes)
        self._nodes, self._weights = nodes, weights  # [N] m_j, [N] w_j (sum 1); CPU float64
        self._rules: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor, Tensor]] = {}
        self._tables: dict[tuple[torch.device, torch.dtype], tuple[MonotoneCubicTable, float, float]] = {}

    @property
    def n_nodes(self) -> int:
        """Number of quadrature nodes in use."""
        return int(self._nodes.numel())

    # ------------------------------------------------------------------ τ(t)
    def _rule(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """(m [N], w' [N], Φ(−m) [N]) on ``device``, w' = w / Σ w Φ(m) so that τ(∞) = 1."""
        rule = self._rules.get((device, dtype))
        return rule if rule is not None else self._make_rule(device, dtype)

    @torch.compiler.disable  # runs eagerly even inside torch.compile, so the cache holds real tensors
    def _make_rule(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        m, w = self._nodes, self._weights
        w_norm = w / (w * torch.special.ndtr(m)).sum()
        phi0 = torch.special.ndtr(-m)
        rule = tuple(v.to(device=device, dtype=dtype) for v in (m, w_norm, phi0))
        self._rules[(device, dtype)] = rule  # type: ignore[assignment]
        return rule  # type: ignore[return-value]

    def _tau_work(self, t: Tensor) -> Tensor:
        """τ(t) for ``t`` already in the working dtype; no input checks (differentiable, jvp/vmap-safe)."""
        m, w, phi0 = self._rule(t.device, t.dtype)
        inside = t < 1.0
        t_safe = torch.where(inside, t, torch.zeros_like(t))  # keeps ρ(1) = ∞ out of the graph
        rho = self.interpolant.rho(t_safe)  # [*shape]
        terms = torch.special.ndtr(rho.unsqueeze(-1) - m) - phi0  # [*shape, N]
        tau = terms @ w  # [*shape]
        tau = tau - torch.where(t == 0.0, tau.detach(), torch.zeros_like(tau))  # exact 0, keeps dτ/dt(0)
        return torch.where(inside, tau.clamp(max=1.0), torch.ones_like(tau))

    def _tau_and_slope(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(τ(t), dτ/dt) for ``t < 1`` in the working dtype, no graph: dτ/dt = ρ'(t)·Σ_j w'_j φ(ρ − m_j)
        (ρ' by forward-mode autograd of the interpolant). Used by the table build and Newton steps."""
        m, w, phi0 = self._rule(t.device, t.dtype)
        t_safe = torch.where(t < 1.0, t, torch.zeros_like(t))
        rho, drho = torch.func.jvp(self.interpolant.rho, (t_safe,), (torch.ones_like(t_safe),))
        z = rho.unsqueeze(-1) - m  # [*shape, N]
        tau = (torch.special.ndtr(z) - phi0) @ w
        slope = drho * ((torch.exp(-0.5 * z * z) @ w) * (1.0 / math.sqrt(2.0 * math.pi)))
        return tau, slope

    def tau_of_t(self, t: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        r"""τ(t) by quadrature: Σ_j w_j [Φ(ρ(t) − m_j) − Φ(−m_j)] / Σ_j w_j Φ(m_j).

        Any shape, same shape and dtype out; computed in float64 on ``t.device``; differentiable
        (autograd, ``torch.func.jvp``/``vmap``). τ(0) = 0 and τ(1) = 1 exactly.
        """
        _validate_time("t", t)
        return self._tau_work(t.to(_work_dtype(t.device))).to(t.dtype)

    # ------------------------------------------------------------------ t(τ)
    def _table(self, device: torch.device, dtype: torch.dtype) -> tuple[MonotoneCubicTable, float, float]:
        """The monotone cubic table of t(y) on the uniform y = logit(τ) grid, plus the end nodes
        t(τ_min), t(1 − τ_min). Built once per device."""
        table = self._tables.get((device, dtype))
        return table if table is not None else self._build_table(device, dtype)

    @torch.compiler.disable  # runs eagerly even inside torch.compile, so the cache holds real tensors
    @torch.no_grad()
    def _build_table(self, device: torch.device, dtype: torch.dtype) -> tuple[MonotoneCubicTable, float, float]:
        K = self.table_size
        f64 = torch.float64 if dtype == torch.float64 else dtype
        y_lo = math.log(self.tau_min) - math.log1p(-self.tau_min)
        y = torch.linspace(y_lo, -y_lo, K + 1, dtype=f64, device=device)  # [K+1]
        h = float(y[1] - y[0])
        target = torch.sigmoid(y)  # [K+1] τ_k
        # bracket each τ_k on a uniform t grid, then bisect on the exact quadrature
        grid = torch.linspace(0.0, 1.0, 4097, dtype=f64, device=device)
        lo, hi = bracket_on_grid(grid, self._tau_work(grid), target)
        t_k = bisect_increasing(self._tau_work, target, lo, hi, steps=48)  # [K+1], bracket 2^-12 → 2^-60
        t_k = torch.cummax(t_k, 0).values  # monotone nodes (guards against last-bit ties)
        _, dtau = self._tau_and_slope(t_k)
        slope = target * (1.0 - target) / dtau  # dt/dy = τ(1−τ) / τ'(t)
        table = (MonotoneCubicTable.fit(y_lo, h, t_k, slope), float(t_k[0]), float(t_k[-1]))
        self._tables[(device, dtype)] = table
        return table

    def t_of_tau(self, tau: Float[Tensor, "*shape"], newton_steps: int = 0) -> Float[Tensor, "*shape"]:
        r"""t(τ), the inverse of :meth:`tau_of_t` (any shape, same shape and dtype out, on ``tau.device``).

        Table lookup: ``y = logit(τ)``, cell ``k = ⌊(y − y_lo)/h⌋``, cubic in ``s = (y − y_lo)/h − k``;
        for τ < τ_min (resp. > 1 − τ_min) linear in τ to t = 0 (resp. 1). |τ(t(τ)) − τ| ≲ 3e-10 with
        the default table (V = 2 … 10^6, benchmarks/results/schedule.md; measured 2.6e-10 for Cosine at
        V = 2). That bound is in τ: **t itself is determined only where τ(t) < 1 − τ_min.** Past the
        table's last node (t ≳ 0.92 for Linear and Cosine, any V) τ(t) is within 1e-12 of 1 (or rounds
        to 1), the linear piece is not the inverse, and t(τ(t)) can differ from t by up to ≈ 0.08
        (measured for V = 2, 3, 30522); a network conditioned on τ cannot tell those times apart
        either. On MPS (no float64) the table and quadrature run in float32; that path is not
        measured, and float32 bounds τ to ~1e-7 relative at best. ``newton_steps`` exact Newton steps
        ``t ← t − (τ(t) − τ)/τ'(t)`` on the quadrature polish it further at the cost of one
        quadrature per step. t(0) = 0 and t(1) = 1 exactly; monotone in τ.
        """
        _validate_time("tau", tau)
        if not _skip_checks(tau):
            if int(newton_steps) < 0:
                raise ValueError(f"newton_steps must be >= 0, got {newton_steps}")
        work = _work_dtype(tau.device)
        table, t_first, t_last = self._table(tau.device, work)
        x = tau.to(work)  # [*shape]
        t = table(torch.logit(x))  # the cubic of the cell of y = logit τ (clamped to the table)
        # outside the table: straight lines to (0, 0) and (1, 1); exact at both ends
        t = torch.where(x < self.tau_min, x * (t_first / self.tau_min), t)
        t = torch.where(x > 1.0 - self.tau_min, 1.0 - (1.0 - x) * ((1.0 - t_last) / self.tau_min), t)
        if int(newton_steps) > 0:
            polished = newton_increasing(self._tau_and_slope, t, x, int(newton_steps), 0.0, 1.0)
            t = torch.where((x > 0.0) & (x < 1.0), polished, t)
        return t.to(tau.dtype)

    def __repr__(self) -> str:
        return f"DecodingErrorSchedule(vocab_size={self.vocab_size}, interpolant={self.interpolant!r})"

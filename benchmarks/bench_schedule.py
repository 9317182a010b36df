"""Decoding-error schedule: our on-device t(τ) / τ(t) against the scipy-spline reference approach.

Reference approach (what a straightforward implementation does): tabulate t(τ) at knots uniform
in τ, fit ``scipy.interpolate.CubicSpline`` on the CPU, and evaluate it with a device round trip
(tensor → numpy → spline → tensor). We also fit the same spline on our logit-spaced knots, to
separate the effect of knot placement from that of the evaluation path.

Accuracy is max |τ_ref(t(τ)) − τ| with an independent τ_ref: the original integral
q = ∫ φ(z) Φ(z + ρ)^{V−1} dz by a dense trapezoid rule in log space (scipy ``log_ndtr``; a different
formula and algorithm from the library's), itself checked against mpmath at a few points.
Speed is the median over interleaved repeats, reported as a ratio measured in this one run.

Run: ``.venv/bin/python benchmarks/bench_schedule.py`` (writes benchmarks/results/schedule.{json,md}).
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from pathlib import Path

import mpmath
import numpy as np
import torch
from scipy.interpolate import CubicSpline
from scipy.special import log_ndtr

from flowlm.interpolants import DecodingErrorSchedule, Linear

RESULTS = Path(__file__).resolve().parent / "results"
N_QUERY = 100_000
N_ACCURACY = 2_000
REPEATS = 15


def reference_tau(vocab_size: int, t: np.ndarray) -> np.ndarray:
    """Independent τ(t) for the Linear interpolant: dense trapezoid in z of φ(z)Φ(z+ρ)^{V−1}."""
    z = np.linspace(-12.0, 12.0, 12_001)  # spacing 2e-3 ≪ the step width 1/√(2 log V); φ(12) ≈ 1e-32
    log_phi = -0.5 * z * z - 0.5 * math.log(2 * math.pi)
    out = np.ones_like(t)
    inside = np.flatnonzero(t < 1.0)
    for chunk in np.array_split(inside, max(1, inside.size // 256)):
        rho = t[chunk] / (1.0 - t[chunk])
        q = np.trapezoid(np.exp(log_phi + (vocab_size - 1) * log_ndtr(z + rho[:, None])), z, axis=-1)
        out[chunk] = (vocab_size * q - 1.0) / (vocab_size - 1)
    return out


def mpmath_tau(vocab_size: int, rho: float) -> float:
    mpmath.mp.dps = 30
    n = vocab_size - 1
    step = float(mpmath.sqrt(2) * mpmath.erfinv(1 - mpmath.mpf(2) / n)) - rho if n > 1 else -rho
    pts = sorted({-40.0, 0.0, 40.0, *(min(max(step + d, -39.0), 39.0) for d in (-3, -1, -0.5, 0, 0.5, 1, 3))})
    q = mpmath.quad(lambda z: mpmath.npdf(z) * mpmath.ncdf(z + rho) ** n, pts)
    return float((vocab_size * q - 1) / (vocab_size - 1))


def median_ms(fn, repeats: int = REPEATS) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def interleaved(fns: dict, repeats: int = REPEATS) -> dict[str, float]:
    """Median wall time (ms) of each function, alternating them so load changes hit all equally."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def bench_vocab(vocab_size: int, device: torch.device, rng: np.random.Generator) -> dict:
    sched = DecodingErrorSchedule(vocab_size, Linear())
    t0 = time.perf_counter()
    sched.t_of_tau(torch.tensor([0.5], dtype=torch.float64, device=device))  # builds the table
    build_s = time.perf_counter() - t0
    knots = sched.table_size + 1

    # reference approach: CubicSpline of t(τ) on knots uniform in τ (exact t at the knots)
    tau_knots = np.linspace(0.0, 1.0, knots)
    t_knots = sched.t_of_tau(torch.from_numpy(tau_knots), newton_steps=2).numpy()
    spline_uniform = CubicSpline(tau_knots, t_knots)
    # the same spline on our logit-spaced knots (+ the end points)
    y = np.linspace(math.log(sched.tau_min / (1 - sched.tau_min)), -math.log(sched.tau_min / (1 - sched.tau_min)), knots)
    tau_logit = np.concatenate([[0.0], 1.0 / (1.0 + np.exp(-y)), [1.0]])
    t_logit = sched.t_of_tau(torch.from_numpy(tau_logit), newton_steps=2).numpy()
    spline_logit = CubicSpline(tau_logit, t_logit)
    # reference τ(t): CubicSpline of τ(t) on a uniform t grid of the same size
    t_grid = np.linspace(0.0, 1.0, knots)
    spline_tau = CubicSpline(t_grid, sched.tau_of_t(torch.from_numpy(t_grid)).numpy())

    def round_trip(spline, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(spline(x.detach().cpu().numpy())).to(device=x.device, dtype=x.dtype)

    # ------------------------------------------------------------------ accuracy (independent τ)
    probe = np.concatenate(
        [rng.uniform(0, 1, N_ACCURACY), np.logspace(-12, -1, 60), 1 - np.logspace(-12, -1, 60), [0.0, 1.0]]
    )
    probe_t = torch.from_numpy(probe).to(device)
    candidates = {
        "ours_table": sched.t_of_tau(probe_t).cpu().numpy(),
        "ours_table_newton1": sched.t_of_tau(probe_t, newton_steps=1).cpu().numpy(),
        "scipy_spline_uniform_tau": round_trip(spline_uniform, probe_t).cpu().numpy(),
        "scipy_spline_logit_knots": round_trip(spline_logit, probe_t).cpu().numpy(),
    }
    accuracy = {}
    for name, t in candidates.items():
        t = np.clip(t, 0.0, 1.0)
        accuracy[name] = float(np.abs(reference_tau(vocab_size, t) - probe).max())
    # τ(t) accuracy: ours (quadrature) vs the τ(t) spline, against the same reference
    t_probe = np.sort(np.concatenate([rng.uniform(0, 1, N_ACCURACY // 4), [0.0, 1.0]]))
    ref_tau = reference_tau(vocab_size, t_probe)
    accuracy["tau_of_t_ours"] = float(
        np.abs(sched.tau_of_t(torch.from_numpy(t_probe).to(device)).cpu().numpy() - ref_tau).max()
    )
    accuracy["tau_of_t_scipy_spline"] = float(np.abs(spline_tau(t_probe) - ref_tau).max())

    # ------------------------------------------------------------------ speed (1e5 values, float64 and float32)
    speed = {}
    for dtype in (torch.float64, torch.float32):
        tau_q = torch.rand(N_QUERY, dtype=torch.float64, device=device).to(dtype)
        t_q = torch.rand(N_QUERY, dtype=torch.float64, device=device).to(dtype)
        ms = interleaved(
            {
                "t_of_tau_ours": lambda: sched.t_of_tau(tau_q),
                "t_of_tau_ours_newton1": lambda: sched.t_of_tau(tau_q, newton_steps=1),
                "t_of_tau_scipy_spline": lambda: round_trip(spline_uniform, tau_q),
                "tau_of_t_ours": lambda: sched.tau_of_t(t_q),
                "tau_of_t_scipy_spline": lambda: round_trip(spline_tau, t_q),
            }
        )
        key = str(dtype).removeprefix("torch.")
        speed[key] = {
            "ms": ms,
            "speedup_t_of_tau": ms["t_of_tau_scipy_spline"] / ms["t_of_tau_ours"],
            "speedup_t_of_tau_newton1": ms["t_of_tau_scipy_spline"] / ms["t_of_tau_ours_newton1"],
            "speedup_tau_of_t": ms["tau_of_t_scipy_spline"] / ms["tau_of_t_ours"],
        }
    return {
        "vocab_size": vocab_size,
        "n_nodes": sched.n_nodes,
        "table_cells": sched.table_size,
        "table_build_s": build_s,
        "max_abs_tau_error": accuracy,
        "speed": speed,
    }


def main() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    # sanity check of the independent reference against mpmath
    check = []
    for V, t in [(2, 0.3), (30522, 0.75), (30522, 0.85), (10**6, 0.8)]:
        a = float(reference_tau(V, np.array([t]))[0])
        b = mpmath_tau(V, t / (1 - t))
        check.append({"vocab_size": V, "t": t, "trapezoid": a, "mpmath": b, "abs_diff": abs(a - b)})
    runs = [bench_vocab(V, device, rng) for V in (30522, 2, 10**6)]
    result = {
        "benchmark": "decoding-error schedule t(τ), τ(t): on-device table vs scipy spline round trip",
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "threads": threads,
        "platform": platform.platform(),
        "n_query": N_QUERY,
        "repeats": REPEATS,
        "reference_check_vs_mpmath": check,
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "schedule.json").write_text(json.dumps(result, indent=2) + "\n")

    lines = [
        "# Decoding-error schedule benchmark",
        "",
        f"Device: {result['device']} ({threads} thread(s)), torch {torch.__version__}; "
        f"{N_QUERY:,} query values, median of {REPEATS} interleaved repeats. "
        "Produced by `.venv/bin/python benchmarks/bench_schedule.py`.",
        "",
        "Accuracy = max |τ_ref(t(τ)) − τ| over 2,000 random τ plus 120 τ within 1e-12..1e-1 of 0 and 1; "
        "τ_ref is an independent dense trapezoid of the original z-integral "
        f"(agrees with mpmath to {max(c['abs_diff'] for c in check):.1e}). "
        "Reference approach = scipy CubicSpline on 2,049 knots uniform in τ, evaluated via tensor → numpy → tensor.",
        "",
        "| V | nodes | t(τ) err ours | t(τ) err ours+1 Newton | t(τ) err scipy (uniform τ knots) | scipy (our logit knots) "
        "| τ(t) err ours | τ(t) err scipy | t(τ) speed-up f64 / f32 | +1 Newton speed-up f64 | τ(t) speed-up f64 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        a, s = r["max_abs_tau_error"], r["speed"]
        lines.append(
            f"| {r['vocab_size']} | {r['n_nodes']} | {a['ours_table']:.1e} | {a['ours_table_newton1']:.1e} "
            f"| {a['scipy_spline_uniform_tau']:.1e} | {a['scipy_spline_logit_knots']:.1e} "
            f"| {a['tau_of_t_ours']:.1e} | {a['tau_of_t_scipy_spline']:.1e} "
            f"| {s['float64']['speedup_t_of_tau']:.1f}× / {s['float32']['speedup_t_of_tau']:.1f}× "
            f"| {s['float64']['speedup_t_of_tau_newton1']:.2f}× | {s['float64']['speedup_tau_of_t']:.2f}× |"
        )
    sp = [r["speed"][d]["speedup_t_of_tau"] for r in runs for d in ("float64", "float32")]
    sp_tau = [r["speed"]["float64"]["speedup_tau_of_t"] for r in runs]
    err_ours = max(r["max_abs_tau_error"]["ours_table"] for r in runs)
    err_ref = min(r["max_abs_tau_error"]["scipy_spline_uniform_tau"] for r in runs)
    lines += [
        "",
        f"t(τ): the on-device table is {min(sp):.1f}–{max(sp):.1f}× faster than the scipy round trip and "
        f"accurate to {err_ours:.0e} (target 1e-6); the uniform-knot spline misses the target "
        f"(≥ {err_ref:.0e}: t(τ) is steep near τ = 0 and 1), and even on our logit knots it is less accurate. "
        f"τ(t): the quadrature costs {1 / max(sp_tau):.1f}–{1 / min(sp_tau):.1f}× a spline lookup, in exchange for "
        "~1e-15 accuracy and exact autograd/JVP; one optional exact Newton step on t(τ) costs about a quadrature.",
    ]
    lines += ["", "Times (ms, float64, V = 30522): " + ", ".join(f"{k} {v:.2f}" for k, v in runs[0]["speed"]["float64"]["ms"].items()), ""]
    (RESULTS / "schedule.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

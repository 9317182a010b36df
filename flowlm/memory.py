r"""Up-front memory estimate of a training run, and a refusal that says what to change.

A run whose step cannot fit should stop before the data is read, with numbers, instead of dying
in an allocation deep inside the first forward pass. The estimate of one optimizer step is

.. math::
    M = \underbrace{20P}_{\text{weights, grads, AdamW, EMA (fp32)}}
      + k_{\text{obj}}\,b\,D\,\big[\,e\,L\,(a_w d + a_r r d)\;+\;4\,a_s H L^2\,\big]

with :math:`P` parameters, micro-batch :math:`b` = ``batch_size / (grad_accum · world_size)``,
:math:`D` blocks of width :math:`d`, MLP ratio :math:`r`, :math:`H` heads, sequence length
:math:`L`, and :math:`e` bytes per activation element (4 in fp32, 2 under bf16 autocast; the
attention scores stay fp32 for the softmax). The :math:`L^2` term is the ``[B, H, L, L]`` score
tensors the exact soft-capped attention keeps for the backward pass; ``attention="flex"`` under
``torch.compile`` (CUDA) does not keep them. :math:`k_{\text{obj}}` is 1 for FLM training, about 2
for semigroup distillation (two student forwards) and 3 for the JVP-based distillers. The
per-element constants :math:`a_w, a_r, a_s` were fitted to the peak RSS of CPU steps (the estimate
was 1.0–1.2× the measured peak for attention- and width-bound shapes, up to 2× for wide, short ones); ``tests/test_training.py`` checks that the estimate
covers the activations autograd keeps for the backward pass and stays within 2.5× of them.

:func:`check_training_memory` compares ``M`` with the memory available (``MemAvailable`` on
Linux, free memory on a CUDA device) and raises :class:`flowlm.presets.ConfigError` when it
exceeds ``margin`` (80%) of it. ``FLOWLM_SKIP_MEMORY_CHECK=1`` turns the check off.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["MemoryEstimate", "estimate_training_memory", "available_memory", "check_training_memory",
           "format_bytes"]

# activation elements kept per token and block: a_w·d + a_r·r·d (+ a_s·H·L for the attention scores)
A_WIDTH = 16.0
A_MLP = 2.5
A_SCORES = 4.0
OBJECTIVE_FACTOR = {"flm": 1.0, "semigroup": 2.0, "lagrangian": 3.0, "eulerian": 3.0}
# nominal vocabulary sizes by tokenizer kind (char: an upper bound; its embedding is tiny anyway)
_VOCAB = {"char": 256, "gpt2": 50258, "bert": 30522}


def format_bytes(n: int | float) -> str:
    """``1.5e9 -> '1.40 GiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024.0
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training step, by part (see the module docstring for the formula)."""

    parameters: int
    state_bytes: int
    activation_bytes: int
    attention_bytes: int
    micro_batch: int

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.activation_bytes + self.attention_bytes

    def describe(self) -> str:
        return (f"{format_bytes(self.total_bytes)} = {format_bytes(self.state_bytes)} for {self.parameters / 1e6:.1f}M "
                f"parameters (weights, gradients, AdamW, EMA) + {format_bytes(self.activation_bytes)} activations + "
                f"{format_bytes(self.attention_bytes)} attention scores (L², micro-batch {self.micro_batch})")


def _vocab_size(cfg: Any) -> int:
    if cfg.tokenizer == "bpe":
        return cfg.vocab_size or 4096
    return _VOCAB.get(cfg.tokenizer, max(cfg.vocab_size, 256))


def _parameter_count(cfg: Any, vocab_size: int, two_time: bool) -> int:
    """Exact count from the network built on the meta device (no memory); a formula if that fails."""
    try:
        import torch

        from flowlm.nets import DiT

        with torch.device("meta"):
            net = DiT(cfg.dit_config(vocab_size, two_time=two_time))
        return sum(p.numel() for p in net.parameters())
    except Exception:  # an architecture the meta device cannot build: 12·D·d² + two V×d matrices
        d = cfg.width
        return cfg.depth * (4 + 2 * cfg.mlp_ratio + 6) * d * d + 2 * vocab_size * d


def estimate_training_memory(cfg: Any, vocab_size: int | None = None, *, method: str = "flm",
                             device_type: str = "cpu", world_size: int | None = None,
                             _counts: tuple[int, int] | None = None) -> MemoryEstimate:
    """Estimate the peak memory of one training step of the run ``cfg`` (a :class:`~flowlm.presets.RunConfig`).

    ``method``: ``"flm"`` or a distiller (``"semigroup"``, ``"lagrangian"``, ``"eulerian"``), whose
    student is two-time and whose frozen teacher adds its weights. ``vocab_size=None`` uses the
    tokenizer's nominal size.
    """
    V = vocab_size or _vocab_size(cfg)
    distill = method != "flm"
    world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    batch = cfg.distill_batch_size if distill else cfg.batch_size
    micro = max(1, math.ceil(batch / (cfg.grad_accum * world)))
    P, P_teacher = _counts or (_parameter_count(cfg, V, two_time=distill),
                               _parameter_count(cfg, V, two_time=False) if distill else 0)
    state = 20 * P + 4 * P_teacher  # the frozen teacher's weights when distilling
    act_bytes = 2 if device_type == "cuda" else 4  # bf16 autocast on CUDA (the softmax stays fp32)
    k = OBJECTIVE_FACTOR.get(method, 3.0)
    L, d = cfg.seq_len, cfg.width
    per_token = A_WIDTH * d + A_MLP * cfg.mlp_ratio * d
    activations = k * micro * cfg.depth * L * per_token * act_bytes
    flex = cfg.attention == "flex" and device_type == "cuda" and cfg.compile
    scores = 0.0 if flex else k * micro * cfg.depth * A_SCORES * cfg.heads * L * L * 4
    return MemoryEstimate(parameters=P, state_bytes=int(state), activation_bytes=int(activations),
                          attention_bytes=int(scores), micro_batch=micro)


def available_memory(device: Any = "cpu") -> tuple[int | None, str]:
    """``(bytes, where)``: free memory of a CUDA device, else the host's available RAM (None if unknown)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free), f"free on {dev}"
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available RAM"
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available RAM"
    except (ValueError, OSError, AttributeError):
        return None, "available RAM"


def _largest(fits: Any, lo: int, hi: int) -> int:
    """The largest n in [lo, hi] with fits(n) (fits is monotone decreasing), or lo - 1."""
    if not fits(lo):
        return lo - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def check_training_memory(cfg: Any, vocab_size: int | None = None, *, method: str = "flm", device: Any = "cpu",
                          margin: float = 0.8, available: int | None = None) -> MemoryEstimate:
    """Refuse (:class:`~flowlm.presets.ConfigError`) a run whose estimated step exceeds ``margin`` of
    the available memory, with the estimate and the settings that would fit; returns the estimate."""
    import torch

    from flowlm.presets import ConfigError

    dev_type = torch.device(device).type
    est = estimate_training_memory(cfg, vocab_size, method=method, device_type=dev_type)
    if os.environ.get("FLOWLM_SKIP_MEMORY_CHECK", "") not in ("", "0"):
        return est
    where = "given"
    if available is None:
        available, where = available_memory(device)
    if available is None or est.total_bytes <= margin * available:
        return est
    budget = margin * available
    batch_field = "distill_batch_size" if method != "flm" else "batch_size"

    counts = (est.parameters, _parameter_count(cfg, vocab_size or _vocab_size(cfg), False) if method != "flm" else 0)

    def fits(**changes: Any) -> bool:  # the parameter count does not depend on the changed fields
        return estimate_training_memory(cfg.replace(**changes), vocab_size, method=method, device_type=dev_type,
                                        _counts=counts).total_bytes <= budget

    hints = []
    L = _largest(lambda n: fits(seq_len=n), 1, cfg.seq_len)
    if L >= 1:
        hints.append(f"--set seq_len={L} or less (attention memory grows as seq_len²)")
    accum = next((a for a in (2, 4, 8, 16, 32, 64, 128, 256, 512) if a <= getattr(cfg, batch_field)
                  and getattr(cfg, batch_field) % a == 0 and fits(grad_accum=a)), None)
    if accum:
        hints.append(f"--set grad_accum={accum} (same batch, smaller micro-batches)")
    b = _largest(lambda n: fits(**{batch_field: n, "grad_accum": 1}), 1, getattr(cfg, batch_field))
    if b >= 1:
        hints.append(f"--set {batch_field}={b}")
    if dev_type != "cuda":
        hints.append("a GPU (--device cuda) with more memory")
    else:
        hints.append("--set attention=flex --compile (no stored L² attention scores)")
    hints.append("a smaller model (--set depth=... --set width=...)")
    raise ConfigError(
        f"this run needs about {est.describe()}, more than {margin:.0%} of the {format_bytes(available)} {where}; "
        f"change one of: {'; '.join(hints)} (FLOWLM_SKIP_MEMORY_CHECK=1 skips this check)"
    )

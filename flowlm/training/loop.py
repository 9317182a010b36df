r"""The training loop: AdamW + linear warm-up, gradient clipping, EMA, gradient accumulation,
bf16 autocast (CUDA only), optional ``torch.compile``, data parallelism, exact resume.

One optimizer step ``k`` (0-based) does:

1. ``lr_k = lr · min(1, (k+1)/warmup_steps)``;
2. ``tokens = batches.get(k, rank, W)`` split into ``grad_accum`` micro-batches; for each
   micro-batch ``j`` the global RNG is re-seeded from ``(seed, k, rank, j)`` (so noise, τ draws
   and dropout depend only on the step: resume is exact and independent of earlier steps),
   ``loss_j, metrics = objective(model, micro_j)``, ``backward(loss_j / grad_accum)``;
3. gradients averaged over processes; stop with :class:`NonFiniteLossError` if the loss or the
   gradient norm is NaN/inf (no update is applied and the last checkpoint stays untouched);
4. clip the global gradient norm to ``grad_clip``, AdamW step, EMA update;
5. log every ``log_every`` steps (progress display + ``out_dir/metrics.jsonl``); every
   ``eval_every`` steps call ``evaluate(model)`` (main process, current weights) and log
   ``{"step", "split": "val", "val_loss", "ema": false}`` (a printed line + ``metrics.jsonl``);
   checkpoint every ``ckpt_every`` steps and at the end (``out_dir/checkpoint.safetensors``, atomic).

The checkpoint stores the batch source's stream position (``position(step)``; restored with
``seek``), so a resumed run reads the data from where it stopped.
With ``resume=True`` and a checkpoint in ``out_dir`` the run continues from its step: the losses
of steps k..N of a resumed run equal those of an uninterrupted run (``tests/test_training.py``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flowlm._io import resolve_device
from flowlm.data.batches import BatchSource
from flowlm.training.checkpoint import load_checkpoint, save_checkpoint
from flowlm.training.config import TrainConfig
from flowlm.training.distributed import all_reduce_gradients, all_reduce_mean, broadcast_module, context
from flowlm.training.ema import EMA
from flowlm.training.progress import Progress

__all__ = ["train", "TrainResult", "NonFiniteLossError", "CHECKPOINT_NAME", "METRICS_NAME"]

CHECKPOINT_NAME = "checkpoint.safetensors"
METRICS_NAME = "metrics.jsonl"


class NonFiniteLossError(FloatingPointError):
    """The loss (or gradient norm) became NaN/inf; training stopped before applying that update."""


@dataclass
class TrainResult:
    """``losses[i]`` is the (process-averaged) loss of step ``start_step + i``; ``val_losses`` maps a
    step to the validation loss measured after it (every ``eval_every`` steps, main process)."""

    step: int
    start_step: int
    losses: list[float] = field(default_factory=list)
    val_losses: dict[int, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    ema: EMA | None = None
    seconds: float = 0.0


#: checkpoint-config entries that describe the run (a resume may change them) rather than the weights
DESCRIPTIVE_KEYS = frozenset({"train", "run_config", "run", "tokenizer_spec"})


def _step_seed(seed: int, step: int, rank: int, micro: int) -> int:
    return (((seed * 1_000_003 + step) * 1_009 + rank) * 101 + micro) % (2**62)


def _model_config(model: nn.Module) -> dict[str, Any] | None:
    cfg = getattr(model, "config", None)
    return cfg.to_dict() if hasattr(cfg, "to_dict") else None


def _floats(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in metrics.items():
        if torch.is_tensor(v) and v.numel() == 1:
            out[k] = float(v)
        elif isinstance(v, (int, float, str, bool)):
            out[k] = v
    return out


def train(
    model: nn.Module,
    objective: Callable[[nn.Module, Tensor], tuple[Tensor, dict[str, Any]]],
    batches: BatchSource,
    config: TrainConfig,
    resume: bool = True,
    *,
    checkpoint_config: dict[str, Any] | None = None,
    evaluate: Callable[[nn.Module], float | None] | None = None,
) -> TrainResult:
    """Train ``model`` for ``config.steps`` optimizer steps of ``objective`` on ``batches``.

    ``evaluate(model) -> float | None`` (e.g. the objective on held-out batches, in eval mode; it
    must restore train mode) runs every ``config.eval_every`` steps on the main process.
    Training re-seeds its RNG at every step, so evaluating does not change the training losses.

    ``checkpoint_config`` adds entries (e.g. ``{"tokenizer": spec}``) to the configuration stored
    in checkpoints; a resumed run must match it and the model's ``config`` exactly
    (:class:`~flowlm.training.CheckpointMismatchError` otherwise).
    """
    ctx = context()
    device = resolve_device(config.device)
    if config.bf16 is True and device.type != "cuda":
        raise ValueError("bf16=True needs a CUDA device (autocast is CUDA-only here); use bf16='auto' or False")
    use_bf16 = device.type == "cuda" and config.bf16 in ("auto", True) and torch.cuda.is_bf16_supported()
    src_batch = getattr(batches, "batch_size", None)
    if src_batch is not None and src_batch != config.batch_size:
        raise ValueError(f"the batch source yields batches of {src_batch} but TrainConfig.batch_size is {config.batch_size}")
    if config.batch_size % (ctx.world_size * config.grad_accum):
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by world_size × grad_accum = "
            f"{ctx.world_size} × {config.grad_accum}"
        )

    model.to(device).train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    ema = EMA(model, config.ema_decay)

    full_config = {"model": _model_config(model), "train": config.to_dict(), **(checkpoint_config or {})}
    ckpt_path = os.path.join(config.out_dir, CHECKPOINT_NAME) if config.out_dir else None
    metrics_path = os.path.join(config.out_dir, METRICS_NAME) if config.out_dir else None
    start = 0
    last_saved: int | None = None
    if resume and ckpt_path and os.path.exists(ckpt_path):
        expected = {k: v for k, v in full_config.items() if k not in DESCRIPTIVE_KEYS and v is not None}
        ck = load_checkpoint(ckpt_path, expected_config=expected, map_location=device)
        model.load_state_dict(ck.model)
        if ck.optimizer is not None:
            optimizer.load_state_dict(ck.optimizer)
        if ck.ema:
            ema.load_state_dict(ck.ema, ck.ema_updates)
        if "cpu" in ck.rng:
            torch.set_rng_state(ck.rng["cpu"].cpu())
        cuda_keys = sorted((k for k in ck.rng if k.startswith("cuda/")), key=lambda k: int(k.split("/")[1]))
        cuda_states = [ck.rng[k].cpu() for k in cuda_keys]
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        start = last_saved = ck.step
        if ck.stream is not None and hasattr(batches, "seek"):
            batches.seek(ck.step, ck.stream)  # the data stream continues where the checkpoint left it
    broadcast_module(model)  # replicas start identical (no-op on one process)
    if config.compile:
        target = model.net if isinstance(getattr(model, "net", None), nn.Module) else model
        target.compile()

    def save(step: int) -> None:
        nonlocal last_saved
        if ckpt_path and ctx.is_main:
            stream = batches.position(step).to_dict() if hasattr(batches, "position") else None
            save_checkpoint(ckpt_path, model, step=step, config=full_config, ema=ema.state_dict(),
                            ema_updates=ema.num_updates, optimizer=optimizer, stream=stream)
        last_saved = step

    progress = Progress(config.steps, initial=start, enabled=config.progress, metrics_path=metrics_path, main=ctx.is_main)
    result = TrainResult(step=start, start_step=start, checkpoint=ckpt_path if last_saved is not None else None, ema=ema)
    t_start = time.perf_counter()
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)
    try:
        for step in range(start, config.steps):
            lr = config.lr * min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else config.lr
            for group in optimizer.param_groups:
                group["lr"] = lr
            tokens = batches.get(step, ctx.rank, ctx.world_size).to(device)
            optimizer.zero_grad(set_to_none=True)
            total = torch.zeros((), device=device)
            metrics: dict[str, Any] = {}
            for j, micro in enumerate(tokens.chunk(config.grad_accum)):
                torch.manual_seed(_step_seed(config.seed, step, ctx.rank, j))
                with autocast:
                    loss, metrics = objective(model, micro)
                (loss / config.grad_accum).backward()
                total = total + loss.detach().float() / config.grad_accum
            all_reduce_gradients(params, ctx.world_size)
            loss_value = float(all_reduce_mean(total, ctx.world_size))
            if config.grad_clip:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.grad_clip))
            else:
                grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
            if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
                kept = (f"the last good checkpoint (step {last_saved}) is kept at {ckpt_path}" if last_saved is not None
                        and ckpt_path else "no checkpoint had been written yet")
                raise NonFiniteLossError(
                    f"non-finite training signal at step {step + 1}: loss = {loss_value}, grad norm = {grad_norm}. "
                    f"Stopped before applying this update; {kept}. Lower the learning rate, keep grad_clip on, "
                    "or check the data of this step (batches.get(step))."
                )
            optimizer.step()
            ema.update(model)
            result.losses.append(loss_value)
            result.step = step + 1
            tok_s = progress.step(tokens.numel() * ctx.world_size)
            if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                record = {"step": step + 1, **_floats(metrics), "loss": loss_value, "lr": lr,
                          "grad_norm": grad_norm, "tokens_per_s": tok_s,
                          "elapsed_s": time.perf_counter() - t_start}
                result.metrics = record
                progress.log(record)
            if evaluate is not None and config.eval_every and (step + 1) % config.eval_every == 0 and ctx.is_main:
                val = evaluate(model)
                if val is not None:
                    result.val_losses[step + 1] = float(val)
                    progress.log_eval({"step": step + 1, "split": "val", "val_loss": float(val), "ema": False})
            if (step + 1) % config.ckpt_every == 0 or step + 1 == config.steps:
                save(step + 1)
                result.checkpoint = ckpt_path
    finally:
        progress.close()
    result.seconds = time.perf_counter() - t_start
    return result

r"""Multi-process data parallelism through ``torch.distributed`` (gloo on CPU, nccl on CUDA).

Launch with ``torchrun --nproc-per-node N ...`` (or any launcher that sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) and call :func:`init_distributed` before
:func:`flowlm.training.train`. Each process draws its shard ``batches.get(step, rank, W)``;
after the local backward the gradients are averaged,

.. math::
    g = \frac1W\sum_{r=1}^{W} g_r ,

with one all-reduce of a single flat buffer, so with equal shard sizes the update equals the
single-process update on the concatenated batch (``tests/test_distributed.py``). The all-reduce
runs after the last micro-batch (no overlap with backward: simple, exact, and independent of
how the objective calls the network).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistContext", "init_distributed", "context", "all_reduce_gradients", "broadcast_module", "all_reduce_mean"]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def context() -> DistContext:
    """The current process group's rank/world size (rank 0 of 1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size())
    return DistContext()


def init_distributed(backend: str | None = None) -> DistContext:
    """Join the process group described by the torchrun environment (no-op without ``WORLD_SIZE``).

    ``backend`` defaults to nccl when CUDA is available, else gloo; on CUDA the process's device
    becomes ``cuda:LOCAL_RANK``.
    """
    if dist.is_initialized():
        return context()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistContext()
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE is set but {missing} are not; launch with torchrun --nproc-per-node N")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return context()


@torch.no_grad()
def all_reduce_gradients(params: list[nn.Parameter], world_size: int) -> None:
    """Average ``.grad`` over all processes with one flat all-reduce (missing grads count as zero)."""
    if world_size <= 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(world_size)
    for p, g in zip(params, torch._utils._unflatten_dense_tensors(flat, grads)):
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)


@torch.no_grad()
def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Make every process hold rank ``src``'s parameters and buffers."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=src)


def all_reduce_mean(x: torch.Tensor, world_size: int) -> torch.Tensor:
    """Mean of a tensor over processes (identity when not distributed)."""
    if world_size <= 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / world_size

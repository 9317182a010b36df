"""Training hyper-parameters (paper defaults, DESIGN §2)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """What :func:`flowlm.training.train` needs besides the model, objective and data.

    ``batch_size`` is the global batch per optimizer step (split over ``world_size`` processes
    and ``grad_accum`` micro-batches). The learning rate rises linearly from 0 to ``lr`` over
    ``warmup_steps`` and then stays constant. ``bf16="auto"`` turns bf16 autocast on for CUDA
    only (never on CPU); ``device="auto"`` picks ``cuda:LOCAL_RANK`` when available, else CPU.
    ``out_dir=None`` trains without checkpoints or metric files. Every ``eval_every`` steps
    (0 = never) the loop calls the ``evaluate`` function given to :func:`~flowlm.training.train`
    (if any) and logs its validation loss.
    """

    steps: int
    batch_size: int
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 2500
    grad_clip: float | None = 1.0
    ema_decay: float = 0.9999
    grad_accum: int = 1
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    bf16: str | bool = "auto"
    log_every: int = 50
    ckpt_every: int = 1000
    eval_every: int = 1000
    out_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # JSON round-trips give lists
        problems = []
        if self.steps < 0:
            problems.append(f"steps must be >= 0 (got {self.steps})")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1 (got {self.batch_size})")
        if self.grad_accum < 1:
            problems.append(f"grad_accum must be >= 1 (got {self.grad_accum})")
        if self.lr <= 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if self.warmup_steps < 0:
            problems.append(f"warmup_steps must be >= 0 (got {self.warmup_steps})")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in [0, 1) (got {self.ema_decay})")
        if self.bf16 not in ("auto", True, False):
            problems.append(f"bf16 must be 'auto', True or False (got {self.bf16!r})")
        if self.log_every < 1 or self.ckpt_every < 1:
            problems.append("log_every and ckpt_every must be >= 1")
        if self.eval_every < 0:
            problems.append(f"eval_every must be >= 0 (0 = no periodic validation; got {self.eval_every})")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"TrainConfig.from_dict: unknown keys {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

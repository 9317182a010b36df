"""Training: config, loop, objectives, checkpoints, EMA, batch sources, data parallelism."""

from flowlm.data.batches import BatchSource, TensorBatchSource  # re-exported: the loop consumes them
from flowlm.training.checkpoint import (
    Checkpoint,
    CheckpointMismatchError,
    config_differences,
    load_checkpoint,
    save_checkpoint,
)
from flowlm.training.config import TrainConfig
from flowlm.training.distributed import DistContext, init_distributed
from flowlm.training.ema import EMA
from flowlm.training.loop import NonFiniteLossError, TrainResult, train
from flowlm.training.objectives import DistillationObjective, FLMObjective, Objective, TokenNetObjective

__all__ = [
    "TrainConfig",
    "train",
    "TrainResult",
    "NonFiniteLossError",
    "BatchSource",
    "TensorBatchSource",
    "Objective",
    "FLMObjective",
    "TokenNetObjective",
    "DistillationObjective",
    "EMA",
    "Checkpoint",
    "CheckpointMismatchError",
    "save_checkpoint",
    "load_checkpoint",
    "config_differences",
    "DistContext",
    "init_distributed",
]

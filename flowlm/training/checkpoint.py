r"""Checkpoints: one safetensors file holding everything a run needs to continue exactly.

Tensors (keys): ``model/<name>`` (the model's ``state_dict``), ``ema/<name>`` (EMA weights),
``optim/<i>/<key>`` (optimizer state of the i-th parameter), ``rng/cpu`` and ``rng/cuda/<k>``
(RNG states). Metadata (JSON strings): ``step``, ``config`` (``{"model": DiTConfig dict,
"train": TrainConfig dict, "tokenizer": ..., ...}``), ``optim_groups`` (hyper-parameters),
``ema_updates``, and ``stream`` (the batch source's position ``{"epoch", "index"}`` at ``step``,
when the source has one: :meth:`flowlm.data.batches.BlockBatchSource.position`).

Files are written atomically: to a temporary file in the same folder, flushed, then moved over
the target with ``os.replace``, so a crash never leaves a torn checkpoint behind.

:func:`load_checkpoint` with ``expected_config`` refuses a checkpoint whose configuration
differs in anything that changes the meaning of the weights (vocabulary size, widths, depth,
tokenizer, ...) with a :class:`CheckpointMismatchError` listing each difference.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from flowlm._io import atomic_write

__all__ = ["Checkpoint", "CheckpointMismatchError", "save_checkpoint", "load_checkpoint", "config_differences"]

FORMAT = "flowlm-checkpoint-1"
# model-config fields that do not change what the weights mean (runtime choices)
RUNTIME_FIELDS = frozenset({"dropout", "attention"})


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for another configuration (vocabulary, widths, tokenizer, ...)."""


@dataclass
class Checkpoint:
    step: int
    model: dict[str, Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    ema: dict[str, Tensor] = field(default_factory=dict)
    ema_updates: int = 0
    optimizer: dict[str, Any] | None = None
    rng: dict[str, Tensor] = field(default_factory=dict)
    path: str | None = None
    stream: dict[str, Any] | None = None  # the data stream's position at ``step``


def _plain(x: Any) -> Any:
    if hasattr(x, "to_dict"):
        return x.to_dict()
    return x


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module | dict[str, Tensor],
    *,
    step: int,
    config: dict[str, Any] | None = None,
    ema: dict[str, Tensor] | None = None,
    ema_updates: int = 0,
    optimizer: torch.optim.Optimizer | dict[str, Any] | None = None,
    rng: bool = True,
    stream: dict[str, Any] | None = None,
) -> str:
    """Write a checkpoint atomically (temp file + ``os.replace``); returns the path."""
    path = os.fspath(path)
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    tensors: dict[str, Tensor] = {}
    for k, v in state.items():
        tensors[f"model/{k}"] = v.detach().cpu().contiguous()
    for k, v in (ema or {}).items():
        tensors[f"ema/{k}"] = v.detach().cpu().contiguous()
    meta = {
        "format": FORMAT,
        "step": str(int(step)),
        "ema_updates": str(int(ema_updates)),
        "config": json.dumps({k: _plain(v) for k, v in (config or {}).items()}),
    }
    if stream is not None:
        meta["stream"] = json.dumps(stream)
    if optimizer is not None:
        osd = optimizer.state_dict() if isinstance(optimizer, torch.optim.Optimizer) else optimizer
        scalars: dict[str, dict[str, Any]] = {}
        for i, st in osd["state"].items():
            for key, val in st.items():
                if torch.is_tensor(val):
                    tensors[f"optim/{i}/{key}"] = val.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(i), {})[key] = val
        meta["optim_groups"] = json.dumps(osd["param_groups"])
        meta["optim_scalars"] = json.dumps(scalars)
    if rng:
        tensors["rng/cpu"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for k, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng/cuda/{k}"] = s
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def config_differences(saved: dict[str, Any], expected: dict[str, Any], prefix: str = "") -> list[str]:
    """``"key: checkpoint has A, expected B"`` for every field of ``expected`` that ``saved`` contradicts."""
    out = []
    for key, want in expected.items():
        name = f"{prefix}{key}"
        if prefix == "model." and key in RUNTIME_FIELDS:
            continue
        if key not in saved:
            out.append(f"{name}: missing from the checkpoint, expected {want!r}")
            continue
        have = saved[key]
        if isinstance(want, dict) and isinstance(have, dict):
            out.extend(config_differences(have, want, prefix=f"{name}."))
        elif isinstance(want, (list, tuple)) and isinstance(have, (list, tuple)):
            if list(want) != list(have):
                out.append(f"{name}: checkpoint has {have!r}, expected {want!r}")
        elif have != want:
            out.append(f"{name}: checkpoint has {have!r}, expected {want!r}")
    return out


def _normalize_expected(expected: Any) -> dict[str, Any]:
    if hasattr(expected, "to_dict") and hasattr(expected, "vocab_size"):
        return {"model": expected.to_dict()}  # a bare DiTConfig
    if isinstance(expected, dict):
        return {k: _plain(v) for k, v in expected.items()}
    raise TypeError(f"expected_config must be a DiTConfig or a dict, got {type(expected).__name__}")


def load_checkpoint(
    path: str | os.PathLike, expected_config: Any = None, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Read a checkpoint; with ``expected_config`` (a ``DiTConfig`` or ``{"model": ..., "tokenizer": ...}``)
    raise :class:`CheckpointMismatchError` if the saved configuration differs."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    with safe_open(path, framework="pt", device=str(map_location)) as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise CheckpointMismatchError(f"{path!r} is not a flowlm checkpoint (format {meta.get('format')!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta.get("config", "{}"))
    if expected_config is not None:
        diffs = config_differences(config, _normalize_expected(expected_config))
        if diffs:
            raise CheckpointMismatchError(
                f"checkpoint {path!r} was written for another configuration:\n  " + "\n  ".join(diffs)
                + "\nload it with a model built from the checkpoint's own config, or train from scratch "
                "(another out_dir, or resume=False)"
            )
    group = lambda p: {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}  # noqa: E731
    optimizer = None
    if "optim_groups" in meta:
        state: dict[int, dict[str, Any]] = {}
        for k, v in group("optim/").items():
            i, key = k.split("/", 1)
            state.setdefault(int(i), {})[key] = v
        for i, sc in json.loads(meta.get("optim_scalars", "{}")).items():
            state.setdefault(int(i), {}).update(sc)
        optimizer = {"state": state, "param_groups": json.loads(meta["optim_groups"])}
    return Checkpoint(
        step=int(meta.get("step", 0)),
        model=group("model/"),
        config=config,
        ema=group("ema/"),
        ema_updates=int(meta.get("ema_updates", 0)),
        optimizer=optimizer,
        rng=group("rng/"),
        path=path,
        stream=json.loads(meta["stream"]) if "stream" in meta else None,
    )

"""One JSON record per evaluation, so every number in a table can be traced to how it was made.

A record says what was evaluated (method, checkpoint and its content hash, config), how the samples
were drawn (sampler, steps, NFE, seed, number of samples), how they were scored (evaluator) and
what came out (metrics, wall time). Records are plain JSON (strict: non-finite floats become
``null``), written atomically, one file per evaluation.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import flowlm
from flowlm._io import atomic_write_json, file_hash

__all__ = ["EvalRecord", "file_hash", "to_jsonable", "load_record", "load_records"]


def to_jsonable(obj: Any) -> Any:
    """Recursively turn dataclasses, paths, enums, tensors, numpy scalars into strict-JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, (os.PathLike, torch.device, torch.dtype)):
        return str(obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return to_jsonable(obj.item())
    return repr(obj)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class EvalRecord:
    """Everything about one evaluation (one method at one step count, or the data reference).

    Attributes:
        method: ``"FLM"``, ``"FMLM"``, ``"data"`` (held-out reference) or any label.
        metrics: e.g. ``gen_ppl``, ``gen_ppl_sample_mean``, ``entropy``, ``flags`` (see
            :func:`flowlm.evaluation.metrics.evaluate_samples`).
        checkpoint / checkpoint_hash: the checkpoint file and :func:`file_hash` of it.
        config: the run configuration (any dataclass or dict; stored as JSON).
        sampler: sampler name and options (e.g. ``{"name": "euler", "gamma": 0.0}``).
        steps / nfe: sampler steps and network evaluations per sample batch.
        wall_time_s: sampling wall time for all samples (scoring excluded).
    """

    method: str
    metrics: dict[str, Any]
    evaluator: str
    n_samples: int
    steps: int | None = None
    nfe: int | None = None
    seed: int | None = None
    sampler: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    checkpoint_hash: str | None = None
    config: Any = None
    wall_time_s: float | None = None
    created_utc: str = field(default_factory=_now)
    flowlm_version: str = flowlm.__version__
    torch_version: str = torch.__version__
    host: str = field(default_factory=platform.node)
    device: str | None = None

    @property
    def wall_time_per_sample_s(self) -> float | None:
        if self.wall_time_s is None or not self.n_samples:
            return None
        return self.wall_time_s / self.n_samples

    def to_dict(self) -> dict[str, Any]:
        d = to_jsonable(self)
        d["wall_time_per_sample_s"] = to_jsonable(self.wall_time_per_sample_s)
        return d

    def save(self, path: str | os.PathLike) -> Path:
        """Write the record as JSON to ``path`` (atomically; parent folders are created)."""
        return atomic_write_json(path, self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def load_record(path: str | os.PathLike) -> EvalRecord:
    """Read one record written by :meth:`EvalRecord.save`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"load_record: {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"load_record: {path} is not valid JSON ({err}); delete it and re-run the evaluation") from err
    missing = {"method", "metrics", "evaluator", "n_samples"} - set(data)
    if missing:
        raise ValueError(f"load_record: {path} is not an evaluation record (missing {sorted(missing)})")
    return EvalRecord.from_dict(data)


def load_records(folder: str | os.PathLike) -> list[EvalRecord]:
    """All records (``*.json``) in a folder, sorted by file name."""
    return [load_record(p) for p in sorted(Path(folder).glob("*.json"))]

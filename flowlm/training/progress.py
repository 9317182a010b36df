"""Progress display (tqdm: loss, tokens/s, ETA) and metric logging (one JSON object per line)."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

from tqdm.auto import tqdm

__all__ = ["Progress"]


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "numel", lambda: 2)() == 1:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class Progress:
    """A tqdm bar over optimizer steps plus an append-only ``metrics.jsonl``.

    Only the main process (rank 0) displays and writes; ``metrics_path=None`` writes nothing.
    """

    def __init__(self, total: int, initial: int = 0, *, enabled: bool = True,
                 metrics_path: str | None = None, main: bool = True) -> None:
        self.main = main
        self.bar = tqdm(total=total, initial=initial, disable=not (enabled and main), unit="step",
                        dynamic_ncols=True, desc="train")
        self.metrics_path = metrics_path if main else None
        if self.metrics_path:
            os.makedirs(os.path.dirname(os.path.abspath(self.metrics_path)), exist_ok=True)
        self._t0 = time.perf_counter()
        self._tokens = 0

    def step(self, tokens: int) -> float:
        """Advance one step that consumed ``tokens`` tokens (all processes); returns tokens/s so far."""
        self._tokens += tokens
        self.bar.update(1)
        return self._tokens / max(time.perf_counter() - self._t0, 1e-9)

    def log(self, record: dict[str, Any]) -> None:
        rec = {k: _jsonable(v) for k, v in record.items()}
        if self.main:
            shown = {"loss": f"{rec['loss']:.4f}" if isinstance(rec.get("loss"), float) else rec.get("loss")}
            if "tokens_per_s" in rec:
                shown["tok/s"] = f"{rec['tokens_per_s']:.0f}"
            self.bar.set_postfix(shown, refresh=False)
        if self.metrics_path:
            with open(self.metrics_path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")

    def write(self, message: str) -> None:
        if self.main:
            self.bar.write(message)

    def close(self) -> None:
        self.bar.close()

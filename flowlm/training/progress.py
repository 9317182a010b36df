"""Progress display and metric logging (one JSON object per line).

On a terminal the display is a tqdm bar (loss, tokens/s, ETA). When the output is not a terminal
(a log file, CI, ``nohup``, a pipe) a bar would fill the log with carriage-return redraws, so
:func:`progress_bar` prints plain lines instead: one every ``every_fraction`` of the total (5%) or
every ``every_seconds`` (30 s), whichever comes first, plus one at the end, e.g.::

    train: 400/2000 steps (20%), 1:02 elapsed, ETA 4:08, loss=3.2145, tok/s=20512
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

__all__ = ["Progress", "PlainProgress", "progress_bar", "is_interactive"]


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "numel", lambda: 2)() == 1:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def is_interactive(file: Any = None) -> bool:
    """True when ``file`` (default ``sys.stderr``) is a terminal, where a redrawn bar is readable."""
    file = sys.stderr if file is None else file
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # closed or file-like objects without isatty
        return False


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class PlainProgress:
    """A tqdm-like progress report for non-interactive output: periodic plain lines, no ``\\r``.

    Supports the part of tqdm's interface flowlm uses: ``update``, ``set_postfix(_str)``, ``write``,
    ``close`` and iteration. A line is printed when the count reaches the next multiple of
    ``every_fraction · total`` or ``every_seconds`` have passed since the last line, and at
    ``close`` if anything happened since.
    """

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, initial: int = 0,
                 desc: str = "", unit: str = "it", file: Any = None, every_fraction: float = 0.05,
                 every_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.n, self.desc, self.unit = iterable, total, initial, desc, unit
        self.file = file
        self.every_seconds, self.clock = every_seconds, clock
        self.stride = max(1, math.ceil(total * every_fraction)) if total else None
        self._start_n = initial
        self._t0 = self._last_t = clock()
        self._last_n = initial
        self._postfix = ""
        self._closed = False

    @property
    def _out(self) -> Any:
        return self.file if self.file is not None else sys.stderr

    def line(self) -> str:
        """The status line for the current count (what gets printed)."""
        elapsed = self.clock() - self._t0
        head = f"{self.desc}: " if self.desc else ""
        unit = self.unit if self.unit.endswith("s") else self.unit + "s"
        if self.total:
            pct = 100.0 * self.n / self.total
            text = f"{head}{self.n}/{self.total} {unit} ({pct:.0f}%), {_clock(elapsed)} elapsed"
            done = self.n - self._start_n
            if 0 < done and self.n < self.total:
                text += f", ETA {_clock(elapsed / done * (self.total - self.n))}"
        else:
            text = f"{head}{self.n} {unit}, {_clock(elapsed)} elapsed"
        if self._postfix:
            text += ", " + self._postfix
        return text

    def _emit(self) -> None:
        print(self.line(), file=self._out, flush=True)
        self._last_n, self._last_t = self.n, self.clock()

    def update(self, n: int = 1) -> None:
        self.n += n
        at_milestone = self.stride is not None and (self.n // self.stride) > (self._last_n // self.stride)
        finished = self.total is not None and self.n >= self.total
        if at_milestone or finished or self.clock() - self._last_t >= self.every_seconds:
            self._emit()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in {**(ordered_dict or {}), **kwargs}.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = s

    def write(self, message: str, file: Any = None) -> None:
        print(message, file=file if file is not None else self._out, flush=True)

    def close(self) -> None:
        if not self._closed and self.n != self._last_n:
            self._emit()
        self._closed = True

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress report wraps no iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, initial: int = 0,
                 desc: str = "", unit: str = "it", disable: bool = False, file: Any = None,
                 interactive: bool | None = None, **plain: Any) -> Any:
    """A tqdm bar on a terminal, a :class:`PlainProgress` otherwise (``interactive=None``: detect).

    ``file`` defaults to ``sys.stderr``; ``plain`` goes to :class:`PlainProgress`
    (``every_fraction``, ``every_seconds``).
    """
    if disable:
        return tqdm(iterable, total=total, initial=initial, disable=True)
    interactive = is_interactive(file) if interactive is None else interactive
    if interactive:
        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, file=file, dynamic_ncols=True)
    return PlainProgress(iterable, total=total, initial=initial, desc=desc, unit=unit, file=file, **plain)


class Progress:
    """A progress display over optimizer steps plus an append-only ``metrics.jsonl``.

    Only the main process (rank 0) displays and writes; ``metrics_path=None`` writes nothing.
    ``interactive=None`` picks a tqdm bar on a terminal and plain periodic lines otherwise.
    """

    def __init__(self, total: int, initial: int = 0, *, enabled: bool = True,
                 metrics_path: str | None = None, main: bool = True, interactive: bool | None = None,
                 file: Any = None) -> None:
        self.main = main
        self.shown = enabled and main
        self.bar = progress_bar(total=total, initial=initial, disable=not self.shown, unit="step",
                                desc="train", interactive=interactive, file=file)
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

    def _record(self, rec: dict[str, Any]) -> None:
        if self.metrics_path:
            with open(self.metrics_path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")

    def log(self, record: dict[str, Any]) -> None:
        """A training record: shown on the bar (loss, tok/s) and appended to the metrics file."""
        rec = {k: _jsonable(v) for k, v in record.items()}
        if self.main:
            shown = {"loss": f"{rec['loss']:.4f}" if isinstance(rec.get("loss"), float) else rec.get("loss")}
            if "tokens_per_s" in rec:
                shown["tok/s"] = f"{rec['tokens_per_s']:.0f}"
            self.bar.set_postfix(shown, refresh=False)
        self._record(rec)

    def log_eval(self, record: dict[str, Any]) -> None:
        """A validation record (``{"step", "split": "val", "val_loss", ...}``): one printed line + the metrics file."""
        rec = {k: _jsonable(v) for k, v in record.items()}
        if isinstance(rec.get("val_loss"), float):
            self.write(f"step {rec.get('step')}: validation loss {rec['val_loss']:.4f}")
        self._record(rec)

    def write(self, message: str) -> None:
        if self.shown:
            self.bar.write(message)

    def close(self) -> None:
        self.bar.close()

"""Internal file and device plumbing shared by the whole package (written once, used everywhere).

* :func:`atomic_write` and its text / JSON / bytes forms: the file is written to a temporary name
  in the target's folder, flushed and ``fsync``-ed, then moved over the target with ``os.replace``.
  A reader sees the old file or the new one, never half of one; a writer that fails leaves the old
  file untouched and no temporary file behind. New files get ordinary permissions (``0o666`` minus
  the umask, i.e. ``0644`` under the usual umask), not the owner-only ``0600`` of ``mkstemp``.
* :func:`atomic_directory`: the same for a folder of files (a staging folder renamed into place).
* :func:`cache_root`: ``$FLOWLM_CACHE``, else ``~/.cache/flowlm``.
* :func:`short_hash` / :func:`file_hash`: the first hex digits of a SHA-256.
* :func:`resolve_device` / :func:`device_name`: ``"auto"`` is ``cuda:LOCAL_RANK`` when CUDA is
  available, else CPU; an unavailable device is a :class:`DeviceError` saying what to pass instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "write_result_files",
    "atomic_write_bytes",
    "atomic_directory",
    "cache_root",
    "short_hash",
    "file_hash",
    "DeviceError",
    "resolve_device",
    "device_name",
]


# ----------------------------------------------------------------------------- atomic writes
def _temp_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp)`` to write a temporary file, then move it over ``path`` atomically.

    ``tmp`` lies in ``path``'s folder (created if missing) and already exists, empty, with mode
    ``0o666 & ~umask``; ``writer`` may open it by name (``torch.save``, ``safetensors``' ``save_file``,
    ``open(tmp, "w")``). Whatever mode ``writer`` leaves (``save_file`` replaces the file with an
    owner-only one), the result gets that ordinary mode back. If ``writer`` raises, ``path`` keeps
    its old content and ``tmp`` is removed. Returns ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # umask applies: 0644 usually
    try:
        mode = stat.S_IMODE(os.stat(tmp).st_mode)  # 0o666 & ~umask, read without touching the umask
        writer(tmp)
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:
            os.chmod(tmp, mode)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def write_result_files(stem: str | os.PathLike, record: Any, markdown: str) -> tuple[Path, Path]:
    """A benchmark's results: ``stem.json`` (``record``) and ``stem.md`` (``markdown``), both atomic,
    the folder created. Returns the two paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    return (atomic_write_json(stem.with_suffix(".json"), record, indent=2),
            atomic_write_text(stem.with_suffix(".md"), markdown.rstrip("\n") + "\n"))


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps_kwargs: Any) -> Path:
    """``json.dumps(obj, **dumps_kwargs)`` plus a final newline, written atomically.

    The text is made before the file is touched, so an unserializable ``obj`` changes nothing.
    """
    return atomic_write_text(path, json.dumps(obj, **dumps_kwargs) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Fill a staging folder, then rename it to ``path`` in one step.

    ``with atomic_directory(dest) as tmp: write files into tmp``. On success ``tmp`` becomes
    ``dest``; if ``dest`` appeared meanwhile (a concurrent writer won), the staging folder is
    dropped and ``dest`` kept. On error the staging folder is removed. The folder has mode
    ``0o777 & ~umask`` (not the owner-only ``0700`` of ``mkdtemp``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    os.mkdir(tmp, 0o777)
    try:
        yield tmp
        try:
            tmp.rename(path)
        except OSError:
            if not path.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- cache and hashes
def cache_root() -> Path:
    """``$FLOWLM_CACHE`` if set (and non-empty), else ``~/.cache/flowlm``."""
    return Path(os.environ.get("FLOWLM_CACHE") or Path.home() / ".cache" / "flowlm").expanduser()


def short_hash(data: str | bytes | Iterable[str | bytes], length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``data``.

    ``data`` is a string (hashed as UTF-8), bytes, or an iterable of those, hashed as their
    concatenation (so add your own separators between parts).
    """
    h = hashlib.sha256()
    for chunk in [data] if isinstance(data, (str, bytes)) else data:
        h.update(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
    return h.hexdigest()[:length]


def file_hash(path: str | os.PathLike, length: int = 16) -> str:
    """:func:`short_hash` of a file's bytes (a checkpoint's identity).

    A folder (e.g. a checkpoint directory) hashes all its files in sorted order, names included.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"file_hash: {p} does not exist; pass the checkpoint file that was evaluated")

    def chunks() -> Iterator[bytes]:
        for f in sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]:
            if p.is_dir():
                yield str(f.relative_to(p)).encode()
            with open(f, "rb") as fh:
                yield from iter(lambda: fh.read(1 << 20), b"")

    return short_hash(chunks(), length)


# ----------------------------------------------------------------------------- devices
class DeviceError(ValueError):
    """A device that does not exist on this machine (or a string that names no device)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """A usable ``torch.device``.

    ``"auto"`` is ``cuda:LOCAL_RANK`` (``LOCAL_RANK`` from torchrun, default 0) when CUDA is
    available, else CPU. Anything else is parsed and checked: an unknown string, CUDA without a
    GPU (or an index past the last GPU) and MPS where it is unavailable raise :class:`DeviceError`.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(device)!r} requested but CUDA is not available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(device)!r} requested but only {torch.cuda.device_count()} CUDA "
                              f"device(s) exist; use cuda:0 … cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {str(device)!r} requested but MPS is not available; use --device cpu")
    return dev


def device_name(device: str | torch.device) -> str:
    """A human-readable name for records: the GPU model, or ``cpu (N threads)``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{dev.type} ({torch.get_num_threads()} threads)"

"""The internal I/O module: atomic writes, permissions, cache root, hashes, device resolution."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest
import torch

from flowlm._io import (
    DeviceError,
    atomic_directory,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    cache_root,
    file_hash,
    resolve_device,
    short_hash,
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_have_ordinary_permissions(tmp_path, umask_022):
    atomic_write_text(tmp_path / "a.txt", "hi")
    atomic_write_json(tmp_path / "b.json", {"x": 1})
    atomic_write_bytes(tmp_path / "c.bin", b"\x00\x01")
    atomic_write(tmp_path / "d.pt", lambda tmp: torch.save({"w": torch.ones(2)}, tmp))
    for name in ("a.txt", "b.json", "c.bin", "d.pt"):
        assert _mode(tmp_path / name) == 0o644, name  # not mkstemp's 0600
    with atomic_directory(tmp_path / "folder") as d:
        (d / "f.txt").write_text("x")
    assert _mode(tmp_path / "folder") == 0o755  # not mkdtemp's 0700


def test_atomic_write_contents_and_parents(tmp_path):
    p = atomic_write_json(tmp_path / "deep" / "er" / "x.json", {"a": [1, 2]}, indent=2)
    assert json.loads(p.read_text()) == {"a": [1, 2]}
    assert p.read_text().endswith("\n")
    assert torch.equal(torch.load(atomic_write(tmp_path / "t.pt", lambda tmp: torch.save(torch.arange(3), tmp)),
                                  weights_only=True), torch.arange(3))


def test_failing_writer_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    def broken(tmp):
        tmp.write_text("half of the new conte")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    with pytest.raises(TypeError):  # unserializable: fails before any file is touched
        atomic_write_json(target, {"x": object()})
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_atomic_directory_failure_and_concurrent_winner(tmp_path):
    dest = tmp_path / "cache"
    with pytest.raises(ValueError), atomic_directory(dest) as d:
        (d / "a").write_text("1")
        raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []
    dest.mkdir()
    (dest / "winner").write_text("w")
    with atomic_directory(dest) as d:  # another process finished first: keep its folder
        (d / "loser").write_text("l")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    assert sorted(p.name for p in dest.iterdir()) == ["winner"]


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWLM_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.setenv("FLOWLM_CACHE", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "flowlm"


def test_hashes_match_sha256(tmp_path):
    assert short_hash("abc") == hashlib.sha256(b"abc").hexdigest()[:16]
    assert short_hash([b"a", "bc"], length=12) == hashlib.sha256(b"abc").hexdigest()[:12]
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(3 << 20))  # several read chunks
    assert file_hash(f) == hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        file_hash(tmp_path / "missing")


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(DeviceError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    if torch.cuda.is_available():
        monkeypatch.setenv("LOCAL_RANK", "0")
        assert resolve_device("auto") == torch.device("cuda", 0)
        with pytest.raises(DeviceError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(DeviceError, match="CUDA is not available; use --device cpu"):
            resolve_device("cuda:0")
    if not torch.backends.mps.is_available():
        with pytest.raises(DeviceError, match="MPS is not available"):
            resolve_device("mps")
    assert issubclass(DeviceError, ValueError)


def test_auto_device_uses_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == torch.device("cuda", 3)


def test_the_library_writers_leave_ordinary_permissions(tmp_path, umask_022, monkeypatch):
    # the writers that used mkstemp (0600) before they went through flowlm._io
    from flowlm.data.tokenizers import build_tokenizer
    from flowlm.evaluation import EvalRecord, load_record
    from flowlm.training.checkpoint import load_checkpoint, save_checkpoint

    ckpt = save_checkpoint(tmp_path / "ckpt.safetensors", {"w": torch.arange(4.0)}, step=7)
    assert _mode(ckpt) == 0o644 and load_checkpoint(ckpt).step == 7
    rec = EvalRecord(method="FLM", metrics={"gen_ppl": float("inf")}, evaluator="toy", n_samples=2).save(tmp_path / "r.json")
    assert _mode(rec) == 0o644 and load_record(rec).metrics["gen_ppl"] is None  # strict JSON
    monkeypatch.setenv("FLOWLM_CACHE", str(tmp_path / "cache"))
    build_tokenizer("bpe", "to be or not to be, that is the question " * 20, vocab_size=270)
    (cached,) = (tmp_path / "cache" / "tokenizers").iterdir()
    assert _mode(cached) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "ckpt.safetensors", "r.json"]  # no temp files

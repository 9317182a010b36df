"""Checkpoints: exact round trip, atomic writes, and refusal of another configuration."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

import flowlm.training.checkpoint as ckmod
from flowlm.models import FLM
from flowlm.nets import DiTConfig
from flowlm.training import (
    EMA,
    CheckpointMismatchError,
    TensorBatchSource,
    TrainConfig,
    FLMObjective,
    load_checkpoint,
    save_checkpoint,
    train,
)

CFG = DiTConfig(vocab_size=12, max_length=8, width=32, depth=1, heads=4, cond=16, dropout=0.0)
TOKENIZER = {"kind": "char", "vocab": "abcdefghijkl"}


def _trained_state():
    torch.manual_seed(0)
    model = FLM(CFG)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    ema = EMA(model, 0.9)
    tokens = torch.randint(0, 12, (4, 8))
    for _ in range(3):
        loss, _ = model.loss(tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model)
    return model, opt, ema, tokens


def test_round_trip_restores_everything(tmp_path):
    model, opt, ema, tokens = _trained_state()
    path = tmp_path / "ck.safetensors"
    rng = torch.get_rng_state()
    save_checkpoint(path, model, step=3, config={"model": CFG, "tokenizer": TOKENIZER},
                    ema=ema.state_dict(), ema_updates=ema.num_updates, optimizer=opt)
    ck = load_checkpoint(path, expected_config={"model": CFG, "tokenizer": TOKENIZER})
    assert ck.step == 3 and ck.ema_updates == 3 and ck.config["tokenizer"] == TOKENIZER
    assert torch.equal(ck.rng["cpu"], rng)
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model[k], v), k
    for k, v in ema.state_dict().items():
        assert torch.equal(ck.ema[k], v), k
    # a fresh model + optimizer loaded from the file takes the same next step as the original
    torch.manual_seed(7)
    clone = FLM(CFG)
    clone.load_state_dict(ck.model)
    opt2 = torch.optim.AdamW(clone.parameters(), lr=1.0)
    opt2.load_state_dict(ck.optimizer)
    assert opt2.param_groups[0]["lr"] == 1e-2 and tuple(opt2.param_groups[0]["betas"]) == (0.8, 0.95)
    for m, o in ((model, opt), (clone, opt2)):
        torch.manual_seed(3)
        loss, _ = m.loss(tokens)
        o.zero_grad()
        loss.backward()
        o.step()
    for k, v in model.state_dict().items():
        assert torch.equal(clone.state_dict()[k], v), k


def test_another_configuration_is_refused_with_the_differences(tmp_path):
    model, _, _, _ = _trained_state()
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, step=1, config={"model": CFG, "tokenizer": TOKENIZER})
    with pytest.raises(CheckpointMismatchError, match=r"model\.vocab_size: checkpoint has 12, expected 50257"):
        load_checkpoint(path, expected_config=CFG.replace(vocab_size=50257))
    with pytest.raises(CheckpointMismatchError, match=r"model\.width: checkpoint has 32, expected 64") as err:
        load_checkpoint(path, expected_config=CFG.replace(width=64, depth=2))
    assert "model.depth: checkpoint has 1, expected 2" in str(err.value)
    with pytest.raises(CheckpointMismatchError, match=r"tokenizer\.kind: checkpoint has 'char', expected 'gpt2'"):
        load_checkpoint(path, expected_config={"model": CFG, "tokenizer": {"kind": "gpt2"}})
    with pytest.raises(CheckpointMismatchError, match="missing from the checkpoint"):
        load_checkpoint(path, expected_config={"model": CFG, "dataset": "owt"})
    # runtime choices (dropout, attention kernel) do not change what the weights mean
    assert load_checkpoint(path, expected_config=CFG.replace(dropout=0.3, attention="math")).step == 1


def test_resume_into_a_different_model_is_refused(tmp_path):
    data = torch.randint(0, 12, (16, 8))
    cfg = TrainConfig(steps=2, batch_size=4, out_dir=str(tmp_path), progress=False)
    train(FLM(CFG), FLMObjective(), TensorBatchSource(data, 4), cfg)
    with pytest.raises(CheckpointMismatchError, match="heads: checkpoint has 4, expected 2"):
        train(FLM(CFG.replace(heads=2)), FLMObjective(), TensorBatchSource(data, 4), cfg.replace(steps=4))
    with pytest.raises(CheckpointMismatchError, match="tokenizer"):
        train(FLM(CFG), FLMObjective(), TensorBatchSource(data, 4), cfg.replace(steps=4),
              checkpoint_config={"tokenizer": TOKENIZER})


def test_writes_are_atomic(tmp_path, monkeypatch):
    model, _, _, _ = _trained_state()
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, step=1, config={"model": CFG})
    before = path.read_bytes()

    def torn_write(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckmod, "save_file", torn_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, step=2, config={"model": CFG})
    assert path.read_bytes() == before  # the previous checkpoint is untouched
    assert os.listdir(tmp_path) == ["ck.safetensors"]  # and no temporary file is left behind
    assert load_checkpoint(path).step == 1


def test_foreign_files_are_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointMismatchError, match="not a flowlm checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")

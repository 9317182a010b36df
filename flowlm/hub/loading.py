"""One entry point for every checkpoint a user can point ``--checkpoint`` at.

:func:`load_any` returns ``(model, tokenizer, RunConfig)`` for

* a flowlm run directory or its ``checkpoint.safetensors`` (:func:`flowlm.pipeline.load_model`),
* a folder written by :func:`flowlm.hub.save_pretrained`,
* the FLM authors' Lightning ``.ckpt`` file or Hugging Face folder (:func:`flowlm.hub.load_reference`).

For an authors' checkpoint the tokenizer is the one of its vocabulary (bert-base-uncased for
V = 30522, GPT-2 + [PAD] for V = 50258), or the one passed as ``tokenizer`` (a kind such as
``bert``/``gpt2``, or the path of a flowlm ``tokenizer.json`` spec); with an unknown vocabulary and
no tokenizer, :class:`TokenIds` "decodes" to space-separated token ids.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from flowlm.data.tokenizers import Tokenizer

__all__ = ["load_any", "run_config_for", "resolve_tokenizer", "TokenIds", "checkpoint_kind", "checkpoint_file",
           "resolve_checkpoint_path", "write_run"]


class TokenIds(Tokenizer):
    """Stand-in tokenizer for an unknown vocabulary: ``decode`` prints the token ids, separated by spaces."""

    kind = "ids"

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = int(vocab_size)
        self.bos_id = self.eos_id = self.pad_id = -1  # nothing is dropped

    def encode(self, text: str) -> list[int]:
        return [int(w) for w in text.split()]

    def decode(self, ids: list[int]) -> str:
        return " ".join(str(int(i)) for i in ids)

    def spec(self) -> dict[str, Any]:
        return {"kind": "ids", "vocab_size": self.vocab_size}


def resolve_checkpoint_path(p: str | os.PathLike) -> Path:
    """``DIR`` for ``DIR/model.safetensors`` of a pretrained / Hugging Face folder, else ``p``."""
    p = Path(p).expanduser()
    if p.is_file() and p.name == "model.safetensors" and (p.parent / "config.json").is_file():
        return p.parent
    return p


def checkpoint_kind(path: str | os.PathLike) -> str:
    """``"run"`` (flowlm run / checkpoint.safetensors), ``"pretrained"`` (save_pretrained folder),
    ``"reference"`` (the authors' .ckpt or Hugging Face folder)."""
    p = resolve_checkpoint_path(Path(path).expanduser())
    if p.is_dir():
        if (p / "checkpoint.safetensors").is_file() or (p / "run.json").is_file():
            return "run"
        cfg = p / "config.json"
        if cfg.is_file() and (p / "model.safetensors").is_file():
            try:
                return "pretrained" if "flowlm" in json.loads(cfg.read_text(encoding="utf-8")) else "reference"
            except (json.JSONDecodeError, TypeError):
                return "reference"
        return "run"  # let the run loader say what is missing
    if p.suffix == ".safetensors":
        return "run"
    return "reference"


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The file holding the weights of any checkpoint :func:`load_any` reads (to hash or name it):
    a run's ``checkpoint.safetensors``, a folder's ``model.safetensors``, or the ``.ckpt`` itself."""
    from flowlm.pipeline import find_checkpoint

    p = resolve_checkpoint_path(Path(path).expanduser())
    kind = checkpoint_kind(p)
    if kind == "run":
        return find_checkpoint(p)
    if p.is_dir():
        return p / "model.safetensors"
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {p}")
    return p


def resolve_tokenizer(spec: str | None, vocab_size: int) -> Tokenizer:
    """The tokenizer named by ``spec`` (None: the authors' for this V, else :class:`TokenIds`); its
    vocabulary must have ``vocab_size`` tokens."""
    from flowlm.data.tokenizers import BertTokenizer, GPT2Tokenizer, tokenizer_from_spec
    from flowlm.hub.reference import KNOWN_VOCABULARIES, reference_tokenizer
    from flowlm.pipeline import RunError

    if spec is None:
        return reference_tokenizer(vocab_size) if vocab_size in KNOWN_VOCABULARIES else TokenIds(vocab_size)
    if spec == "ids":
        tok: Tokenizer = TokenIds(vocab_size)
    elif spec == "bert":
        tok = BertTokenizer()
    elif spec == "gpt2":
        tok = GPT2Tokenizer(pad_token=vocab_size == 50258)
    elif Path(spec).expanduser().is_file():
        try:
            tok = tokenizer_from_spec(json.loads(Path(spec).expanduser().read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise RunError(f"--tokenizer {spec}: not a JSON tokenizer spec ({e})") from None
    else:
        raise RunError(f"--tokenizer {spec!r}: give bert, gpt2, ids, or the path of a flowlm tokenizer.json")
    if tok.vocab_size != vocab_size:
        raise RunError(f"--tokenizer {spec}: it has {tok.vocab_size} tokens but the model's vocabulary has {vocab_size}")
    return tok


def run_config_for(model: Any, tokenizer: Tokenizer):
    """A :class:`~flowlm.presets.RunConfig` describing an imported model (its DiT sizes and sampling
    defaults: 1024 Euler steps for an FLM of the authors' vocabularies, else 64; FMLM one step, γ = 0.8
    on LM1B and 1.0 on OWT as in the authors' evaluation)."""
    from flowlm.hub.reference import KNOWN_VOCABULARIES
    from flowlm.presets import TOKENIZER_KINDS, RunConfig

    c = model.config
    V = c.vocab_size
    return RunConfig().replace(
        preset="imported", tokenizer=tokenizer.kind if tokenizer.kind in TOKENIZER_KINDS else "char",
        vocab_size=V if tokenizer.kind == "bpe" else 0, seq_len=c.max_length, depth=c.depth, width=c.width,
        heads=c.heads, mlp_ratio=c.mlp_ratio, cond=c.cond, dropout=c.dropout, attn_softcap=c.attn_softcap or 0.0,
        out_softcap=c.out_softcap or 0.0, attention=c.attention, projected=bool(model.projected),
        sample_steps=1024 if V in KNOWN_VOCABULARIES else 64, distill_sample_steps=1,
        gamma={30522: 0.8, 50258: 1.0}.get(V, 0.0), n_samples=4,
    )


def load_any(
    path: str | os.PathLike, *, device: str | torch.device = "cpu", tokenizer: str | None = None,
    trust_pickle: bool = False,
):
    """``(model, tokenizer, RunConfig)`` from any checkpoint (see the module docstring); eval mode on ``device``."""
    from flowlm.hub.pretrained import from_pretrained
    from flowlm.hub.reference import load_reference
    from flowlm.pipeline import load_model

    path = resolve_checkpoint_path(Path(path).expanduser())
    kind = checkpoint_kind(path)
    if kind == "run":
        if tokenizer is not None:
            from flowlm.pipeline import RunError

            raise RunError("--tokenizer is for imported checkpoints; a flowlm run carries its own tokenizer.json")
        return load_model(path, device=device)
    if kind == "pretrained":
        model = from_pretrained(path, device=device)
        tok = model.tokenizer if tokenizer is None and model.tokenizer is not None \
            else resolve_tokenizer(tokenizer, model.vocab_size)
    else:
        model = load_reference(path, trust_pickle=trust_pickle, device=device)
        tok = resolve_tokenizer(tokenizer, model.vocab_size)
    return model, tok, run_config_for(model, tok)


def write_run(model: Any, tokenizer: Tokenizer, out_dir: str | os.PathLike, *, source: str, weights: str) -> Path:
    """Write ``model`` as a normal flowlm run directory (``config.json``, ``tokenizer.json``,
    ``run.json``, ``checkpoint.safetensors`` holding the imported weights as the model weights), which
    ``flowlm sample | eval | bench --checkpoint`` and :func:`flowlm.pipeline.load_model` read.
    Refuses an existing non-empty ``out_dir`` and a tokenizer that flowlm cannot rebuild."""
    from flowlm.pipeline import CHECKPOINT_NAME, RunError, _checkpoint_config, _write_run_files
    from flowlm.presets import TOKENIZER_KINDS
    from flowlm.training import save_checkpoint

    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"{out} exists and is not empty; choose a new --out (nothing was changed)")
    if tokenizer.kind not in TOKENIZER_KINDS:
        raise RunError(f"the vocabulary ({tokenizer.vocab_size} tokens) has no known tokenizer; pass --tokenizer "
                       "(bert, gpt2, or a flowlm tokenizer.json) so the run can decode text")
    if model.config.time_features != 256:
        raise RunError(f"this network has {model.config.time_features} sinusoidal time features; a flowlm run "
                       "stores 256 (use flowlm.hub.save_pretrained for it instead)")
    cfg = run_config_for(model, tokenizer)
    kind = model.kind
    spec = tokenizer.spec()
    if cfg.dit_config(tokenizer.vocab_size, two_time=kind == "fmlm") != model.config:
        raise RunError("internal: the run config does not reproduce the model's DiT config")
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    run = {"kind": kind, "imported_from": source, "weights": weights}
    save_checkpoint(out / CHECKPOINT_NAME, state, step=0, rng=False,
                    config={"model": model.config.to_dict(), **_checkpoint_config(cfg, spec, run)})
    _write_run_files(out, cfg, tokenizer, run)
    return out

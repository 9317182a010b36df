r"""Hugging Face Hub layout for flowlm models: ``save_pretrained`` / ``from_pretrained``.

A folder written by :func:`save_pretrained` is what the Hub expects of a model repository, so
``huggingface-cli upload USER/NAME DIR`` (or ``HfApi().upload_folder``) publishes it as is::

    config.json         {"model_type": "flowlm", "architectures": ["FLM" | "FMLM"], "flowlm": {...}}
    model.safetensors   the network's tensors with bare keys (the authors' names, float32)
    tokenizer.json      the tokenizer in the Hugging Face ``tokenizers`` format (bpe, bert, gpt2),
                        when the model has one; flowlm's own spec is also kept in config.json
                        (the only record for a char tokenizer, which has no such file)
    README.md           a short model card (only if the folder has none)

``config.json["flowlm"]`` holds ``format``, ``kind`` (flm | fmlm), ``dit`` (the
:class:`~flowlm.nets.DiTConfig`), ``interpolant`` (``linear`` | ``cosine``), ``schedule``
(``decoding_error`` | ``identity``), ``projected`` and ``tokenizer`` (a flowlm spec or null).
:func:`from_pretrained` rebuilds exactly that model; it also accepts the authors' Hugging Face
folders (``{"config": ..., "vocab_size": V}``) through :func:`flowlm.hub.load_reference`.
Files are written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowlm._io import atomic_write, atomic_write_json, atomic_write_text

__all__ = ["save_pretrained", "from_pretrained", "FORMAT"]

FORMAT = "flowlm-pretrained-1"


def _interpolant_name(interpolant: Any) -> str:
    from flowlm.interpolants import Cosine, Linear

    for cls in (Linear, Cosine):
        if type(interpolant) is cls:
            return cls.name
    raise ValueError(
        f"save_pretrained stores the built-in interpolants (Linear, Cosine) by name; {interpolant!r} is custom. "
        "Save the state dict and rebuild the model with your interpolant in code"
    )


def _schedule_name(model: Any) -> str:
    from flowlm.interpolants import DecodingErrorSchedule, IdentitySchedule

    s = model.schedule
    if isinstance(s, DecodingErrorSchedule) and s.vocab_size == model.vocab_size:
        return "decoding_error"
    if isinstance(s, IdentitySchedule):
        return "identity"
    raise ValueError(f"save_pretrained stores the decoding-error or identity schedule; {s!r} is neither")


def _hf_tokenizer_json(tokenizer: Any) -> str | None:
    """The Hugging Face ``tokenizers`` serialization of a flowlm tokenizer, where it has one."""
    spec = tokenizer.spec()
    if spec.get("kind") == "bpe" and spec.get("tokenizer_json"):
        return spec["tokenizer_json"]
    if spec.get("kind") == "gpt2":  # the same GPT-2 BPE files, as a byte-level `tokenizers` BPE
        from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers

        from flowlm.data.tokenizers import _GPT2_PKG, _package_file

        hf = HFTokenizer(models.BPE.from_file(str(_package_file(_GPT2_PKG, "data", "encoder.json")),
                                              str(_package_file(_GPT2_PKG, "data", "vocab.bpe"))))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        hf.add_special_tokens(["<|endoftext|>"] + (["[PAD]"] if tokenizer.vocab_size == 50258 else []))
        return hf.to_str()
    inner = getattr(tokenizer, "_tok", None)
    inner = getattr(inner, "_tokenizer", inner)  # BertWordPieceTokenizer wraps a tokenizers.Tokenizer
    return inner.to_str() if hasattr(inner, "to_str") else None


def save_pretrained(model: nn.Module, directory: str | os.PathLike, tokenizer: Any = None) -> Path:
    """Write ``model`` (an FLM or FMLM) and its tokenizer (``tokenizer`` or ``model.tokenizer``) to
    ``directory`` in the layout above; returns the folder."""
    from safetensors.torch import save_file

    from flowlm.models import FLM, FMLM

    if not isinstance(model, (FLM, FMLM)):
        raise TypeError(f"save_pretrained takes an FLM or FMLM, got {type(model).__name__}")
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    folder = Path(directory).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    kind = "fmlm" if isinstance(model, FMLM) else "flm"
    config = {
        "model_type": "flowlm",
        "architectures": [type(model).__name__],
        "flowlm": {
            "format": FORMAT, "kind": kind, "dit": model.config.to_dict(),
            "interpolant": _interpolant_name(model.interpolant), "schedule": _schedule_name(model),
            "projected": bool(model.projected), "tokenizer": tokenizer.spec() if tokenizer is not None else None,
        },
    }
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.net.state_dict().items()}
    atomic_write(folder / "model.safetensors", lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    if tokenizer is not None:
        hf = _hf_tokenizer_json(tokenizer)
        if hf is not None:
            atomic_write_text(folder / "tokenizer.json", hf)
    atomic_write_json(folder / "config.json", config, indent=2, sort_keys=True)
    if not (folder / "README.md").exists():
        card = (f"---\nlibrary_name: flowlm\ntags: [flowlm, flow-language-model, {kind}]\n---\n\n"
                f"# {type(model).__name__} (flowlm)\n\nLoad with `flowlm.hub.from_pretrained(PATH)`; sample with "
                f"`flowlm sample --checkpoint PATH`.\n")
        atomic_write_text(folder / "README.md", card)
    return folder


def from_pretrained(directory: str | os.PathLike, *, device: str | torch.device = "cpu"):
    """The FLM / FMLM saved in ``directory`` (eval mode, on ``device``), with ``model.tokenizer``
    (the flowlm tokenizer, or ``None``). An authors' Hugging Face folder is read by
    :func:`flowlm.hub.load_reference`."""
    from safetensors.torch import load_file

    from flowlm.data.tokenizers import tokenizer_from_spec
    from flowlm.flow import Flow
    from flowlm.interpolants import Cosine, DecodingErrorSchedule, IdentitySchedule, Linear
    from flowlm.models import FLM, FMLM
    from flowlm.nets import DiTConfig

    folder = Path(directory).expanduser()
    cfg_path = folder / "config.json"
    if not cfg_path.is_file() or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} is not a pretrained-model folder (needs config.json and model.safetensors)")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path} is not valid JSON ({e})") from None
    meta = config.get("flowlm") if isinstance(config, dict) else None
    if meta is None:
        from flowlm.hub.reference import load_reference

        model = load_reference(folder, device=device)
        model.tokenizer = None
        return model
    if meta.get("format") != FORMAT:
        raise ValueError(f"{cfg_path}: unknown flowlm format {meta.get('format')!r} (this flowlm reads {FORMAT!r})")
    dit = DiTConfig.from_dict(meta["dit"])
    interpolant = {"linear": Linear, "cosine": Cosine}[meta["interpolant"]]()
    schedule = (DecodingErrorSchedule(dit.vocab_size, interpolant) if meta["schedule"] == "decoding_error"
                else IdentitySchedule())
    flow = Flow(interpolant, schedule)
    model = (FMLM if meta["kind"] == "fmlm" else FLM)(dit, flow, projected=meta["projected"])
    model.net.load_state_dict(load_file(str(folder / "model.safetensors")))
    model.tokenizer = tokenizer_from_spec(meta["tokenizer"]) if meta.get("tokenizer") else None
    return model.to(device).eval()

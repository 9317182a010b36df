r"""Load the FLM authors' released checkpoints (REFERENCE §1) as a flowlm :class:`~flowlm.models.FLM`
or :class:`~flowlm.models.FMLM`.

Two formats:

* **Lightning** ``.ckpt``: ``ckpt["state_dict"]`` with every network key prefixed ``backbone.``
  (keys may also carry ``._orig_mod.`` from ``torch.compile``; ``teacher*`` keys of distillation
  runs are dropped), and ``ckpt["ema"]["shadow_params"]``, a *positional* list over the network's
  trainable parameters in registration order (the rotary ``inv_freq`` buffer excluded). The EMA
  weights are preferred (``weights="auto"``); the list is checked for its count and every shape
  before it replaces the raw weights. The file is read with the restricted unpickler of
  :mod:`flowlm.hub.safe_pickle` (no code from the file runs) unless ``trust_pickle=True``.
* **Hugging Face** folder (``PyTorchModelHubMixin``): ``model.safetensors`` with bare keys and
  ``config.json`` = ``{"config": {...run config...}, "vocab_size": V}``.

Everything that fixes the architecture is read from the tensors (the run config only supplies
the head count and sequence length when present):

==========================  ===============================================================
``V, d``                     ``vocab_embed.embedding: [V, d]``
``cond``, time features      ``sigma_map.mlp.0.weight: [cond, 256]``
depth                        number of ``blocks.{i}.norm1.weight``
MLP ratio                    ``blocks.0.mlp.0.weight: [r·d, d]``
heads                        config ``model.n_heads``, else ``d / (2·len(rotary_emb.inv_freq))``, else ``d / 64``
FLM vs FMLM                  ``sigma_map_prime.*`` present → FMLM (two-time net)
max length                   config ``model.length``, else 128 (V = 30522), 1024 (V = 50258), else 1024
==========================  ===============================================================

The model samples with the authors' logit cap ``30·tanh(z/30)``, attention cap 50, the Linear
interpolant and the decoding-error schedule of its exact ``V``. Tokenizers:
:func:`reference_tokenizer`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowlm.hub.safe_pickle import read_checkpoint

__all__ = ["load_reference", "reference_state_dict", "infer_config", "reference_tokenizer", "KNOWN_VOCABULARIES",
           "ReferenceCheckpointError"]

#: the authors' vocabularies: V → (tokenizer kind of flowlm, the tokenizer's name, sequence length)
KNOWN_VOCABULARIES: dict[int, tuple[str, str, int]] = {
    30522: ("bert", "bert-base-uncased (LM1B)", 128),
    50258: ("gpt2", "GPT-2 + one [PAD] (OpenWebText)", 1024),
}

_BUFFERS = ("rotary_emb.inv_freq",)  # persistent buffers of the authors' network (not in the EMA list)
_IGNORED_PREFIXES = ("learnable_loss_weighting.",)  # trainable in some of their runs, unused at sampling


class ReferenceCheckpointError(ValueError):
    """A file that is not (or not a complete) FLM/FMLM checkpoint in the authors' format."""


# ------------------------------------------------------------------------------------------ reading
def _strip(key: str) -> str:
    key = key.replace("._orig_mod.", ".")
    return key[len("_orig_mod."):] if key.startswith("_orig_mod.") else key


def _from_lightning(ckpt: Any, path: str, weights: str) -> tuple[dict[str, Tensor], str]:
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ReferenceCheckpointError(f"{path!r} has no 'state_dict'; is it a Lightning checkpoint of the FLM code?")
    raw: dict[str, Tensor] = {}
    for key, value in ckpt["state_dict"].items():
        key = _strip(str(key))
        if key.startswith("teacher"):
            continue  # the frozen teacher of a distillation run
        if key.startswith("backbone."):
            if not torch.is_tensor(value):
                raise ReferenceCheckpointError(f"{path!r}: state_dict[{key!r}] is not a tensor")
            raw[_strip(key[len("backbone."):])] = value
    if not raw:
        raise ReferenceCheckpointError(f"{path!r}: no 'backbone.*' keys in its state_dict; not an FLM/FMLM checkpoint")
    shadow = (ckpt.get("ema") or {}).get("shadow_params") if isinstance(ckpt.get("ema"), dict) else None
    if weights == "raw" or (weights == "auto" and not shadow):
        return raw, "raw"
    if not shadow:
        raise ReferenceCheckpointError(f"{path!r} holds no EMA weights (ckpt['ema']['shadow_params']); use weights='raw'")
    names = [k for k in raw if k not in _BUFFERS]  # the trainable parameters, in registration order
    if len(shadow) != len(names):
        raise ReferenceCheckpointError(
            f"{path!r}: the EMA list has {len(shadow)} tensors but the network has {len(names)} parameters; "
            "the positional EMA cannot be matched to names (load the raw weights with weights='raw')"
        )
    ema = dict(raw)
    for i, (name, p) in enumerate(zip(names, shadow)):
        if not torch.is_tensor(p) or tuple(p.shape) != tuple(raw[name].shape):
            got = tuple(p.shape) if torch.is_tensor(p) else type(p).__name__
            raise ReferenceCheckpointError(
                f"{path!r}: EMA tensor {i} has shape {got} but parameter {name!r} has {tuple(raw[name].shape)}; "
                "the EMA list does not follow the parameter order (load the raw weights with weights='raw')"
            )
        ema[name] = p
    return ema, "ema"


def _from_hf_folder(folder: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    cfg_path, st_path = folder / "config.json", folder / "model.safetensors"
    if not st_path.is_file():
        raise ReferenceCheckpointError(f"{folder} has no model.safetensors; a Hugging Face folder holds config.json + model.safetensors")
    config: dict[str, Any] = {}
    if cfg_path.is_file():
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ReferenceCheckpointError(f"{cfg_path} is not valid JSON ({e})") from None
    return {_strip(k): v for k, v in load_file(str(st_path)).items()}, config


def reference_state_dict(
    path: str | os.PathLike, *, trust_pickle: bool = False, weights: str = "auto"
) -> tuple[dict[str, Tensor], dict[str, Any], str]:
    """``(state_dict with the authors' bare keys, run config dict (may be empty), "ema" | "raw" | "hf")``."""
    if weights not in ("auto", "ema", "raw"):
        raise ValueError(f"weights must be 'auto', 'ema' or 'raw', got {weights!r}")
    p = Path(path).expanduser()
    if p.is_dir():
        state, config = _from_hf_folder(p)
        return state, config, "hf"
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {p}: pass the authors' .ckpt file or a Hugging Face folder")
    ckpt = read_checkpoint(p, trust_pickle=trust_pickle)
    state, kind = _from_lightning(ckpt, str(p), weights)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    config = hp.get("config") if isinstance(hp, dict) and isinstance(hp.get("config"), dict) else {}
    return state, config, kind


# ---------------------------------------------------------------------------------------- inference
def _lookup(config: dict[str, Any], *keys: str) -> Any:
    """``config["config"]["model"][key]`` or ``config["model"][key]`` for the first key present."""
    for root in (config.get("config"), config):
        model = root.get("model") if isinstance(root, dict) else None
        if isinstance(model, dict):
            for k in keys:
                if isinstance(model.get(k), (int, float)) and not isinstance(model.get(k), bool):
                    return model[k]
    return None


def infer_config(state: dict[str, Tensor], config: dict[str, Any] | None = None):
    """The :class:`~flowlm.nets.DiTConfig` of an authors' state dict (bare keys), from its shapes."""
    from flowlm.nets import DiTConfig

    config = config or {}
    need = ("vocab_embed.embedding", "sigma_map.mlp.0.weight", "output_layer.linear.weight", "blocks.0.mlp.0.weight")
    missing = [k for k in need if k not in state]
    if missing:
        raise ReferenceCheckpointError(f"not an FLM/FMLM network: missing {', '.join(missing)}")
    V, d = state["vocab_embed.embedding"].shape
    cond, features = state["sigma_map.mlp.0.weight"].shape
    depth = len({m.group(1) for k in state if (m := re.match(r"blocks\.(\d+)\.norm1\.weight$", k))})
    mlp_ratio, rem = divmod(state["blocks.0.mlp.0.weight"].shape[0], d)
    if rem:
        raise ReferenceCheckpointError(f"MLP width {state['blocks.0.mlp.0.weight'].shape[0]} is not a multiple of width {d}")
    heads = _lookup(config, "n_heads", "num_heads")
    if heads is None and "rotary_emb.inv_freq" in state:
        heads = d // (2 * state["rotary_emb.inv_freq"].numel())
    heads = int(heads or max(1, d // 64))
    length = _lookup(config, "length", "max_length", "seq_len")
    if length is None:
        length = KNOWN_VOCABULARIES.get(int(V), (None, None, 1024))[2]
    dropout = _lookup(config, "dropout")
    return DiTConfig(
        vocab_size=int(V), max_length=int(length), width=int(d), depth=depth, heads=heads, mlp_ratio=mlp_ratio,
        cond=int(cond), time_features=int(features), two_time=any(k.startswith("sigma_map_prime.") for k in state),
        dropout=float(dropout) if dropout is not None else 0.1, attn_softcap=50.0, out_softcap=30.0,
    )


def _network_state(state: dict[str, Tensor], cfg: Any) -> dict[str, Tensor]:
    """The authors' keys minus their rotary buffer (checked to be base-1e4 RoPE) and unused extras."""
    out = {}
    for k, v in state.items():
        if k == "rotary_emb.inv_freq":
            dh = cfg.width // cfg.heads
            want = 1.0 / (10_000.0 ** (torch.arange(0, dh, 2, dtype=torch.float64) / dh))
            if v.shape != want.shape or not torch.allclose(v.double(), want, rtol=1e-5, atol=0):
                raise ReferenceCheckpointError(
                    f"rotary_emb.inv_freq is not base-1e4 RoPE for head width {dh} (heads={cfg.heads}); "
                    "the head count inferred from the file is wrong or the network differs"
                )
            continue
        if k.startswith(_IGNORED_PREFIXES):
            continue
        out[k] = v.float()
    return out


def reference_tokenizer(vocab_size: int):
    """The flowlm tokenizer of the authors' vocabulary: bert-base-uncased for V = 30522, GPT-2 + one
    ``[PAD]`` for V = 50258. Raises :class:`ReferenceCheckpointError` for any other V (unknown)."""
    from flowlm.data.tokenizers import BertTokenizer, GPT2Tokenizer

    if vocab_size == 30522:
        return BertTokenizer()
    if vocab_size == 50258:
        return GPT2Tokenizer(pad_token=True)
    raise ReferenceCheckpointError(
        f"vocabulary size {vocab_size} is not one of the authors' ({', '.join(map(str, KNOWN_VOCABULARIES))}); "
        "its tokenizer is unknown: pass one (a kind such as bert/gpt2, or a tokenizer.json of a flowlm run), "
        "or print token ids"
    )


def load_reference(
    path: str | os.PathLike, *, trust_pickle: bool = False, weights: str = "auto", device: str | torch.device = "cpu"
):
    """An FLM (or FMLM when the file has ``sigma_map_prime``) from the authors' ``.ckpt`` or Hugging Face folder.

    ``weights``: ``"auto"`` (EMA when the ``.ckpt`` has it, else raw), ``"ema"``, ``"raw"``; a
    Hugging Face folder holds one set. ``trust_pickle=True`` unpickles the ``.ckpt`` fully, which
    **runs any code the file contains** (see :func:`flowlm.hub.safe_pickle.read_checkpoint`); never
    needed for the weights. The model is in eval mode on ``device``; ``model.tokenizer_name`` names
    its tokenizer (``None`` if unknown) and ``model.source`` records ``(path, weights)``.
    """
    from flowlm.flow import Flow
    from flowlm.interpolants import Linear
    from flowlm.models import FLM, FMLM

    state, config, kind = reference_state_dict(path, trust_pickle=trust_pickle, weights=weights)
    cfg = infer_config(state, config)
    net_state = _network_state(state, cfg)
    flow = Flow.decoding_error(Linear(), cfg.vocab_size)  # the authors' flow: Linear on the decoding-error τ of V
    model = (FMLM if cfg.two_time else FLM)(cfg, flow)
    missing, unexpected = model.net.load_state_dict(net_state, strict=False)
    if missing or unexpected:
        raise ReferenceCheckpointError(
            f"{path}: the tensors do not form the authors' DiT ({cfg.depth} blocks, width {cfg.width}); "
            f"missing {sorted(missing)[:6]}, unexpected {sorted(unexpected)[:6]}"
        )
    model.tokenizer_name = KNOWN_VOCABULARIES.get(cfg.vocab_size, (None, None, None))[1]
    model.source = (str(path), kind)
    return model.to(device).eval()

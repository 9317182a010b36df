"""Evaluate a checkpoint of any kind (FLM, FMLM, AR, MDLM) or held-out text into an :class:`EvalRecord`.

Shared by ``flowlm quickstart``, ``flowlm eval``, ``flowlm bench`` and ``flowlm experiment``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from flowlm._io import atomic_write_text, device_name
from flowlm.evaluation.evaluators import Evaluator
from flowlm.evaluation.metrics import evaluate_samples
from flowlm.evaluation.records import EvalRecord, file_hash

__all__ = ["evaluate_checkpoint", "reference_record", "write_samples", "SAMPLER_NAMES"]

#: the sampler each model kind uses in ``flowlm.pipeline.generate``
SAMPLER_NAMES = {"FLM": "euler", "FMLM": "flow-map", "AR": "ancestral (left to right)", "MDLM": "ancestral (cached)"}


def evaluate_checkpoint(
    ckpt: str | os.PathLike,
    steps: int | None,
    evaluator: Evaluator,
    *,
    n_samples: int,
    seed: int = 0,
    gamma: float = 0.0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    label: str | None = None,
    reference_entropy: float | None = None,
    model: Any = None,
    device: str | torch.device | None = None,
    samples_path: str | os.PathLike | None = None,
    warmup: bool = True,
    guidance: float | None = None,
    weak: Any = "dropout",
) -> EvalRecord:
    """Sample ``n_samples`` sequences at ``steps`` steps from a checkpoint of any kind, score them, return
    the record (``method`` = the kind in capitals, or ``label``; AR: ``steps`` None = one per token;
    ``temperature`` / ``top_p``: AR and MDLM).

    ``model`` = ``(model, tokenizer, cfg)`` already loaded from ``ckpt`` (saves reloading in a
    sweep). The wall time is the sampling time of the whole batch (scoring excluded), measured
    after one warm-up network call when ``warmup`` (first calls pay for allocation and kernel
    selection). Decoded samples are written to ``samples_path`` when given. ``guidance`` = η samples with
    autoguidance against ``weak`` (:func:`flowlm.guidance.generate_guided`: FLM / FMLM in probability
    form, MDLM in logit form; NFE counts both models); None (default) is the plain model.
    """
    from flowlm.pipeline import generate, load_model

    if model is None:
        model = load_model(ckpt, device=device if device is not None else "cpu")
    net, tok, cfg = model
    kind = net.kind.upper()
    method = label or kind
    extra = {"temperature": temperature, "top_p": top_p} if kind in ("AR", "MDLM") else {"gamma": gamma}
    if guidance is not None:
        from flowlm.guidance import generate_guided

        if kind == "AR":
            raise ValueError("autoguidance is for FLM, FMLM and MDLM models; an AR model trades diversity by temperature")
        g_extra = {"gamma": gamma} if kind == "FMLM" else {}
        if warmup:
            generate_guided(net, tok, n_samples, 1, seed + 1, weight=guidance, weak=weak, **g_extra)
        samples = generate_guided(net, tok, n_samples, steps, seed, weight=guidance, weak=weak, **g_extra)
    else:
        if warmup:
            generate(net, tok, n_samples, None if kind == "AR" else 1, seed + 1, **extra)
        samples = generate(net, tok, n_samples, steps, seed, **extra)
    steps = int(steps) if steps is not None else int(samples.nfe)
    mask = torch.ones_like(samples.tokens, dtype=torch.bool)
    metrics = evaluate_samples(list(samples), samples.tokens, evaluator, mask=mask, reference_entropy=reference_entropy)
    if samples_path is not None:
        write_samples(Path(samples_path), list(samples), f"{method}, {steps} steps, NFE {samples.nfe}")
    dev = next(net.parameters()).device
    sampler: dict[str, Any] = {"name": SAMPLER_NAMES.get(kind, kind.lower()), "kind": net.kind}
    if kind in ("FLM", "FMLM"):
        sampler["grid"] = "uniform-tau"
    if kind == "FMLM":
        sampler["gamma"] = gamma
    if kind in ("AR", "MDLM"):
        sampler.update(temperature=temperature, top_p=top_p)
    if guidance is not None:
        sampler.update(guidance=float(guidance), weak=weak if isinstance(weak, str) else type(weak).__name__,
                       guidance_form="logits" if kind == "MDLM" else "probs")
    return EvalRecord(
        method=method,
        metrics=metrics,
        evaluator=evaluator.name,
        n_samples=n_samples,
        steps=int(steps),
        nfe=int(samples.nfe),
        seed=seed,
        sampler=sampler,
        checkpoint=str(ckpt),
        checkpoint_hash=file_hash(_checkpoint_file(ckpt)),
        config=cfg,
        wall_time_s=float(samples.seconds),
        device=device_name(dev),
    )


def _checkpoint_file(ckpt: str | os.PathLike) -> Path:
    from flowlm.pipeline import find_checkpoint

    return find_checkpoint(ckpt)


def reference_record(
    cfg: Any,
    tokenizer: Any,
    evaluator: Evaluator,
    *,
    n_samples: int,
    data: str | os.PathLike | None = None,
    samples_path: str | os.PathLike | None = None,
) -> EvalRecord:
    """The metrics of held-out real text: the first ``n_samples`` validation blocks of ``data``.

    Blocks are packed exactly as for training (same tokenizer, ``cfg.data.seq_len``, split and seed),
    so their unigram entropy is directly comparable with the samples'.
    """
    from flowlm.data import build_datasets

    splits = build_datasets(tokenizer, cfg.data.seq_len, 1, path=data, seed=cfg.seed,
                            val_fraction=cfg.data.val_fraction, split_by=cfg.data.split_by)
    split = "val" if splits.val is not None else "train"
    blocks = next(iter((splits.val or splits.train).iter_blocks(n_samples)))  # [n, L] (also from shards)
    texts = [tokenizer.decode(row.tolist()) for row in blocks]
    metrics = evaluate_samples(texts, blocks, evaluator)
    metrics["reference_entropy"] = metrics["entropy"]
    metrics["flags"], metrics["degenerate"] = [], False
    if samples_path is not None:
        write_samples(Path(samples_path), texts, f"held-out {split} blocks")
    return EvalRecord(
        method="data",
        metrics=metrics,
        evaluator=evaluator.name,
        n_samples=int(blocks.shape[0]),
        sampler={"name": f"held-out {split} split", "requested": n_samples},
        config=cfg,
        seed=cfg.seed,
    )


def write_samples(path: Path, texts: Sequence[str], title: str) -> None:
    body = "".join(f"\n=== sample {i} ===\n{t}\n" for i, t in enumerate(texts))
    atomic_write_text(path, f"# {title}\n{body}")



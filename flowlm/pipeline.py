"""The run pipeline: train a model (FLM, AR or MDLM), distill an FLM into an FMLM, load a
checkpoint, generate text.

These are the programmatic steps behind ``flowlm train | distill | sample`` (and the quickstart):

* :func:`train_model` ``(cfg, data, out_dir, resume) -> checkpoint path`` (kind: ``cfg.model.kind``;
  :func:`train_flm` is the same call)
* :func:`distill_fmlm` ``(cfg, teacher_ckpt, method, out_dir, resume) -> checkpoint path``, the
  distiller built from ``cfg.distill`` by :func:`build_distiller`
* :func:`load_model` ``(ckpt) -> (model, tokenizer, cfg)``
* :func:`generate` ``(model, tokenizer, n_samples, steps, seed) -> Samples`` (a list of strings
  carrying ``nfe``, ``seconds`` and ``tokens``)

A run directory holds::

    config.json              the RunConfig (the last one used, e.g. with more steps on resume)
    tokenizer.json           the tokenizer spec (flowlm.data.tokenizers.tokenizer_from_spec)
    run.json                 what was trained: kind (flm | fmlm | ar | mdlm), data fingerprint, teacher, method
    checkpoint.safetensors   model + EMA + optimizer + RNG (flowlm.training), written atomically; its
                             header holds the DiT config, kind, tokenizer spec, run.json and the
                             full RunConfig, so it loads on its own (the three JSON files mirror it)
    metrics.jsonl            one JSON record per log step, a validation record every eval_every
                             steps (current weights) and a final one (EMA weights)
    samples.txt              samples drawn from the EMA weights at the end of the run

A checkpoint copied next to another run's files is refused (:class:`~flowlm.training.CheckpointMismatchError`)
instead of decoding garbage. Nothing here deletes or overwrites a file it did not write for the
same run: ``resume=False`` on an existing run directory is an error.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowlm._io import atomic_write, atomic_write_json, atomic_write_text, cache_root, resolve_device
from flowlm.data import build_datasets, build_tokenizer, load_documents, tokenizer_from_spec
from flowlm.data.corpus import documents_fingerprint
from flowlm.data.dataset import shard_datasets
from flowlm.data.shards import is_shard_folder
from flowlm.data.packing import encode_documents
from flowlm.data.tokenizers import Tokenizer, spec_digest
from flowlm.memory import check_training_memory
from flowlm.presets import DISTILL_METHODS, MODEL_FIELDS, RunConfig

__all__ = [
    "RunError",
    "Samples",
    "train_flm",
    "train_model",
    "build_distiller",
    "default_steps",
    "distill_fmlm",
    "load_model",
    "generate",
    "find_checkpoint",
    "load_run_config",
    "CHECKPOINT_NAME",
]

CHECKPOINT_NAME = "checkpoint.safetensors"


class RunError(ValueError):
    """A run that cannot start or load (existing run with --no-resume, mismatched config, ...)."""


# --------------------------------------------------------------------------------- run files
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunError(f"{path} is not valid JSON ({e}); was it edited by hand?") from None


def _model_differences(old: RunConfig, new: RunConfig) -> list[str]:
    return [f"{k}: run has {old.get(k)!r}, requested {new.get(k)!r}"
            for k in MODEL_FIELDS if old.get(k) != new.get(k)]


def _existing_run(out: Path, kind: str, cfg: RunConfig, resume: bool) -> dict[str, Any] | None:
    """The run.json of ``out`` if it holds a run we may continue; ``None`` for a fresh directory."""
    if not (out / "run.json").exists() and not (out / CHECKPOINT_NAME).exists():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise RunError(f"{out} exists and is not a flowlm run directory; choose a new or empty --out-dir "
                           "(nothing was changed)")
        return None
    if not resume:
        raise RunError(f"{out} already holds a run; continue it with --resume or pick a new --out-dir "
                       "(nothing was changed)")
    if not (out / "run.json").exists():
        raise RunError(f"{out} has a checkpoint but no run.json; it was not written by flowlm's pipeline")
    run = _read_json(out / "run.json")
    if run.get("kind") != kind:
        raise RunError(f"{out} holds an {run.get('kind')} run, not an {kind} run; pick another --out-dir")
    diffs = _model_differences(RunConfig.from_dict(_read_json(out / "config.json")), cfg)
    if diffs:
        raise RunError(f"cannot resume {out}: the model would change ({'; '.join(diffs)}); "
                       "use the run's settings or a new --out-dir")
    return run


def _write_run_files(out: Path, cfg: RunConfig, tok: Tokenizer, run: dict[str, Any]) -> None:
    atomic_write_json(out / "config.json", cfg.to_dict(), indent=2, sort_keys=True)
    atomic_write_json(out / "tokenizer.json", tok.spec(), indent=2, sort_keys=True)
    atomic_write_json(out / "run.json", run, indent=2, sort_keys=True)


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory holding ``checkpoint.safetensors``."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.is_file():
        raise RunError(f"no checkpoint at {p}; train one with `flowlm train` (or pass the run directory)")
    return p


def load_run_config(run: str | os.PathLike) -> RunConfig:
    """The :class:`RunConfig` of a run directory (its ``config.json``) or a checkpoint file (its
    ``config.json`` neighbour, else the copy in the checkpoint's header)."""
    p = Path(run).expanduser()
    run_dir = p if p.is_dir() else p.parent
    if (run_dir / "config.json").is_file():
        return RunConfig.from_dict(_read_json(run_dir / "config.json"))
    if p.is_file() or (p / CHECKPOINT_NAME).is_file():
        meta = _checkpoint_meta(find_checkpoint(p))
        if isinstance(meta.get("run_config"), dict):
            return RunConfig.from_dict(meta["run_config"])
    raise RunError(f"{run} has no config.json (and no self-describing checkpoint); is it a flowlm run directory?")


def _tokenizer_entry(spec: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint records of its tokenizer: kind, size and a digest of the full spec."""
    return {"kind": spec["kind"], "vocab_size": spec.get("vocab_size"), "digest": spec_digest(spec)}


# --------------------------------------------------------------------------------- building
def _check_shards_required(cfg: RunConfig, data: str | os.PathLike | None) -> None:
    """A preset that trains on prepared token shards (``require_shards``) refuses any other corpus."""
    if cfg.data.require_shards and not is_shard_folder(data):
        raise RunError(
            f"the {cfg.preset} preset trains on prepared token shards, and {data or 'the default corpus'} is not a "
            f"shard folder; prepare one with `flowlm data prepare --data PATH_OR_GLOB --tokenizer {cfg.data.tokenizer} "
            f"--out data/{cfg.preset}` and pass --data data/{cfg.preset} (or --set data.require_shards=false)"
        )


def _data_for(cfg: RunConfig, data: str | os.PathLike | None, tokenizer: Tokenizer | None, batch_size: int):
    if is_shard_folder(data):  # prepared token shards: streamed from disk, bounded memory
        tok, splits, fingerprint = shard_datasets(data, cfg.data.seq_len, batch_size, seed=cfg.seed,
                                                  val_fraction=cfg.data.val_fraction, tokenizer_kind=cfg.data.tokenizer)
        if tokenizer is not None and spec_digest(tokenizer.spec()) != spec_digest(tok.spec()):
            raise RunError(f"the shards in {data} were tokenized with another {tok.kind} tokenizer than the run's; "
                           "pass the run's own --data or use a new --out-dir")
        return tok, splits, fingerprint
    _check_shards_required(cfg, data)
    docs = load_documents(data)
    if tokenizer is None:
        tokenizer = build_tokenizer(cfg.data.tokenizer,
                                    "\n\n".join(docs) if cfg.data.tokenizer in ("char", "bpe") else None,
                                    vocab_size=cfg.data.vocab_size or None)
    fingerprint = documents_fingerprint(docs)
    splits = build_datasets(tokenizer, cfg.data.seq_len, batch_size, seed=cfg.seed, val_fraction=cfg.data.val_fraction,
                            split_by=cfg.data.split_by, encoded=_encoded(docs, tokenizer, fingerprint))
    return tokenizer, splits, fingerprint


def _encoded(docs: list[str], tok: Tokenizer, fingerprint: str) -> list[torch.Tensor]:
    """``encode_documents(docs, tok)``, cached in ``$FLOWLM_CACHE/tokens/`` by corpus and tokenizer."""
    path = cache_root() / "tokens" / f"{fingerprint}-{tok.kind}-{spec_digest(tok.spec())}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, weights_only=True)
            if isinstance(cached, list) and len(cached) == len(docs):
                return cached
        except Exception:  # a damaged cache entry is rebuilt below
            pass
    encoded = encode_documents(docs, tok)
    atomic_write(path, lambda tmp: torch.save(encoded, tmp))
    return encoded


def _device(cfg: RunConfig) -> torch.device:
    """The run's device (validated); ``auto`` is ``cuda:LOCAL_RANK`` under torchrun."""
    return resolve_device(cfg.device)


def _main_process() -> bool:
    from flowlm.training.distributed import init_distributed

    return init_distributed().is_main  # no-op without torchrun


def _train_config(cfg: RunConfig, out: Path, *, distill: bool):
    from flowlm.training import TrainConfig

    t, d = cfg.train, cfg.distill
    common = dict(weight_decay=t.weight_decay, grad_clip=t.grad_clip or None, grad_accum=t.grad_accum,
                  compile=cfg.compile, seed=cfg.seed, device=str(_device(cfg)), log_every=t.log_every,
                  ckpt_every=t.ckpt_every, eval_every=t.eval_every, out_dir=str(out))
    if distill:
        return TrainConfig(steps=d.steps, batch_size=d.batch_size, lr=d.lr, warmup_steps=d.warmup_steps,
                           ema_decay=d.ema_decay, **common)
    return TrainConfig(steps=t.steps, batch_size=t.batch_size, lr=t.lr, warmup_steps=t.warmup_steps,
                       ema_decay=t.ema_decay, **common)


@torch.no_grad()
def _validation_loss(model: nn.Module, objective: Any, val, seed: int, max_batches: int = 8) -> float | None:
    """Mean objective over (at most ``max_batches``) validation batches, seeded, in eval mode."""
    if val is None:
        return None
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        torch.manual_seed(seed)
        losses = []
        for i, block in enumerate(val.iter_blocks(val.batch_size)):
            if i >= max_batches:
                break
            with torch.enable_grad():  # JVP-based objectives need autograd even here
                loss, _ = objective(model, block.to(dev))
            losses.append(float(loss.detach()))
        return sum(losses) / len(losses) if losses else None
    finally:
        model.train(was)


def _periodic_validation(objective: Any, val, seed: int):
    """``evaluate(model)`` for the training loop's ``eval_every`` (None without a validation split)."""
    if val is None:
        return None
    return lambda model: _validation_loss(model, objective, val, seed)


def _finish(model: nn.Module, result: Any, objective: Any, splits: Any, tok: Tokenizer, cfg: RunConfig,
            out: Path) -> None:
    """Swap in the EMA weights, log the validation loss, write samples.txt."""
    if result.ema is not None:
        result.ema.copy_to(model)
    record: dict[str, Any] = {"step": result.step, "split": "val", "ema": True}
    val = _validation_loss(model, objective, splits.val, cfg.seed)
    if val is not None:
        record["val_loss"] = val  # the training objective on held-out blocks (not a likelihood bound)
    steps = default_steps(cfg, model.kind)
    samples = generate(model, tok, cfg.sample.n, steps, cfg.seed, gamma=cfg.sample.gamma,
                       temperature=cfg.sample.temperature, top_p=cfg.sample.top_p)
    record.update(sample_nfe=samples.nfe, sample_seconds=samples.seconds)
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    atomic_write_text(out / "samples.txt", _format_samples(samples, steps))


def _format_samples(samples: "Samples", steps: int | None) -> str:
    head = f"# {len(samples)} samples, {steps} steps, NFE {samples.nfe}, {samples.seconds:.2f} s\n"
    return head + "".join(f"\n=== sample {i} ===\n{s}\n" for i, s in enumerate(samples))


# --------------------------------------------------------------------------------- building models
def build_model(cfg: RunConfig, vocab_size: int, kind: str | None = None) -> nn.Module:
    """A fresh model of ``kind`` (default ``cfg.model.kind``: flm | ar | mdlm; or fmlm) for ``vocab_size``."""
    from flowlm.models import AR, FLM, FMLM, MDLM

    from flowlm.flow import Flow

    kind = kind or cfg.model.kind
    if kind in ("flm", "fmlm"):
        try:  # model.interpolant / model.schedule: the paper's flow by default
            flow = Flow.from_names(cfg.model.interpolant, cfg.model.schedule, vocab_size)
        except ValueError as e:
            raise RunError(f"model.interpolant / model.schedule: {e}") from None
    if kind == "flm":
        return FLM(cfg.dit_config(vocab_size), flow, projected=cfg.model.projected, loss=cfg.model.loss)
    if kind == "fmlm":
        if cfg.model.loss == "velocity_mse":
            raise RunError("a velocity-parametrized FLM (model.loss=velocity_mse) cannot be distilled into an FMLM: "
                           "its denoiser is not a probability on the simplex; distill a ce or mse FLM")
        return FMLM(cfg.dit_config(vocab_size, two_time=True), flow, projected=cfg.model.projected)
    if kind == "ar":
        return AR(cfg.dit_config(vocab_size))
    if kind == "mdlm":
        return MDLM(cfg.dit_config(vocab_size))
    raise RunError(f"unknown model kind {kind!r}; choose one of flm, fmlm, ar, mdlm")


def _objective(kind: str, condition_fraction: float = 0.0) -> Any:
    from flowlm.training import FLMObjective, TokenNetObjective

    if kind != "flm" and condition_fraction:
        raise RunError(f"train.condition_fraction (prompt training) applies to FLM training, not to {kind}")
    return FLMObjective(condition_fraction) if kind == "flm" else TokenNetObjective()


def default_steps(cfg: RunConfig, kind: str) -> int | None:
    """Sampler steps of a ``kind`` model when none are asked for: FLM / MDLM ``sample.steps``, FMLM
    ``sample.flow_map_steps``, AR ``None`` (one step per token)."""
    return {"fmlm": cfg.sample.flow_map_steps, "ar": None}.get(kind, cfg.sample.steps)


def _checkpoint_config(cfg: RunConfig, spec: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint's header holds besides the network config: everything ``load_model`` needs."""
    return {"kind": run["kind"], "tokenizer": _tokenizer_entry(spec), "tokenizer_spec": spec,
            "projected": cfg.model.projected, "run": run, "run_config": cfg.to_dict()}


# --------------------------------------------------------------------------------- train / distill
def train_model(
    cfg: RunConfig,
    data: str | os.PathLike | None = None,
    out_dir: str | os.PathLike = "runs/flm",
    resume: bool = True,
) -> Path:
    """Train a ``cfg.model.kind`` model (flm | ar | mdlm) on ``data`` (``None`` = the embedded plays) into
    ``out_dir``; returns the checkpoint.

    A fresh run builds the tokenizer from the corpus; a resumed run (``resume=True`` and a run in
    ``out_dir``) reuses the saved tokenizer and must see the same corpus and model settings.
    """
    from flowlm.training import train

    kind = cfg.model.kind
    main = _main_process()
    out = Path(out_dir).expanduser()
    run = _existing_run(out, kind, cfg, resume)
    tok = tokenizer_from_spec(_read_json(out / "tokenizer.json"), corpus_path=data) if run else None
    _check_shards_required(cfg, data)
    check_training_memory(cfg, tok.vocab_size if tok else None, device=_device(cfg))  # before reading the data
    tok, splits, fingerprint = _data_for(cfg, data, tok, cfg.train.batch_size)
    if run and run.get("data_fingerprint") != fingerprint:
        raise RunError(f"cannot resume {out}: it was trained on other data ({run.get('data')}); "
                       "pass the same --data or use a new --out-dir")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, tok.vocab_size)
    tc = _train_config(cfg, out, distill=False)
    run_info = {
        "kind": kind, "data": str(Path(data).resolve()) if data else None, "data_fingerprint": fingerprint,
        "vocab_size": tok.vocab_size, "train_blocks": splits.train.num_blocks,
        "val_blocks": splits.val.num_blocks if splits.val else 0,
    }
    if main:
        _write_run_files(out, cfg, tok, run_info)
    objective = _objective(kind, cfg.train.condition_fraction)
    result = train(model, objective, splits.train, tc, resume=resume,
                   checkpoint_config=_checkpoint_config(cfg, tok.spec(), run_info),
                   evaluate=_periodic_validation(objective, splits.val, cfg.seed))
    if main:
        _finish(model, result, objective, splits, tok, cfg, out)
    return out / CHECKPOINT_NAME


def train_flm(
    cfg: RunConfig,
    data: str | os.PathLike | None = None,
    out_dir: str | os.PathLike = "runs/flm",
    resume: bool = True,
) -> Path:
    """:func:`train_model` (the name of the first release; trains ``cfg.model.kind``, an FLM by default)."""
    return train_model(cfg, data, out_dir, resume)


def build_distiller(cfg: RunConfig, flow: Any, teacher: Any | None) -> Any:
    """The distiller of ``cfg.distill`` on ``flow``: :func:`flowlm.flowmaps.distiller_class` of ``method``,
    with its time-pair law, JVP backend, projection and (Eulerian) target, step η, boundary policy and
    ``tau_max``; ``teacher`` (a Denoiser) is dropped when ``distill.teacher == "self"``."""
    import inspect

    from flowlm.flowmaps import ExactJVP, FiniteDifferenceJVP, TimePairSampler, distiller_class

    d = cfg.distill
    cls = distiller_class(d.method)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {
        "teacher": None if d.teacher == "self" else teacher,
        "pairs": TimePairSampler(flow, diagonal_fraction=d.diagonal_fraction, boundary_fraction=d.boundary_fraction,
                                 intermediate=d.intermediate),
    }
    if "jvp" in accepted:
        kwargs["jvp"] = ExactJVP() if d.jvp == "exact" else FiniteDifferenceJVP(eps=d.jvp_eps)
    if "projection" in accepted and d.projection != "auto":
        kwargs["projection"] = d.projection
    if "step" in accepted:
        kwargs["step"] = d.eta if d.eulerian_target == "bounded" else None
        kwargs["boundary"] = d.boundary
        kwargs["tau_max"] = d.tau_max
    try:
        return cls(flow, **kwargs)
    except ValueError as e:  # a combination only the distiller checks (e.g. tau_max vs the JVP margin)
        from flowlm.presets import ConfigError

        raise ConfigError(f"distill: {e}") from None


def distill_fmlm(
    cfg: RunConfig,
    teacher_ckpt: str | os.PathLike,
    method: str | None = None,
    out_dir: str | os.PathLike = "runs/fmlm",
    resume: bool = True,
    data: str | os.PathLike | None = None,
) -> Path:
    """Distill the FLM at ``teacher_ckpt`` into a flow-map model (``method``: semigroup | lagrangian |
    eulerian, default ``cfg.distill.method``; every other option from ``cfg.distill``); returns the
    student's checkpoint.

    ``distill.student_init``: ``teacher`` starts the student as the teacher's EMA weights with a
    zeroed second time embedder (:meth:`flowlm.models.FMLM.from_teacher`), ``scratch`` from random
    weights. ``distill.teacher``: ``flm`` distills the frozen FLM, ``self`` the student's own
    diagonal. ``data=None`` reuses the teacher's corpus. ``cfg``'s model fields must equal the teacher's.
    """
    from flowlm.models import FMLM
    from flowlm.training import DistillationObjective, train

    method = method or cfg.distill.method
    if method not in DISTILL_METHODS:
        raise RunError(f"unknown distillation method {method!r}; choose one of {', '.join(DISTILL_METHODS)}")
    cfg = cfg.updated({"distill.method": method})
    main = _main_process()
    teacher, tok, tcfg = load_model(teacher_ckpt, device=_device(cfg))
    if not _is_flm(teacher):
        raise RunError(f"{teacher_ckpt} is a {getattr(teacher, 'kind', '?')} model; the teacher must be an FLM checkpoint")
    diffs = _model_differences(tcfg, cfg)
    if diffs:
        raise RunError(f"the distillation config contradicts the teacher ({'; '.join(diffs)}); "
                       "leave the model fields as the teacher has them")
    if data is None:  # the teacher's corpus (None = the embedded plays)
        data = _run_info(find_checkpoint(teacher_ckpt)).get("data")
        if data is not None and not Path(data).exists():
            raise RunError(f"the teacher was trained on {data}, which no longer exists; pass the corpus with --data")

    out = Path(out_dir).expanduser()
    run = _existing_run(out, "fmlm", cfg, resume)
    if run and run.get("method") != method:
        raise RunError(f"cannot resume {out}: it was distilled with {run.get('method')}, not {method}; "
                       "use a new --out-dir")
    if run and run.get("teacher") != str(find_checkpoint(teacher_ckpt).resolve()):
        raise RunError(f"cannot resume {out}: it was distilled from another teacher ({run.get('teacher')}); "
                       "use a new --out-dir")
    check_training_memory(cfg, tok.vocab_size, method=method, device=_device(cfg))
    tok, splits, fingerprint = _data_for(cfg, data, tok, cfg.distill.batch_size)
    if cfg.distill.student_init == "teacher":
        student = FMLM.from_teacher(teacher)
    else:
        torch.manual_seed(cfg.seed)
        student = FMLM(teacher.config.replace(two_time=True), teacher.flow, projected=teacher.projected)
        student = student.to(next(teacher.parameters()).device)
    objective = DistillationObjective(build_distiller(cfg, student.flow, teacher.denoiser),
                                      cfg.train.condition_fraction)
    tc = _train_config(cfg, out, distill=True)
    run_info = {
        "kind": "fmlm", "method": method, "teacher": str(find_checkpoint(teacher_ckpt).resolve()),
        "data": str(Path(data).resolve()) if data else None, "data_fingerprint": fingerprint,
        "vocab_size": tok.vocab_size,
    }
    if main:
        _write_run_files(out, cfg, tok, run_info)
    ck_config = _checkpoint_config(cfg, tok.spec(), run_info)
    ck_config["method"] = method
    result = train(student, objective, splits.train, tc, resume=resume, checkpoint_config=ck_config,
                   evaluate=_periodic_validation(objective, splits.val, cfg.seed))
    if main:
        _finish(student, result, objective, splits, tok, cfg, out)
    return out / CHECKPOINT_NAME


# --------------------------------------------------------------------------------- load / generate
MODEL_KINDS_ALL = ("flm", "fmlm", "ar", "mdlm")


def _is_flm(model: nn.Module) -> bool:
    return getattr(model, "kind", None) == "flm"


def _run_info(path: Path) -> dict[str, Any]:
    """run.json of a checkpoint: the run directory's side file, else the copy in the checkpoint's header."""
    side = path.parent / "run.json"
    if side.is_file():
        return _read_json(side)
    run = _checkpoint_meta(path).get("run")
    return run if isinstance(run, dict) else {}


def load_model(
    ckpt: str | os.PathLike,
    *,
    expect: RunConfig | None = None,
    device: str | torch.device = "cpu",
    ema: bool = True,
) -> tuple[nn.Module, Tokenizer, RunConfig]:
    """Load ``(model, tokenizer, cfg)`` from a run directory or a checkpoint file (EMA weights by default).

    A checkpoint written by this version carries its run config, tokenizer spec and kind in its header
    and loads on its own; an older one needs its run directory's ``config.json``, ``tokenizer.json``
    and ``run.json``. When those side files are present they must agree with the checkpoint
    (``CheckpointMismatchError`` otherwise); a model whose fields differ from ``expect`` raises
    ``RunError``. The model is returned in eval mode on ``device``.
    """
    from flowlm.training import CheckpointMismatchError, load_checkpoint

    path = find_checkpoint(ckpt)
    run_dir = path.parent
    meta = _checkpoint_meta(path)
    if "model" not in meta or "tokenizer" not in meta or "kind" not in meta:
        raise RunError(f"{path} was not written by flowlm's pipeline (no model/tokenizer/kind in its config)")
    side = {f: run_dir / f for f in ("config.json", "tokenizer.json", "run.json")}
    have_side = all(p.is_file() for p in side.values())
    if have_side:
        cfg = RunConfig.from_dict(_read_json(side["config.json"]))
        spec = _read_json(side["tokenizer.json"])
        kind = _read_json(side["run.json"]).get("kind")
    elif "run_config" in meta and "tokenizer_spec" in meta:  # self-describing checkpoint
        cfg = RunConfig.from_dict(meta["run_config"])
        spec = meta["tokenizer_spec"]
        kind = meta["kind"]
    else:
        missing = [f for f, p in side.items() if not p.is_file()]
        raise RunError(f"{path} needs the files of its run directory next to it; missing {', '.join(missing)}")
    if kind not in MODEL_KINDS_ALL:
        raise RunError(f"{path} names an unknown model kind {kind!r}")
    tok = tokenizer_from_spec(spec)
    model = build_model(cfg, tok.vocab_size, kind)
    expected = {"model": model.config.to_dict(), "tokenizer": _tokenizer_entry(spec), "kind": kind}
    if kind in ("flm", "fmlm"):
        expected["projected"] = cfg.model.projected
    try:
        ck = load_checkpoint(path, expected_config=expected, map_location="cpu")
    except CheckpointMismatchError as e:
        first = str(e).split("\nload it with")[0]
        raise CheckpointMismatchError(
            f"{first}\nthe checkpoint does not belong with the run files next to it (config.json, "
            "tokenizer.json, run.json); keep each checkpoint in the run directory that wrote it"
        ) from None
    if expect is not None:
        diffs = _model_differences(cfg, expect)
        if diffs:
            raise RunError(f"{path} does not match the requested config ({'; '.join(diffs)})")
    weights = ck.ema if ema and ck.ema else ck.model
    model.load_state_dict(weights)
    return model.to(resolve_device(device)).eval(), tok, cfg


def _checkpoint_meta(path: Path) -> dict[str, Any]:
    """The run configuration stored in a checkpoint's header (no tensors are read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for non-safetensors files
        raise RunError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from None
    try:
        return json.loads(meta.get("config", "{}"))
    except json.JSONDecodeError:
        raise RunError(f"{path} has a corrupt config header") from None


class Samples(list):
    """Generated texts (a ``list[str]``) with ``nfe`` (network evaluations per sample), ``seconds``
    (wall time) and ``tokens`` (``[n, L]`` LongTensor)."""

    nfe: int
    seconds: float
    tokens: torch.Tensor


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer: Tokenizer,
    n_samples: int,
    steps: int | None,
    seed: int = 0,
    *,
    length: int | None = None,
    gamma: float = 0.0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    prompt: Any = None,
) -> Samples:
    """Draw ``n_samples`` texts, deterministic in ``seed``, from any model kind: FLM (``steps`` Euler steps
    on the τ grid), FMLM (``steps`` flow-map steps, ``gamma`` re-noising), MDLM (``steps`` ancestral
    steps, default ``length``), AR (one step per token; ``steps`` must be None or ``length``);
    ``temperature`` and ``top_p`` apply to AR and MDLM; ``prompt``: a :class:`flowlm.Prompt` held
    clean (FLM and FMLM)."""
    kind = getattr(model, "kind", None)
    length = length or model.config.max_length
    if kind == "ar" and steps is not None and steps != length:
        raise RunError(f"an AR model takes one step per token: leave the step count out or set it to {length}")
    if n_samples < 1 or (steps is not None and steps < 1) or (steps is None and kind in ("flm", "fmlm")):
        raise RunError(f"need n_samples >= 1 and steps >= 1, got n_samples={n_samples}, steps={steps}")
    if kind in ("flm", "fmlm") and (temperature != 1.0 or top_p != 1.0):
        raise RunError(f"temperature and top_p apply to AR and MDLM sampling, not to an {kind.upper()} "
                       "(its sampler is deterministic given the noise)")
    dev = next(model.parameters()).device
    g = torch.Generator(device=dev).manual_seed(int(seed))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    if kind in ("ar", "mdlm"):
        out = model.sample(n_samples, length, steps=steps, generator=g, temperature=temperature, top_p=top_p)
    else:
        out = model.sample(n_samples, length, steps, gamma=gamma if kind == "fmlm" else 0.0, prompt=prompt,
                           generator=g)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    tokens = out.tokens.cpu()
    samples = Samples(tokenizer.decode(row.tolist()) for row in tokens)
    samples.nfe, samples.seconds, samples.tokens = int(out.nfe), seconds, tokens
    return samples

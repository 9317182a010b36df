"""Run configurations: a :class:`RunConfig` nested into sections, and named presets.

A run is fully described by a ``RunConfig`` (saved as ``config.json`` in the run directory and inside
its checkpoint). Its sections, each one dataclass:

* ``data``    (:class:`DataConfig`): tokenizer, sequence length, validation split;
* ``model``   (:class:`ModelConfig`): model kind (``flm`` | ``ar`` | ``mdlm``) and the DiT backbone;
* ``train``   (:class:`TrainingConfig`): optimizer, schedule, EMA, logging of the first stage;
* ``distill`` (:class:`DistillConfig`): the flow-map distiller and every one of its options;
* ``sample``  (:class:`SampleConfig`): sampling defaults of every model kind;
* ``eval``    (:class:`EvalConfig`): Gen PPL / entropy evaluation defaults;

plus the top-level ``preset``, ``seed``, ``device`` and ``compile``. Presets:

==================  ==========  ====  =========================  ==========================================
name                tokenizer   L     DiT (depth × width × heads)  meant for
==================  ==========  ====  =========================  ==========================================
``tiny``            char        32    1 × 32 × 2                  tests: trains in seconds
``shakespeare-char`` char       128   4 × 128 × 4                 a laptop CPU, ~10 min (estimate)
``shakespeare-bpe`` bpe (2048)  64    4 × 128 × 4                 a 2-core CPU: ~10 min FLM + ~5 min FMLM
``lm1b``            bert        128   12 × 768 × 12               GPU; the paper's LM1B size (``--data``: prepared shards)
``owt``             gpt2        1024  12 × 768 × 12               GPU; the paper's OpenWebText size (``--data``: shards)
==================  ==========  ====  =========================  ==========================================

Every field is one dotted key away: ``--set distill.projection=sparsemax``, ``--set train.steps=50``
on the command line (:func:`apply_overrides`, values parsed with the field's type, unknown keys get a
"did you mean"), ``cfg.updated({"train.steps": 50})`` in Python. The flat names of the first
release (``steps``, ``seq_len``, ``distill_method``, ...) are still accepted everywhere
(:data:`LEGACY_KEYS` maps them), and old flat ``config.json`` files load; ``cfg.seq_len`` still
reads ``cfg.data.seq_len`` (deprecated, read-only).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunConfig", "DataConfig", "ModelConfig", "TrainingConfig", "DistillConfig", "SampleConfig",
           "EvalConfig", "PRESETS", "preset", "apply_overrides", "ConfigError", "LEGACY_KEYS", "MODEL_KINDS",
           "config_keys"]


class ConfigError(ValueError):
    """A run configuration that is invalid (unknown field, bad value, unknown preset)."""


DISTILL_METHODS = ("semigroup", "lagrangian", "eulerian")  # = flowlm.flowmaps.DISTILLERS, torch-free (a test checks)
TOKENIZER_KINDS = ("char", "bpe", "gpt2", "bert")  # = flowlm.data.tokenizers.TOKENIZER_KINDS (a test checks)
MODEL_KINDS = ("flm", "ar", "mdlm")  # what `flowlm train --model` trains (fmlm: `flowlm distill`)
PROJECTIONS = ("auto", "clip", "mse", "sparsemax")  # = flowlm.flowmaps.PROJECTIONS + "auto" (the class default)
JVP_BACKENDS = ("exact", "finite_difference")
INTERMEDIATES = ("tau_midpoint", "t_midpoint", "uniform")  # = flowmaps.time_pairs._INTERMEDIATE
EULERIAN_TARGETS = ("bounded", "paper")
BOUNDARY_POLICIES = ("cap", "hold", "drop")  # = flowlm.flowmaps.eulerian.BOUNDARY_POLICIES
TEACHERS = ("flm", "self")
SCHEDULES = ("decoding_error", "uniform")  # = flowlm.Flow.from_names
FLM_LOSSES = ("ce", "mse", "velocity_mse")  # = flowlm.models.flm.FLM_LOSSES
STUDENT_INITS = ("teacher", "scratch")


def _problems_positive(obj: Any, names: tuple[str, ...], section: str) -> list[str]:
    return [f"{section}.{n} must be >= 1 (got {getattr(obj, n)})" for n in names if getattr(obj, n) < 1]


def _problems_choice(obj: Any, name: str, choices: tuple[str, ...], section: str) -> list[str]:
    v = getattr(obj, name)
    return [] if v in choices else [f"{section}.{name} must be one of {', '.join(choices)} (got {v!r})"]


@dataclass
class DataConfig:
    """Corpus → token blocks."""

    tokenizer: str = "char"  # char | bpe | gpt2 | bert
    vocab_size: int = 0  # target size for bpe (0 = 4096); fixed by the tokenizer otherwise
    seq_len: int = 128
    val_fraction: float = 0.05
    split_by: str = "block"  # block | document
    require_shards: bool = False  # --data must be a `flowlm data prepare` folder (the lm1b / owt presets)

    def problems(self) -> list[str]:
        p = _problems_choice(self, "tokenizer", TOKENIZER_KINDS, "data")
        p += _problems_choice(self, "split_by", ("block", "document"), "data")
        p += _problems_positive(self, ("seq_len",), "data")
        if not 0.0 <= self.val_fraction < 1.0:
            p.append(f"data.val_fraction must be in [0, 1) (got {self.val_fraction})")
        if self.vocab_size < 0:
            p.append(f"data.vocab_size must be >= 0 (got {self.vocab_size})")
        return p


@dataclass
class ModelConfig:
    """The model kind and its DiT backbone (AR and MDLM use the same DiT: causal / unconditioned)."""

    kind: str = "flm"  # flm | ar | mdlm
    depth: int = 4
    width: int = 192
    heads: int = 4
    mlp_ratio: int = 4
    cond: int = 128  # conditioning width (time embedding → adaLN), separate from width
    dropout: float = 0.1
    attn_softcap: float = 50.0  # 0 = off
    out_softcap: float = 30.0  # 0 = off
    attention: str = "auto"
    projected: bool = True  # FLM / FMLM: the projected (V-dimensional) state space
    interpolant: str = "linear"  # FLM / FMLM: a flowlm.interpolants.INTERPOLANTS name (linear | cosine | quadratic)
    schedule: str = "decoding_error"  # FLM / FMLM: model time τ = decoding-error time, or uniform (τ = t)
    loss: str = "ce"  # FLM: ce (denoiser + CE) | mse (denoiser + MSE on the simplex) | velocity_mse (velocity + MSE)

    def problems(self) -> list[str]:
        p = _problems_choice(self, "kind", MODEL_KINDS, "model")
        p += _problems_choice(self, "schedule", SCHEDULES, "model")
        p += _problems_choice(self, "loss", FLM_LOSSES, "model")
        if not isinstance(self.interpolant, str) or not self.interpolant:
            p.append(f"model.interpolant must be an interpolant name (got {self.interpolant!r})")
        if self.kind in ("ar", "mdlm"):
            odd = [f"model.{n}={getattr(self, n)!r}" for n, d in (("interpolant", "linear"), ("schedule", "decoding_error"),
                                                                  ("loss", "ce")) if getattr(self, n) != d]
            if odd:
                p.append(f"{', '.join(odd)}: the interpolant, schedule and loss are FLM options; a {self.kind} "
                         "model has none (leave them at their defaults)")
        p += _problems_positive(self, ("depth", "width", "heads", "mlp_ratio", "cond"), "model")
        if not 0.0 <= self.dropout < 1.0:
            p.append(f"model.dropout must be in [0, 1) (got {self.dropout})")
        for n in ("attn_softcap", "out_softcap"):
            if getattr(self, n) < 0:
                p.append(f"model.{n} must be >= 0 (0 = off; got {getattr(self, n)})")
        if self.heads >= 1 and self.width % self.heads:
            p.append(f"model.width {self.width} must be divisible by model.heads {self.heads}")
        elif self.heads >= 1 and (self.width // self.heads) % 2:
            p.append(f"head width {self.width // self.heads} (model.width / model.heads) must be even for RoPE")
        return p


@dataclass
class TrainingConfig:
    """The first training stage (an FLM, or an AR / MDLM baseline)."""

    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # 0 = off
    ema_decay: float = 0.999
    grad_accum: int = 1
    log_every: int = 50
    ckpt_every: int = 500
    eval_every: int = 500  # validation loss every N steps (0 = only at the end)
    condition_fraction: float = 0.0  # FLM: fraction of training rows with a clean (conditioning) prefix

    def problems(self) -> list[str]:
        p = _problems_positive(self, ("steps", "batch_size", "grad_accum", "log_every", "ckpt_every"), "train")
        if self.warmup_steps < 0 or self.eval_every < 0:
            p.append("train.warmup_steps and train.eval_every must be >= 0 (eval_every 0 = validation only at the end)")
        if not self.lr > 0:
            p.append(f"train.lr must be > 0 (got {self.lr})")
        if self.weight_decay < 0 or self.grad_clip < 0:
            p.append("train.weight_decay and train.grad_clip must be >= 0")
        for n in ("ema_decay", "condition_fraction"):
            if not 0.0 <= getattr(self, n) <= 1.0:
                p.append(f"train.{n} must be in [0, 1] (got {getattr(self, n)})")
        if self.grad_accum >= 1 and self.batch_size % self.grad_accum:
            p.append(f"train.batch_size {self.batch_size} must be divisible by train.grad_accum {self.grad_accum}")
        return p


@dataclass
class DistillConfig:
    r"""Flow-map distillation (``flowlm distill``): the distiller and every option of it.

    Times (``tau_max``, ``eta``) are model time τ. The distiller is built by
    :func:`flowlm.pipeline.build_distiller` through :func:`flowlm.flowmaps.distiller_class`.
    """

    method: str = "semigroup"  # semigroup | lagrangian | eulerian
    projection: str = "auto"  # auto (the class default: clip; semigroup needs none) | clip | mse | sparsemax
    jvp: str = "exact"  # exact (forward-mode AD) | finite_difference (central, step jvp_eps in τ)
    jvp_eps: float = 1e-5
    diagonal_fraction: float = 0.5  # time pairs: share of diagonal rows s = t (the FLM loss)
    boundary_fraction: float = 1.0 / 64.0  # share of (s, t) = (0, 1) rows (the one-step map)
    intermediate: str = "tau_midpoint"  # semigroup's u: tau_midpoint | t_midpoint | uniform
    eulerian_target: str = "bounded"  # bounded (a step of length eta along the residual) | paper
    eta: float = 0.05  # the bounded Eulerian step length, model time τ
    boundary: str = "hold"  # paper Eulerian target near τ_t = 1: cap | hold | drop
    tau_max: float = 0.99  # paper Eulerian target: τ_t threshold of the boundary policy
    teacher: str = "flm"  # flm (a frozen trained FLM) | self (self-distillation, the student's own diagonal)
    student_init: str = "teacher"  # teacher (FLM weights + zeroed second time embedder) | scratch
    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-4
    warmup_steps: int = 50
    ema_decay: float = 0.999

    def problems(self) -> list[str]:
        p = _problems_choice(self, "method", DISTILL_METHODS, "distill")
        for name, choices in (("projection", PROJECTIONS), ("jvp", JVP_BACKENDS), ("intermediate", INTERMEDIATES),
                              ("eulerian_target", EULERIAN_TARGETS), ("boundary", BOUNDARY_POLICIES),
                              ("teacher", TEACHERS), ("student_init", STUDENT_INITS)):
            p += _problems_choice(self, name, choices, "distill")
        p += _problems_positive(self, ("steps", "batch_size"), "distill")
        if self.method == "semigroup" and self.projection not in ("auto",):
            p.append(f"distill.projection={self.projection} has no effect on the semigroup distiller (its target "
                     "stays on the simplex); leave it at auto or pick distill.method=lagrangian|eulerian")
        if not self.jvp_eps > 0:
            p.append(f"distill.jvp_eps must be > 0 (got {self.jvp_eps})")
        for n in ("diagonal_fraction", "boundary_fraction"):
            if not 0.0 <= getattr(self, n) <= 1.0:
                p.append(f"distill.{n} must be in [0, 1] (got {getattr(self, n)})")
        if self.diagonal_fraction + self.boundary_fraction > 1.0:
            p.append("distill.diagonal_fraction + distill.boundary_fraction must be <= 1")
        if not self.eta > 0:
            p.append(f"distill.eta must be > 0 (model time τ; got {self.eta})")
        if not 0.0 < self.tau_max < 1.0:
            p.append(f"distill.tau_max must be in (0, 1) (model time τ; got {self.tau_max})")
        if not self.lr > 0:
            p.append(f"distill.lr must be > 0 (got {self.lr})")
        if self.warmup_steps < 0:
            p.append(f"distill.warmup_steps must be >= 0 (got {self.warmup_steps})")
        if not 0.0 <= self.ema_decay <= 1.0:
            p.append(f"distill.ema_decay must be in [0, 1] (got {self.ema_decay})")
        if self.teacher == "self" and self.student_init == "scratch":
            p.append("distill.teacher=self needs distill.student_init=teacher (a scratch student has no diagonal "
                     "to distill from)")
        return p


@dataclass
class SampleConfig:
    """Sampling defaults (``flowlm sample`` and the samples written at the end of a run)."""

    steps: int = 64  # FLM Euler steps; MDLM ancestral steps
    flow_map_steps: int = 1  # FMLM flow-map steps
    n: int = 4  # samples per run
    gamma: float = 0.0  # FMLM re-noising between steps
    temperature: float = 1.0  # AR / MDLM
    top_p: float = 1.0  # AR / MDLM nucleus

    def problems(self) -> list[str]:
        p = _problems_positive(self, ("steps", "flow_map_steps", "n"), "sample")
        if not 0.0 <= self.gamma <= 1.0:
            p.append(f"sample.gamma must be in [0, 1] (got {self.gamma})")
        if not self.temperature > 0:
            p.append(f"sample.temperature must be > 0 (got {self.temperature})")
        if not 0.0 < self.top_p <= 1.0:
            p.append(f"sample.top_p must be in (0, 1] (got {self.top_p})")
        return p


@dataclass
class EvalConfig:
    """Gen PPL / entropy evaluation defaults (``flowlm eval``, ``flowlm experiment``)."""

    n_samples: int = 64
    batch_size: int = 16
    steps: str = "1,2,4,8,16,32,64"  # the step sweep of step-sweep plots (comma separated)
    temperatures: str = "0.6,0.8,1.0"  # AR temperature sweep

    def problems(self) -> list[str]:
        p = _problems_positive(self, ("n_samples", "batch_size"), "eval")
        for name in ("steps", "temperatures"):
            try:
                vals = [float(s) for s in getattr(self, name).replace(",", " ").split()]
                if not vals or min(vals) <= 0:
                    raise ValueError
            except ValueError:
                p.append(f"eval.{name} must be positive numbers separated by commas (got {getattr(self, name)!r})")
        return p

    def step_list(self) -> tuple[int, ...]:
        return tuple(int(float(s)) for s in self.steps.replace(",", " ").split())

    def temperature_list(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.temperatures.replace(",", " ").split())


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainingConfig,
                             "distill": DistillConfig, "sample": SampleConfig, "eval": EvalConfig}
TOP_LEVEL = ("preset", "seed", "device", "compile")

#: the flat keys of the first release -> their dotted key
LEGACY_KEYS: dict[str, str] = {
    **{n: f"data.{n}" for n in ("tokenizer", "vocab_size", "seq_len", "val_fraction", "split_by", "require_shards")},
    **{n: f"model.{n}" for n in ("depth", "width", "heads", "mlp_ratio", "cond", "dropout", "attn_softcap",
                                 "out_softcap", "attention", "projected")},
    **{n: f"train.{n}" for n in ("steps", "batch_size", "lr", "warmup_steps", "weight_decay", "grad_clip",
                                 "ema_decay", "grad_accum", "log_every", "ckpt_every", "eval_every",
                                 "condition_fraction")},
    "distill_method": "distill.method", "distill_steps": "distill.steps", "distill_batch_size": "distill.batch_size",
    "distill_lr": "distill.lr", "distill_warmup_steps": "distill.warmup_steps",
    "distill_ema_decay": "distill.ema_decay",
    "sample_steps": "sample.steps", "distill_sample_steps": "sample.flow_map_steps", "n_samples": "sample.n",
    "gamma": "sample.gamma",
}


def config_keys() -> list[str]:
    """Every dotted key a RunConfig accepts (``["preset", "seed", ..., "data.tokenizer", ...]``)."""
    keys = list(TOP_LEVEL)
    for name, cls in SECTIONS.items():
        keys += [f"{name}.{f.name}" for f in dataclasses.fields(cls)]
    return keys


def _suggest(name: str) -> str:
    keys = config_keys()
    close = [k for k in keys if k.split(".")[-1] == name.split(".")[-1]][:1]  # "projection" -> "distill.projection"
    if not close:
        close = difflib.get_close_matches(name, keys + list(LEGACY_KEYS), n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(name.split(".")[-1], [k.split(".")[-1] for k in keys], n=1)
        close = [k for k in keys if close and k.split(".")[-1] == close[0]][:1]
    if close:
        key = LEGACY_KEYS.get(close[0], close[0])
        return f"did you mean {key!r}?"
    return "see `flowlm.presets.config_keys()` for the keys"


def _canonical(key: str) -> str:
    """``key`` as a dotted key (legacy flat names mapped); raises ConfigError with a suggestion."""
    key = key.strip()
    if key in TOP_LEVEL:
        return key
    if key in LEGACY_KEYS:
        return LEGACY_KEYS[key]
    if "." in key:
        section, name = key.split(".", 1)
        if section in SECTIONS and name in {f.name for f in dataclasses.fields(SECTIONS[section])}:
            return key
    raise ConfigError(f"unknown run config key {key!r}; {_suggest(key)}")


@dataclass
class RunConfig:
    """Everything a run needs: ``preset``, ``seed``, ``device``, ``compile`` and six sections."""

    preset: str = "custom"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    compile: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainingConfig = field(default_factory=TrainingConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _section_from_dict(cls, name, value))
            elif not isinstance(value, cls):
                raise ConfigError(f"RunConfig.{name} must be a {cls.__name__}, got {type(value).__name__}")
        self.validate()

    def validate(self) -> None:
        p: list[str] = []
        for name in SECTIONS:
            p += getattr(self, name).problems()
        if self.distill.batch_size % self.train.grad_accum:
            p.append(f"distill.batch_size {self.distill.batch_size} must be divisible by train.grad_accum "
                     f"{self.train.grad_accum}")
        if p:
            raise ConfigError("invalid run config: " + "; ".join(p))

    # ------------------------------------------------------------------ legacy flat reads
    def __getattr__(self, name: str) -> Any:
        """``cfg.seq_len`` → ``cfg.data.seq_len`` for the flat names of the first release (deprecated)."""
        key = LEGACY_KEYS.get(name)
        if key is None:
            raise AttributeError(name if name.startswith("_") else f"RunConfig has no field {name!r}; {_suggest(name)}")
        return self.get(key)

    def get(self, key: str) -> Any:
        """The value at a dotted (or legacy flat) ``key``."""
        key = _canonical(key)
        if "." not in key:
            return object.__getattribute__(self, key)
        section, name = key.split(".", 1)
        return getattr(object.__getattribute__(self, section), name)

    # -------------------------------------------------------------------------------- views
    def dit_config(self, vocab_size: int, two_time: bool = False):
        """The :class:`flowlm.nets.DiTConfig` of this run for a tokenizer of ``vocab_size``."""
        from flowlm.nets import DiTConfig

        m = self.model
        try:
            return DiTConfig(
                vocab_size=vocab_size, max_length=self.data.seq_len, width=m.width, depth=m.depth,
                heads=m.heads, mlp_ratio=m.mlp_ratio, cond=m.cond, two_time=two_time,
                dropout=m.dropout, attn_softcap=m.attn_softcap or None,
                out_softcap=m.out_softcap or None, attention=m.attention,
            )
        except ValueError as e:  # a combination only the network checks (e.g. attention kind vs soft-cap)
            raise ConfigError(str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_flat(self) -> dict[str, Any]:
        """``{"data.seq_len": 128, ...}``: every dotted key and its value."""
        return {k: self.get(k) for k in config_keys()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """A nested dict (``to_dict``), or a flat one of the first release (old run folders' config.json)."""
        if "time_dim" in d:  # written before the DiT became the authors' network
            from flowlm.nets.dit import OLD_FORMAT_MESSAGE

            raise ConfigError(OLD_FORMAT_MESSAGE)
        nested: dict[str, Any] = {}
        flat: dict[str, Any] = {}
        for k, v in d.items():
            if k in SECTIONS and isinstance(v, dict):
                nested[k] = v
            else:
                flat[k] = v
        cfg = RunConfig.__new__(cls)  # built field by field so that every problem is reported at once
        base = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                for f in dataclasses.fields(cls)}
        for name, sec in nested.items():
            base[name] = _section_from_dict(SECTIONS[name], name, sec)
        for k in list(flat):
            if k in TOP_LEVEL:
                base[k] = flat.pop(k)
        for k, v in flat.items():
            key = _canonical(k)
            section, name = key.split(".", 1)
            setattr(base[section], name, v)
        for k, v in base.items():
            object.__setattr__(cfg, k, v)
        cfg.__post_init__()
        return cfg

    def updated(self, changes: dict[str, Any]) -> RunConfig:
        """A copy with ``{"distill.projection": "sparsemax", "steps": 50, ...}`` applied (dotted or legacy keys,
        or a whole section by name)."""
        new = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        new.update({name: dataclasses.replace(new[name]) for name in SECTIONS})
        for k, v in changes.items():
            if k in SECTIONS:
                new[k] = v if isinstance(v, SECTIONS[k]) else _section_from_dict(SECTIONS[k], k, v)
                continue
            key = _canonical(k)
            if "." not in key:
                new[key] = v
            else:
                section, name = key.split(".", 1)
                setattr(new[section], name, v)
        return type(self)(**new)

    def replace(self, **changes: Any) -> RunConfig:
        """``cfg.replace(seed=1, steps=50, distill=DistillConfig(...))``: top-level fields, whole sections, or
        legacy flat names (dotted keys: :meth:`updated`)."""
        return self.updated(changes)


def _section_from_dict(cls: type, section: str, d: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown run config key '{section}.{unknown[0]}'; {_suggest(section + '.' + unknown[0])}")
    return cls(**d)


# model-shape keys: a checkpoint is only loadable into the same values
MODEL_FIELDS = ("data.tokenizer", "data.vocab_size", "data.seq_len", "model.kind", "model.depth", "model.width",
                "model.heads", "model.mlp_ratio", "model.cond", "model.attn_softcap", "model.out_softcap",
                "model.projected")


_FLAT_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        tokenizer="char", seq_len=32, depth=1, width=32, heads=2, mlp_ratio=2, cond=16, dropout=0.0,
        steps=20, batch_size=8, lr=2e-3, warmup_steps=5, ema_decay=0.9, log_every=5, ckpt_every=10, eval_every=10,
        distill_steps=10, distill_batch_size=8, distill_lr=1e-3, distill_warmup_steps=2, distill_ema_decay=0.9,
        sample_steps=8, n_samples=2, val_fraction=0.1, attention="math",
        **{"eval.n_samples": 4, "eval.steps": "2,8", "eval.temperatures": "0.7,1.0"},
    ),
    # ~10 GFLOP per step (0.8M non-embedding parameters × 2048 tokens): ~0.1-0.2 s on a laptop CPU
    "shakespeare-char": dict(
        tokenizer="char", seq_len=128, depth=4, width=128, heads=4, cond=64, dropout=0.1,
        steps=3000, batch_size=16, lr=1e-3, warmup_steps=100, ema_decay=0.999, log_every=50, ckpt_every=250, eval_every=250,
        distill_steps=800, distill_batch_size=16, distill_lr=3e-4, sample_steps=64, n_samples=4,
    ),
    # measured on a 2-core CPU: 0.30 s per FLM step, ~0.5 s per distillation step (~10 + 5 min)
    "shakespeare-bpe": dict(
        tokenizer="bpe", vocab_size=2048, seq_len=64, depth=4, width=128, heads=4, cond=64, dropout=0.1,
        steps=2000, batch_size=32, lr=1e-3, warmup_steps=100, ema_decay=0.999, log_every=50, ckpt_every=250, eval_every=250,
        distill_steps=600, distill_batch_size=32, distill_lr=3e-4, sample_steps=64, n_samples=4,
    ),
    "lm1b": dict(
        tokenizer="bert", seq_len=128, depth=12, width=768, heads=12, cond=128, dropout=0.1,
        steps=1_000_000, batch_size=512, lr=3e-4, warmup_steps=2500, ema_decay=0.9999, log_every=100,
        ckpt_every=5000, eval_every=5000, distill_steps=100_000, distill_batch_size=512, distill_lr=3e-4, distill_warmup_steps=2500,
        distill_ema_decay=0.9999, sample_steps=1024, n_samples=16, val_fraction=0.01, device="cuda", compile=True,
        require_shards=True,
    ),
    "owt": dict(
        tokenizer="gpt2", seq_len=1024, depth=12, width=768, heads=12, cond=128, dropout=0.1,
        steps=1_000_000, batch_size=512, lr=3e-4, warmup_steps=2500, ema_decay=0.9999, log_every=100,
        ckpt_every=5000, eval_every=5000, distill_steps=100_000, distill_batch_size=512, distill_lr=3e-4, distill_warmup_steps=2500,
        distill_ema_decay=0.9999, sample_steps=1024, n_samples=16, val_fraction=0.01, device="cuda", compile=True,
        require_shards=True,
    ),
}


#: preset name -> {dotted key: value}
PRESETS: dict[str, dict[str, Any]] = {
    name: {LEGACY_KEYS.get(k, k): v for k, v in values.items()} for name, values in _FLAT_PRESETS.items()
}


def preset(name: str, **overrides: Any) -> RunConfig:
    """The named preset with ``overrides`` applied (``preset("tiny", steps=50)``; dotted keys:
    ``preset("tiny").updated({"distill.projection": "mse"})``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return RunConfig(preset=name).updated(PRESETS[name]).replace(**overrides)


def _parse(t: Any, name: str, raw: str) -> Any:
    """``raw`` as a value of type ``t`` (bool: true/false/1/0/yes/no/on/off; int: also ``1e4``)."""
    word = {bool: "boolean (true/false)", int: "integer", float: "number"}.get(t, "string")
    try:
        if t is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if t is int:
            try:
                return int(raw)
            except ValueError:
                f = float(raw)  # "1e4"
                if not f.is_integer():
                    raise
                return int(f)
        if t is float:
            return float(raw)
        return raw
    except ValueError:
        raise ConfigError(f"--set {name}={raw}: expected an {word} value" if word[0] in "aeiou"
                          else f"--set {name}={raw}: expected a {word} value") from None


def apply_overrides(cfg: RunConfig, assignments: list[str] | None) -> RunConfig:
    """Apply ``["key=value", ...]`` to ``cfg``: dotted keys (``distill.projection=sparsemax``) or the legacy flat
    names (``seq_len=64``), values parsed with each field's type."""
    if not assignments:
        return cfg
    changes: dict[str, Any] = {}
    for a in assignments:
        if "=" not in a:
            raise ConfigError(f"--set expects key=value, got {a!r} (e.g. --set train.steps=500)")
        name, raw = (s.strip() for s in a.split("=", 1))
        try:
            key = _canonical(name)
        except ConfigError:
            raise ConfigError(f"--set {name}: unknown key; {_suggest(name)}") from None
        changes[key] = _parse(_key_type(key), name, raw)
    return cfg.updated(changes)


def _key_type(key: str) -> Any:
    if "." not in key:
        return typing.get_type_hints(RunConfig)[key]
    section, name = key.split(".", 1)
    return typing.get_type_hints(SECTIONS[section])[name]

"""Run configurations: one flat :class:`RunConfig` dataclass and named presets.

A run is fully described by a ``RunConfig`` (saved as ``config.json`` in the run directory): the
tokenizer, the sequence length, the DiT size, FLM training, flow-map distillation, sampling
defaults, the seed and the device. Presets:

==================  ==========  ====  =========================  ==========================================
name                tokenizer   L     DiT (depth × width × heads)  meant for
==================  ==========  ====  =========================  ==========================================
``tiny``            char        32    1 × 32 × 2                  tests: trains in seconds
``shakespeare-char`` char       128   4 × 128 × 4                 a laptop CPU, ~10 min (estimate)
``shakespeare-bpe`` bpe (2048)  64    4 × 128 × 4                 a 2-core CPU: ~10 min FLM + ~5 min FMLM
``lm1b``            bert        128   12 × 768 × 12               GPU; the paper's LM1B size (``--data``: prepared shards)
``owt``             gpt2        1024  12 × 768 × 12               GPU; the paper's OpenWebText size (``--data``: shards)
==================  ==========  ====  =========================  ==========================================

Every field can be overridden: ``preset("tiny", steps=50)`` in Python, ``--set steps=50`` (or the
common flags) on the command line; :func:`apply_overrides` parses ``field=value`` strings with the
field's type.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunConfig", "PRESETS", "preset", "apply_overrides", "ConfigError"]


class ConfigError(ValueError):
    """A run configuration that is invalid (unknown field, bad value, unknown preset)."""


@dataclass
class RunConfig:
    """Everything a run needs, flat so that every field is one ``--set field=value`` away."""

    preset: str = "custom"
    # data and tokenizer
    tokenizer: str = "char"  # char | bpe | gpt2 | bert
    vocab_size: int = 0  # target size for bpe (0 = 4096); fixed by the tokenizer otherwise
    seq_len: int = 128
    val_fraction: float = 0.05
    split_by: str = "block"  # block | document
    require_shards: bool = False  # --data must be a `flowlm data prepare` folder (the lm1b / owt presets)
    # model (DiT)
    depth: int = 4
    width: int = 192
    heads: int = 4
    mlp_ratio: int = 4
    cond: int = 128  # conditioning width (time embedding → adaLN), separate from width
    dropout: float = 0.1
    attn_softcap: float = 50.0  # 0 = off
    out_softcap: float = 30.0  # 0 = off
    attention: str = "auto"
    projected: bool = True
    # FLM training
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    grad_accum: int = 1
    log_every: int = 50
    ckpt_every: int = 500
    eval_every: int = 500  # validation loss every N steps (0 = only at the end)
    # flow-map distillation
    distill_method: str = "semigroup"  # semigroup | lagrangian | eulerian
    distill_steps: int = 1000
    distill_batch_size: int = 32
    distill_lr: float = 3e-4
    distill_warmup_steps: int = 50
    distill_ema_decay: float = 0.999
    # sampling
    sample_steps: int = 64  # FLM Euler steps
    distill_sample_steps: int = 1  # FMLM flow-map steps
    n_samples: int = 4
    gamma: float = 0.0  # FMLM re-noising between steps
    condition_fraction: float = 0.0  # share of training sequences with random clean positions (prompts); 0 = off
    # run
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    compile: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        p = []
        if self.tokenizer not in TOKENIZER_KINDS:
            p.append(f"tokenizer must be one of {', '.join(TOKENIZER_KINDS)} (got {self.tokenizer!r})")
        if self.split_by not in ("block", "document"):
            p.append(f"split_by must be 'block' or 'document' (got {self.split_by!r})")
        if self.distill_method not in DISTILL_METHODS:
            p.append(f"distill_method must be one of {', '.join(DISTILL_METHODS)} (got {self.distill_method!r})")
        for name in ("seq_len", "depth", "width", "heads", "steps", "batch_size", "distill_steps",
                     "distill_batch_size", "sample_steps", "distill_sample_steps", "n_samples",
                     "grad_accum", "log_every", "ckpt_every", "mlp_ratio", "cond"):
            if getattr(self, name) < 1:
                p.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.eval_every < 0:
            p.append(f"eval_every must be >= 0 (0 = validation only at the end; got {self.eval_every})")
        for name in ("lr", "distill_lr"):
            if not getattr(self, name) > 0:
                p.append(f"{name} must be > 0 (got {getattr(self, name)})")
        for name in ("dropout", "val_fraction", "ema_decay", "distill_ema_decay", "gamma"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0 or (name in ("dropout", "val_fraction") and v == 1.0):
                p.append(f"{name} must be in [0, 1) (got {v})" if name in ("dropout", "val_fraction")
                         else f"{name} must be in [0, 1] (got {v})")
        if self.width % self.heads:
            p.append(f"width {self.width} must be divisible by heads {self.heads}")
        elif (self.width // self.heads) % 2:
            p.append(f"head width {self.width // self.heads} (width / heads) must be even for RoPE")
        for name in ("batch_size", "distill_batch_size"):
            if getattr(self, name) % self.grad_accum:
                p.append(f"{name} {getattr(self, name)} must be divisible by grad_accum {self.grad_accum}")
        if p:
            raise ConfigError("invalid run config: " + "; ".join(p))

    # -------------------------------------------------------------------------------- views
    def dit_config(self, vocab_size: int, two_time: bool = False):
        """The :class:`flowlm.nets.DiTConfig` of this run for a tokenizer of ``vocab_size``."""
        from flowlm.nets import DiTConfig

        try:
            return self._dit_config(DiTConfig, vocab_size, two_time)
        except ValueError as e:  # a combination only the network checks (e.g. attention kind vs soft-cap)
            raise ConfigError(str(e)) from None

    def _dit_config(self, DiTConfig: Any, vocab_size: int, two_time: bool) -> Any:
        return DiTConfig(
            vocab_size=vocab_size, max_length=self.seq_len, width=self.width, depth=self.depth,
            heads=self.heads, mlp_ratio=self.mlp_ratio, cond=self.cond, two_time=two_time,
            dropout=self.dropout, attn_softcap=self.attn_softcap or None,
            out_softcap=self.out_softcap or None, attention=self.attention,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        if "time_dim" in d:  # written before the DiT became the authors' network
            from flowlm.nets.dit import OLD_FORMAT_MESSAGE

            raise ConfigError(OLD_FORMAT_MESSAGE)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown run config field(s) {unknown}; " + _suggest(unknown[0]))
        return cls(**d)

    def replace(self, **changes: Any) -> RunConfig:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown run config field(s) {unknown}; " + _suggest(unknown[0]))
        return dataclasses.replace(self, **changes)


DISTILL_METHODS = ("semigroup", "lagrangian", "eulerian")  # = flowlm.flowmaps.DISTILLERS, torch-free (a test checks)
TOKENIZER_KINDS = ("char", "bpe", "gpt2", "bert")  # = flowlm.data.tokenizers.TOKENIZER_KINDS (a test checks)

# model-shape fields: a checkpoint is only loadable into the same values
MODEL_FIELDS = ("tokenizer", "vocab_size", "seq_len", "depth", "width", "heads", "mlp_ratio", "cond",
                "attn_softcap", "out_softcap", "projected")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        tokenizer="char", seq_len=32, depth=1, width=32, heads=2, mlp_ratio=2, cond=16, dropout=0.0,
        steps=20, batch_size=8, lr=2e-3, warmup_steps=5, ema_decay=0.9, log_every=5, ckpt_every=10, eval_every=10,
        distill_steps=10, distill_batch_size=8, distill_lr=1e-3, distill_warmup_steps=2, distill_ema_decay=0.9,
        sample_steps=8, n_samples=2, val_fraction=0.1, attention="math",
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


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, [f.name for f in dataclasses.fields(RunConfig)], n=1)
    return f"did you mean {close[0]!r}?" if close else "see `RunConfig` for the field names"


def preset(name: str, **overrides: Any) -> RunConfig:
    """The named preset with ``overrides`` applied (``preset("tiny", steps=50)``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return RunConfig(preset=name, **PRESETS[name]).replace(**overrides)


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
    """Apply ``["field=value", ...]`` to ``cfg`` (values parsed with each field's type)."""
    if not assignments:
        return cfg
    hints = typing.get_type_hints(RunConfig)
    changes: dict[str, Any] = {}
    for a in assignments:
        if "=" not in a:
            raise ConfigError(f"--set expects field=value, got {a!r} (e.g. --set steps=500)")
        name, raw = (s.strip() for s in a.split("=", 1))
        if name not in hints:
            raise ConfigError(f"--set {name}: unknown field; {_suggest(name)}")
        changes[name] = _parse(hints[name], name, raw)
    return cfg.replace(**changes)

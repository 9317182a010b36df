"""Autoguidance for FLM / FMLM models and checkpoints (what ``flowlm sample --guidance`` calls).

* :func:`autoguided` — the guided ``model_fn`` of a model (FLM: a Denoiser, FMLM: a TwoTimeDenoiser)
  with a weak model: ``"dropout"`` (the same network with dropout on), another model of the same
  kind, vocabulary and flow (an earlier checkpoint, or the online weights beside the EMA ones), or a
  denoiser;
* :func:`mdlm_autoguided` — the same for the MDLM baseline, in logit form only (its draws need a
  distribution: ``softmax(ℓ_w + η(ℓ − ℓ_w))`` at masked positions, SUBS elsewhere);
* :func:`load_weak_model` — the weak model named on the command line: ``dropout``, ``online`` (the
  run checkpoint's online weights; the model itself is loaded with its EMA weights) or a checkpoint path;
* :func:`sample_guided` / :func:`generate_guided` — ``model.sample`` / :func:`flowlm.pipeline.generate`
  with the guided ``model_fn``.

Imports of models, hub and pipeline are lazy: this module sits above the math layers.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from flowlm.denoisers import Denoiser, TwoTimeDenoiser
from flowlm.guidance.autoguidance import (
    AutoGuidedDenoiser,
    AutoGuidedTwoTimeDenoiser,
    DropoutDenoiser,
    DropoutTwoTimeDenoiser,
)

__all__ = ["autoguided", "mdlm_autoguided", "load_weak_model", "sample_guided", "generate_guided"]


def autoguided(model: nn.Module, weight: float, weak: Any = "dropout", *, form: str = "probs",
               seed: int | None = None) -> Denoiser | TwoTimeDenoiser:
    """The guided ``model_fn`` of an FLM (``AutoGuidedDenoiser``) or FMLM (``AutoGuidedTwoTimeDenoiser``).

    Its attribute ``space`` is the state space to sample in: the model's own (projected ``h = x @ E``)
    for the dropout weak model; the V-wide one-hot space when the weak model is another network
    (each network reads the state through its own ``E``, so only ``x`` itself is shared).

    ``weak``: ``"dropout"`` (``seed`` as in :class:`~flowlm.guidance.DropoutDenoiser`), a model of the
    same kind on the same flow, or a (two-time) denoiser.
    """
    kind = getattr(model, "kind", None)
    if kind not in ("flm", "fmlm"):
        raise TypeError(f"autoguidance needs an FLM or FMLM model, got {type(model).__name__} (kind {kind!r})")
    two_time = kind == "fmlm"
    fn = model.model_fn
    if isinstance(weak, str):
        if weak != "dropout":
            raise ValueError(f"weak must be 'dropout', a model or a denoiser, got {weak!r}")
        weak_fn = DropoutTwoTimeDenoiser(fn, seed) if two_time else DropoutDenoiser(fn, seed)
    elif isinstance(weak, nn.Module) and hasattr(weak, "kind"):
        if weak.kind != kind:
            raise ValueError(f"the weak model is an {weak.kind.upper()} but the model an {kind.upper()}; use the same kind")
        if weak.vocab_size != model.vocab_size or weak.flow != model.flow:
            raise ValueError(
                f"the weak model (V={weak.vocab_size}, {weak.flow!r}) must share the model's vocabulary and flow "
                f"(V={model.vocab_size}, {model.flow!r})"
            )
        weak_fn = weak.model_fn
        if weak.net is not model.net:  # two input matrices E: share the V-wide state, not h = x @ E
            from flowlm.nets import NetDenoiser, NetTwoTimeDenoiser
            from flowlm.states import OneHotSpace

            wrap = NetTwoTimeDenoiser if two_time else NetDenoiser
            space = OneHotSpace(model.vocab_size)
            fn, weak_fn = wrap(model.net, model.flow, space), wrap(weak.net, weak.flow, space)
    else:
        weak_fn = weak
    cls = AutoGuidedTwoTimeDenoiser if two_time else AutoGuidedDenoiser
    guided = cls(fn, weak_fn, weight, form)
    guided.space = getattr(fn, "space", model.space)  # the state space the samplers must carry
    return guided


def mdlm_autoguided(model: nn.Module, weight: float, weak: Any = "dropout", *, seed: int | None = None):
    r"""The autoguided SUBS denoiser of an MDLM, ``xt [B, L] -> probs [B, L, V]``:

    .. math::
        p_\eta(\cdot\mid x_t) = \mathrm{softmax}\big(\log p_w + \eta(\log p - \log p_w)\big)

    at masked positions (``p_w``: the weak model, ``"dropout"`` = the same network with dropout on,
    fixed masks seeded with ``seed``, or another MDLM), the one-hot copy at unmasked ones. η = 1 is the
    model, η = 0 the weak model. The callable's ``calls_per_step`` is 2 (both models run each step)."""
    from flowlm.guidance.autoguidance import _dropout_on, _network_of, check_guidance_weight

    if getattr(model, "kind", None) != "mdlm":
        raise TypeError(f"mdlm_autoguided needs an MDLM, got {type(model).__name__}")
    eta = check_guidance_weight(weight)
    if isinstance(weak, str):
        if weak != "dropout":
            raise ValueError(f"weak must be 'dropout' or an MDLM, got {weak!r}")
        net = _network_of(model)

        def weak_logits(xt):
            with _dropout_on(net, seed, xt.device):
                return model.logits(xt)
    elif getattr(weak, "kind", None) == "mdlm" and weak.vocab_size == model.vocab_size:
        weak_logits = weak.logits
    else:
        raise ValueError("the weak model of an MDLM must be 'dropout' or an MDLM of the same vocabulary")

    def guided(xt):
        if eta == 1.0:
            return model.denoiser(xt)  # the model itself, bit for bit
        logp = torch.log_softmax(model.logits(xt).double(), -1)  # [B, L, V]
        logp_w = torch.log_softmax(weak_logits(xt).double(), -1)
        mixed = logp_w + eta * (logp - logp_w)
        probs = torch.softmax(mixed, -1).float()
        copy = torch.nn.functional.one_hot(xt.clamp(max=model.vocab_size - 1), model.vocab_size).to(probs.dtype)
        return torch.where((xt == model.mask_id)[..., None], probs, copy)

    guided.calls_per_step = 1 if eta == 1.0 else 2
    return guided


def _sample_mdlm_guided(model: nn.Module, batch: int, length: int, n_steps: int, *, weight: float, weak: Any,
                        form: str | None, seed: int | None, prompt: Any, generator: torch.Generator | None):
    from flowlm.baselines import mdlm_sample

    if form not in (None, "logits"):
        raise ValueError("MDLM autoguidance is in logit form only (its ancestral draws need a distribution); "
                         "use form='logits' (--guidance-form logits)")
    if prompt is not None:
        raise ValueError("prompts are for FLM / FMLM sampling; the MDLM baseline samples unconditionally")
    if length > model.config.max_length:
        raise ValueError(f"length {length} exceeds the model's max_length {model.config.max_length}")
    fn = mdlm_autoguided(model, weight, weak, seed=seed)
    nets = [model.net] + ([weak.net] if isinstance(weak, nn.Module) and hasattr(weak, "net") else [])
    modes = [n.training for n in nets]
    for n in nets:
        n.eval()
    try:
        out = mdlm_sample(fn, batch, length, model.vocab_size, n_steps, schedule=model.schedule,
                          generator=generator, device=model.net.E.device)
    finally:
        for n, m in zip(nets, modes):
            n.train(m)
    out.nfe = out.nfe * fn.calls_per_step
    return out


def load_weak_model(spec: str, model: nn.Module, checkpoint: Any, device: Any = "cpu") -> Any:
    """The weak model of ``--weak SPEC``: ``"dropout"`` (returned as is), ``"online"`` (the online
    weights of the flowlm run at ``checkpoint``) or the path of another checkpoint of the same kind."""
    from flowlm.hub import load_any
    from flowlm.hub.loading import checkpoint_kind
    from flowlm.pipeline import RunError, load_model

    if spec == "dropout":
        return spec
    if spec == "online":
        if checkpoint_kind(checkpoint) != "run":
            raise RunError("--weak online needs a flowlm run checkpoint (it holds online and EMA weights); "
                           "use --weak dropout or --weak CKPT for this checkpoint")
        weak = load_model(checkpoint, device=device, ema=False)[0]
    else:
        from pathlib import Path

        if not Path(spec).expanduser().exists():
            raise RunError(f"--weak {spec}: give dropout, online, or the path of a checkpoint (none at {spec})")
        weak = load_any(spec, device=device)[0]
    if weak.kind != model.kind or weak.vocab_size != model.vocab_size:
        raise RunError(f"--weak {spec}: an {weak.kind.upper()} of vocabulary {weak.vocab_size}, but the model is an "
                       f"{model.kind.upper()} of vocabulary {model.vocab_size}; give a checkpoint of the same kind")
    return weak


@torch.no_grad()
def sample_guided(model: nn.Module, batch: int, length: int, n_steps: int, *, weight: float, weak: Any = "dropout",
                  form: str | None = None, gamma: float = 0.0, seed: int | None = None, prompt: Any = None,
                  generator: torch.Generator | None = None):
    """``model.sample(batch, length, n_steps, gamma=...)`` with the autoguided ``model_fn`` (networks in
    eval mode, restored afterwards; the dropout weak model switches dropout on for its own calls).
    Returns a :class:`~flowlm.samplers.SamplerOutput` whose ``nfe`` counts both models' calls.
    ``form``: ``"probs"`` (default for FLM / FMLM) or ``"logits"`` (the only form for an MDLM,
    :func:`mdlm_autoguided`)."""
    if getattr(model, "kind", None) == "mdlm":
        return _sample_mdlm_guided(model, batch, length, n_steps, weight=weight, weak=weak, form=form, seed=seed,
                                   prompt=prompt, generator=generator)
    form = form or "probs"
    fn = autoguided(model, weight, weak, form=form, seed=seed)
    if length > model.config.max_length:
        raise ValueError(f"length {length} exceeds the model's max_length {model.config.max_length}")
    sampler = model.default_sampler(n_steps, gamma)
    nets = [model.net] + ([weak.net] if isinstance(weak, nn.Module) and hasattr(weak, "net") else [])
    modes = [n.training for n in nets]
    for n in nets:
        n.eval()
    try:
        x0 = fn.space.noise(batch, length, device=model.net.E.device, dtype=model.net.E.dtype, generator=generator)
        return sampler(fn, model.flow, x0, space=fn.space, prompt=prompt, generator=generator)
    finally:
        for n, m in zip(nets, modes):
            n.train(m)


def generate_guided(model: nn.Module, tokenizer: Any, n_samples: int, steps: int, seed: int = 0, *,
                    length: int | None = None, gamma: float = 0.0, weight: float, weak: Any = "dropout",
                    form: str | None = None, prompt: Any = None):
    """:func:`flowlm.pipeline.generate` with autoguidance (``prompt``: a :class:`flowlm.Prompt` held clean): ``Samples`` (texts, ``nfe``, ``seconds``, ``tokens``).

    Deterministic in ``seed``: the noise comes from a generator seeded with it, and the dropout weak
    model uses fixed masks seeded with it (one thinned network for the whole run)."""
    from flowlm.pipeline import Samples

    length = length or model.config.max_length
    dev = next(model.parameters()).device
    g = torch.Generator(device=dev).manual_seed(int(seed))
    t0 = time.perf_counter()
    out = sample_guided(model, n_samples, length, steps, weight=weight, weak=weak, form=form,
                        gamma=gamma if model.kind == "fmlm" else 0.0, seed=int(seed), prompt=prompt, generator=g)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    tokens = out.tokens.cpu()
    samples = Samples(tokenizer.decode(row.tolist()) for row in tokens)
    samples.nfe, samples.seconds, samples.tokens = int(out.nfe), time.perf_counter() - t0, tokens
    return samples

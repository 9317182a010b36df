"""``flowlm sample``: generate text from an FLM or a distilled FMLM checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowlm.cli.common import HelpFormatter, positive_int, user_errors

EXAMPLES = """\
examples:
  flowlm sample --checkpoint runs/shakespeare-char-flm --steps 64 --n 4
  flowlm sample --checkpoint runs/shakespeare-char-flm-semigroup --steps 1     # one-step FMLM
  flowlm sample --checkpoint runs/tiny-flm/checkpoint.safetensors --out samples.txt
  flowlm sample --steps 4 --gamma 0.3 --seed 7      # latest run under ./runs, re-noising FMLM steps
  flowlm sample --checkpoint fmlm-lm1b.ckpt --steps 1  # the authors' checkpoint (.ckpt or Hugging Face folder)
  flowlm sample --prompt "ROMEO:" --steps 64          # continue a prompt (its tokens are held clean)
  flowlm sample --infill "To be, ___ the question" --gap 12   # fill a gap of 12 tokens
  flowlm sample --guidance 3 --weak dropout         # autoguidance D_weak + 3(D - D_weak), NFE doubles

Texts go to stdout (or --out FILE, which must not exist yet); NFE and wall time go to stderr.
"""

SEPARATOR = "\n\n----------\n\n"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sample", help="generate text from an FLM or FMLM checkpoint",
        description="Generate text from an FLM or a distilled FMLM checkpoint.", epilog=EXAMPLES, formatter_class=HelpFormatter,
    )
    p.add_argument("--checkpoint", metavar="CKPT", default=None,
                   help="run directory or checkpoint file, a save_pretrained folder, or the authors' .ckpt / "
                        "Hugging Face folder (default: the most recent run under ./runs)")
    p.add_argument("--tokenizer", default=None, metavar="TOK",
                   help="for an imported checkpoint: bert, gpt2, ids (print token ids) or a flowlm tokenizer.json "
                        "(default: the authors' tokenizer of its vocabulary; token ids when it is unknown)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="unpickle an authors' .ckpt fully: DANGEROUS, runs any code in the file (never needed)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="sampler steps = NFE (default: the run's sample_steps for an FLM, distill_sample_steps for an FMLM)")
    p.add_argument("--n", type=positive_int, default=None, help="number of samples (default: the run's n_samples)")
    p.add_argument("--length", type=positive_int, default=None, help="tokens per sample (default and maximum: the run's seq_len)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--gamma", type=float, default=None, help="FMLM re-noising between steps, in [0, 1] (default: the run's gamma)")
    p.add_argument("--temperature", type=float, default=None,
                   help="AR / MDLM: softmax temperature > 0 (default: the run's sample.temperature, 1)")
    p.add_argument("--top-p", type=float, default=None,
                   help="AR / MDLM: nucleus mass in (0, 1] (default: the run's sample.top_p, 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--out", metavar="FILE", default=None, help="write the texts here instead of stdout (never overwrites)")
    p.add_argument("--prompt", metavar="TEXT", default=None,
                   help="a prefix to continue: its tokens are held clean (t = τ = 1) and printed unchanged")
    p.add_argument("--infill", metavar="TEXT", default=None,
                   help='text with one "___" marking a gap to fill, e.g. "left ___ right" (see --gap)')
    p.add_argument("--gap", type=positive_int, default=8, help="tokens generated in the --infill gap (default: 8)")
    p.add_argument("--data", metavar="PATH", default=None,
                   help="not needed: the run directory carries its tokenizer (accepted like in every subcommand)")
    _add_guidance_options(p)
    p.set_defaults(func=run)


def _add_guidance_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("autoguidance (flowlm.guidance)")
    g.add_argument("--guidance", type=float, default=None, metavar="W",
                   help="autoguidance weight η >= 0: D_weak + η(D - D_weak); 1 = the plain model (default: none)")
    g.add_argument("--weak", default="dropout", metavar="dropout|online|CKPT",
                   help="the weak model: the same network with dropout on, the run's online (non-EMA) weights, "
                        "or another checkpoint of the same kind (default: dropout)")
    g.add_argument("--guidance-form", choices=("probs", "logits"), default=None,
                   help="extrapolate probabilities (the paper's; may leave the simplex) or logits (default: probs for "
                        "FLM / FMLM; an MDLM is guided in logit form only)")


def _generate(args: argparse.Namespace, model, tok, ckpt, n: int, steps: int | None, length: int, gamma: float,
              prompt=None, **extra):
    """``generate``, or its autoguided version when ``--guidance`` is given (FLM, FMLM, MDLM);
    ``prompt``: a :class:`flowlm.Prompt` held clean."""
    from flowlm.pipeline import RunError, generate

    if args.guidance is None:
        return generate(model, tok, n, steps, args.seed, length=length, gamma=gamma, prompt=prompt, **extra)
    if model.kind not in ("flm", "fmlm", "mdlm"):
        raise RunError(f"--guidance applies to FLM, FMLM and MDLM models; an {model.kind.upper()} trades diversity "
                       "by --temperature")
    from flowlm._io import resolve_device
    from flowlm.guidance import check_guidance_weight, generate_guided, load_weak_model

    try:
        weight = check_guidance_weight(args.guidance)
    except ValueError as e:
        raise RunError(f"--guidance: {e}") from None
    weak = load_weak_model(args.weak, model, ckpt, device=resolve_device(args.device))
    try:
        return generate_guided(model, tok, n, steps, args.seed, length=length, gamma=gamma, weight=weight, weak=weak,
                               form=args.guidance_form, prompt=prompt)
    except ValueError as e:  # e.g. a network without dropout and --weak dropout
        raise RunError(f"--guidance: {e}") from None


def _latest_run() -> Path:
    from flowlm.pipeline import CHECKPOINT_NAME, RunError

    runs = sorted(Path("runs").glob(f"*/{CHECKPOINT_NAME}"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise RunError("no checkpoint found under ./runs; train one with `flowlm train` or pass --checkpoint")
    return runs[-1]


@user_errors("sample")
def run(args: argparse.Namespace) -> int:
    from flowlm._io import resolve_device
    from flowlm.hub import load_any
    from flowlm.pipeline import RunError, generate

    out = Path(args.out) if args.out else None
    if out is not None and out.exists():
        raise RunError(f"{out} already exists; choose another --out (it was left untouched)")
    if args.gamma is not None and not 0.0 <= args.gamma <= 1.0:
        raise RunError(f"--gamma must be in [0, 1], got {args.gamma}")
    if args.guidance is not None and not 0.0 <= args.guidance < float("inf"):
        raise RunError(f"--guidance must be a finite weight >= 0 (1 = the plain model), got {args.guidance}")
    ckpt = args.checkpoint or _latest_run()
    model, tok, cfg = load_any(ckpt, device=resolve_device(args.device), tokenizer=args.tokenizer,
                               trust_pickle=args.trust_pickle)
    from flowlm.pipeline import default_steps

    kind = model.kind
    steps = args.steps if args.steps is not None else default_steps(cfg, kind)
    length = args.length or cfg.data.seq_len
    if length > cfg.data.seq_len:
        raise RunError(f"--length {length} exceeds the model's sequence length {cfg.data.seq_len}")
    if kind == "ar" and args.steps is None:
        steps = None  # one step per token
    if kind in ("flm", "fmlm") and (args.temperature is not None or args.top_p is not None):
        raise RunError(f"--temperature and --top-p apply to AR and MDLM models; this is an {kind.upper()}")
    temperature = cfg.sample.temperature if args.temperature is None else args.temperature
    top_p = cfg.sample.top_p if args.top_p is None else args.top_p
    if not temperature > 0 or not 0.0 < top_p <= 1.0:
        raise RunError(f"need --temperature > 0 and --top-p in (0, 1], got {temperature} and {top_p}")
    gamma = cfg.sample.gamma if args.gamma is None else args.gamma
    extra = {} if kind in ("flm", "fmlm") else {"temperature": temperature, "top_p": top_p}
    if kind not in ("flm", "fmlm") and (args.prompt is not None or args.infill is not None):
        raise RunError(f"--prompt and --infill apply to FLM and FMLM models; this is an {kind.upper()}")
    prompt, compose = _prompt(args, tok, length, cfg.data.seq_len)
    if prompt is not None:
        length = prompt.length
    samples = _generate(args, model, tok, ckpt, args.n or cfg.sample.n, steps, length, gamma, prompt, **extra)
    if compose is not None:
        samples[:] = [compose(row.tolist()) for row in samples.tokens]
    text = SEPARATOR.join(samples) + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "x", encoding="utf-8") as f:  # "x": fail rather than overwrite
            f.write(text)
    else:
        sys.stdout.write(text)
    guided = "" if args.guidance is None else f", guidance {args.guidance:g} (weak: {args.weak})"
    print(f"flowlm sample: {len(samples)} samples from the {kind.upper()} at {ckpt}, {steps or length} steps{guided}, "
          f"NFE {samples.nfe}, {samples.seconds:.2f} s", file=sys.stderr)
    return 0


GAP = "___"


def _prompt(args: argparse.Namespace, tok, length: int, max_length: int):
    """``(Prompt, compose)`` for ``--prompt`` / ``--infill`` (``(None, None)`` without them). ``compose``
    turns sampled ids into the printed text: the user's own prompt text, unchanged, around the
    decoded generated tokens."""
    from flowlm import Prompt
    from flowlm.pipeline import RunError

    if args.prompt is not None and args.infill is not None:
        raise RunError("give either --prompt (a prefix) or --infill (a gap), not both")
    if args.prompt is None and args.infill is None:
        return None, None
    if args.prompt is not None:
        ids = tok.encode(args.prompt)
        if not ids:
            raise RunError("--prompt is empty after tokenization; give some text")
        if len(ids) >= length:
            raise RunError(
                f"--prompt is {len(ids)} tokens but samples have {length} (the model's length is {max_length}); "
                "shorten the prompt or raise --length"
            )
        n = len(ids)
        return Prompt.prefix(ids, length), lambda row: args.prompt + tok.decode(row[n:])
    if args.infill.count(GAP) != 1:
        raise RunError(f'--infill needs exactly one "{GAP}" marking the gap, e.g. --infill "left {GAP} right"')
    left, right = args.infill.split(GAP)
    left_ids, right_ids = tok.encode(left), tok.encode(right)
    total = len(left_ids) + args.gap + len(right_ids)
    if total > max_length:
        raise RunError(
            f"--infill needs {total} tokens ({len(left_ids)} left + gap {args.gap} + {len(right_ids)} right) but the "
            f"model handles at most {max_length}; shorten the text or lower --gap"
        )
    a = len(left_ids)
    return Prompt.infill(left_ids, args.gap, right_ids), lambda row: left + tok.decode(row[a:a + args.gap]) + right

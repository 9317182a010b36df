"""``flowlm bench``: sampling latency/throughput of FMLM 1/2/4/8 steps vs FLM N steps on one backbone.

All numbers come from one run on one machine: for each (method, steps)

* latency: wall time of one sample (batch 1), best of ``repeats`` runs after a warm-up (the
  median is stored too);
* throughput: samples per second at batch ``batch``, best of ``repeats`` runs (and median);
* Gen PPL and unigram entropy of the ``batch`` samples of the first throughput run (seeded);

then the **speed-up of one-step FMLM** over the fewest FLM steps whose Gen PPL is at most the
one-step FMLM's (:func:`flowlm.quickstart.matching_flm_steps`): latency and throughput ratios.
``bound`` says how to read it: ``within-sweep``; ``upper`` (the smallest swept FLM step count
already matches, so fewer might do); ``lower`` (no swept FLM step count matches; ratio against
the largest). Results: ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from flowlm.cli.common import add_data_arg, positive_int, step_counts, user_errors

EXAMPLES = """\
examples:
  flowlm bench                                   # uses runs/quickstart/{flm,fmlm} (run `flowlm quickstart` first)
  flowlm bench --run-dir runs/quickstart-tiny --repeats 3
  flowlm bench --flm runs/my-flm --fmlm runs/my-fmlm --batch 64 --device cuda
  flowlm bench --preset tiny                     # trains a tiny FLM + FMLM pair first (seconds)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="sampling latency/throughput: one-step FMLM vs multi-step FLM (+ Gen PPL-matched speed-up)",
        description="sampling latency/throughput of FMLM 1/2/4/8 steps vs FLM N steps on one backbone, and the Gen-PPL-matched speed-up of one-step FMLM.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run-dir", default="runs/quickstart", metavar="DIR",
                   help="a quickstart folder holding flm/ and fmlm/ runs (default: runs/quickstart)")
    p.add_argument("--flm", metavar="CKPT", default=None, help="FLM checkpoint (overrides --run-dir)")
    p.add_argument("--fmlm", metavar="CKPT", default=None, help="FMLM checkpoint (overrides --run-dir)")
    p.add_argument("--preset", default=None,
                   help="train + distill this run preset into runs/bench-<preset> first (resumable), e.g. tiny")
    p.add_argument("--fmlm-steps", type=step_counts, default=(1, 2, 4, 8), metavar="1,2,4,8",
                   help="FMLM step sweep (default: 1,2,4,8)")
    p.add_argument("--flm-steps", type=step_counts, default=(1, 2, 4, 8, 16, 32, 64, 128), metavar="1,2,...,128",
                   help="FLM step sweep (default: 1,2,4,...,128; fine at the low end, so the Gen PPL match is tight)")
    p.add_argument("--baseline", metavar="CKPT", action="append", default=[],
                   help="an AR or MDLM run on the same backbone (`flowlm train --model ar|mdlm`), repeatable")
    p.add_argument("--baseline-steps", type=step_counts, default=(8, 16, 32, 64, 128), metavar="8,...,128",
                   help="MDLM step sweep (default: 8,16,32,64,128; AR always takes one step per token)")
    p.add_argument("--batch", type=positive_int, default=32, help="batch size for throughput and Gen PPL (default: 32)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed repeats per setting, best reported, median stored (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--evaluator", default="smollm2-135m", help="Gen PPL evaluator (default: smollm2-135m, offline)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--out", default="benchmarks/results/sampling", metavar="PATH",
                   help="results go to PATH.json and PATH.md (default: benchmarks/results/sampling)")
    add_data_arg(p)
    p.set_defaults(func=run)


def _timed(fn, repeats: int) -> tuple[float, float, Any]:
    """(min, median) seconds of ``fn()`` (which returns ``(seconds, result)``) over ``repeats`` runs, first result.

    The minimum is the headline number: on a shared machine other processes only ever add time.
    """
    times, first = [], None
    for i in range(repeats):
        sec, res = fn()
        times.append(sec)
        if i == 0:
            first = res
    return min(times), statistics.median(times), first


def run_bench(
    flm_ckpt: str | Path,
    fmlm_ckpt: str | Path,
    *,
    fmlm_steps=(1, 2, 4, 8),
    flm_steps=(1, 2, 4, 8, 16, 32, 64, 128),
    batch: int = 32,
    repeats: int = 5,
    seed: int = 0,
    evaluator: str = "smollm2-135m",
    device: str = "auto",
    progress: bool = True,
    baselines=(),
    baseline_steps=(8, 16, 32, 64, 128),
) -> dict[str, Any]:
    """Measure every setting (see the module docstring) and return the results as a JSON-ready dict.

    ``baselines``: AR / MDLM checkpoints on the same backbone, measured as rows of their own (AR: one
    step per token; MDLM: ``baseline_steps``)."""
    import torch

    from flowlm.evaluation import EvalRecord, evaluate_samples, file_hash, load_evaluator
    from flowlm._io import device_name, resolve_device
    from flowlm.hub.loading import checkpoint_file as find_checkpoint, load_any as load_model  # any checkpoint kind
    from flowlm.pipeline import RunError, generate
    from flowlm.quickstart import matching_flm_steps
    from flowlm.training.progress import progress_bar

    if batch < 2 or repeats < 1:
        raise RunError(f"need --batch >= 2 and --repeats >= 1, got batch={batch}, repeats={repeats}")
    dev = resolve_device(device)
    ev = load_evaluator(evaluator, device=dev)
    models = {"FLM": load_model(flm_ckpt, device=dev), "FMLM": load_model(fmlm_ckpt, device=dev)}
    for name, want in (("FLM", "FLM"), ("FMLM", "FMLM")):
        if models[name][0].kind != want.lower():
            raise RunError(f"--{name.lower()} {flm_ckpt if name == 'FLM' else fmlm_ckpt} is not an {want} checkpoint")
    baseline_paths: dict[str, str] = {}
    for b in baselines:
        loaded = load_model(b, device=dev)
        name = loaded[0].kind.upper()
        if name not in ("AR", "MDLM") or name in models:
            raise RunError(f"--baseline {b}: expected one AR and/or one MDLM checkpoint, got an {name}")
        models[name] = loaded
        baseline_paths[name] = str(find_checkpoint(b))
    flm_cfg = models["FLM"][2]
    backbone = lambda c: (c.model.depth, c.model.width, c.data.seq_len)  # noqa: E731
    if any(backbone(m[2]) != backbone(flm_cfg) for m in models.values()):
        raise RunError("the checkpoints have different backbones (depth/width/seq_len); bench compares one backbone")

    jobs = [("FMLM", s) for s in fmlm_steps] + [("FLM", s) for s in flm_steps]
    jobs += [("AR", flm_cfg.data.seq_len)] if "AR" in models else []
    jobs += [("MDLM", s) for s in baseline_steps] if "MDLM" in models else []
    rows, records = [], []
    for method in models:  # warm-up: allocation, kernel choice, thread pools
        net, tok, _ = models[method]
        generate(net, tok, batch, None if method == "AR" else 2, seed + 1)
        generate(net, tok, 1, None if method == "AR" else 2, seed + 1)
    for method, steps in progress_bar(jobs, desc="bench", unit="setting", disable=not progress, file=sys.stderr):
        net, tok, cfg = models[method]

        def one(n: int):
            s = generate(net, tok, n, None if method == "AR" else steps, seed)
            return s.seconds, s

        latency, latency_med, _ = _timed(lambda: one(1), repeats)
        batch_time, batch_med, samples = _timed(lambda: one(batch), repeats)
        metrics = evaluate_samples(list(samples), samples.tokens, ev)
        row = {"method": method, "steps": steps, "nfe": samples.nfe, "latency_ms": latency * 1e3,
               "latency_median_ms": latency_med * 1e3, "throughput_samples_per_s": batch / batch_time,
               "throughput_median_samples_per_s": batch / batch_med, "batch_time_s": batch_time,
               "gen_ppl": metrics["gen_ppl"], "entropy": metrics["entropy"]}
        rows.append(row)
        records.append(EvalRecord(method=method, metrics={"gen_ppl": metrics["gen_ppl"], "entropy": metrics["entropy"]}, evaluator=ev.name,
                                  n_samples=batch, steps=steps, nfe=samples.nfe, wall_time_s=latency))
    match = matching_flm_steps(records, 1)
    speedup = None
    if match is not None:
        fm = next(r for r in rows if r["method"] == "FMLM" and r["steps"] == 1)
        fl = next(r for r in rows if r["method"] == "FLM" and r["steps"] == match["flm"].steps)
        speedup = {
            "fmlm_steps": 1, "fmlm_gen_ppl": fm["gen_ppl"], "flm_steps": fl["steps"], "flm_gen_ppl": fl["gen_ppl"],
            "reached": match["reached"], "bound": match["bound"], "latency_speedup": fl["latency_ms"] / fm["latency_ms"],
            "throughput_speedup": fm["throughput_samples_per_s"] / fl["throughput_samples_per_s"],
        }
    return {
        "benchmark": "sampling",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": device_name(dev),
        "torch": torch.__version__,
        "flm_checkpoint": str(find_checkpoint(flm_ckpt)), "flm_hash": file_hash(find_checkpoint(flm_ckpt)),
        "fmlm_checkpoint": str(find_checkpoint(fmlm_ckpt)), "fmlm_hash": file_hash(find_checkpoint(fmlm_ckpt)),
        "preset": flm_cfg.preset, "seq_len": flm_cfg.data.seq_len, "vocab_size": models["FLM"][1].vocab_size,
        "backbone": {"depth": flm_cfg.model.depth, "width": flm_cfg.model.width, "heads": flm_cfg.model.heads},
        "baselines": baseline_paths,
        "batch": batch, "repeats": repeats, "seed": seed, "evaluator": ev.name,
        "rows": rows, "speedup_one_step": speedup,
    }


def format_markdown(res: dict[str, Any]) -> str:
    lines = [
        f"# Sampling benchmark ({res['preset']}, L={res['seq_len']}, V={res['vocab_size']}, "
        f"{res['backbone']['depth']}×{res['backbone']['width']}) on {res['device']}",
        "",
        f"Latency: one sample (batch 1); throughput: batch {res['batch']}; best of {res['repeats']} runs "
        "(medians in the JSON); "
        f"Gen PPL ({res['evaluator']}) of the batch.",
        "",
        "| method | steps | NFE | latency (ms) | throughput (samples/s) | Gen PPL | entropy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(f"| {r['method']} | {r['steps']} | {r['nfe']} | {r['latency_ms']:.2f} | "
                     f"{r['throughput_samples_per_s']:.1f} | {r['gen_ppl']:.1f} | {r['entropy']:.2f} |")
    s = res.get("speedup_one_step")
    if s:
        verb = {"within-sweep": "reaches it at",
                "upper": "already reaches it at its smallest swept step count (speed-ups are upper bounds),",
                "lower": "never reaches it in the sweep (largest shown; speed-ups are lower bounds):"}[s["bound"]]
        lines += ["", f"One-step FMLM Gen PPL {s['fmlm_gen_ppl']:.1f}; the FLM {verb} {s['flm_steps']} steps "
                  f"(Gen PPL {s['flm_gen_ppl']:.1f}). Speed-up of one-step FMLM: **{s['latency_speedup']:.1f}× latency**, "
                  f"**{s['throughput_speedup']:.1f}× throughput**."]
    return "\n".join(lines) + "\n"


def write_results(res: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    from flowlm._io import atomic_write_json, atomic_write_text

    out = Path(out)
    js, md = out.with_suffix(".json"), out.with_suffix(".md")
    atomic_write_json(js, res, indent=2)
    atomic_write_text(md, format_markdown(res))
    return js, md


def _prepare(preset_name: str, data: str | None, device: str) -> tuple[Path, Path]:
    from flowlm.pipeline import distill_fmlm, train_flm
    from flowlm.presets import preset

    cfg = preset(preset_name, device=device)
    root = Path("runs") / f"bench-{preset_name}"
    flm = train_flm(cfg, data, root / "flm", resume=True)
    fmlm = distill_fmlm(cfg, flm, cfg.distill.method, root / "fmlm", resume=True, data=data)
    return flm, fmlm


@user_errors("bench")
def run(args: argparse.Namespace) -> int:
    from flowlm.evaluation import EvaluatorNotFoundError
    from flowlm.pipeline import RunError

    if args.preset:
        flm, fmlm = _prepare(args.preset, args.data, args.device)
    else:
        flm = args.flm or Path(args.run_dir) / "flm"
        fmlm = args.fmlm or Path(args.run_dir) / "fmlm"
        missing = [str(p) for p in (flm, fmlm) if not Path(p).exists()]
        if missing:
            raise RunError(f"no checkpoint at {', '.join(missing)}; run `flowlm quickstart` first, pass --flm/--fmlm, "
                           "or use --preset tiny to train a small pair")
    try:
        res = run_bench(flm, fmlm, fmlm_steps=args.fmlm_steps, flm_steps=args.flm_steps, batch=args.batch,
                        repeats=args.repeats, seed=args.seed, evaluator=args.evaluator, device=args.device,
                        baselines=args.baseline, baseline_steps=args.baseline_steps)
    except EvaluatorNotFoundError as e:
        print(f"flowlm bench: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    js, md = write_results(res, args.out)
    print(format_markdown(res))
    print(f"flowlm bench: results in {js} and {md}", file=sys.stderr)
    return 0

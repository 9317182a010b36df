"""The consecutive-token-id puzzle: how often neighbouring sampled tokens have ids v, v ± k, against the data.

For each checkpoint (FLM, FMLM, AR, MDLM: :func:`flowlm.hub.load_any`) it draws ``--n`` samples of the
model's length and reports

* the rate of id differences ``x[i+1] − x[i] = k`` for k ∈ {−2, −1, 0, 1, 2} (all pairs), over the data's
  held-out blocks as the baseline, and the share of single-byte tokens (ids < 256 in the byte-level BPE);
  each also with the positions shuffled within every sequence (the same tokens with no order: what the
  token composition alone gives);
* the output head's cosine between rows v and v+1 over the byte tokens, split into tokens the training
  split uses and tokens it never contains, against random pairs of used byte tokens.

    python benchmarks/consecutive_ids.py --checkpoint runs/quickstart/flm --checkpoint runs/exp/seed0/ar

writes ``benchmarks/results/consecutive_ids.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DIFFS = (-2, -1, 0, 1, 2)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", required=True, metavar="[LABEL=]PATH", help="a run (repeatable)")
    p.add_argument("--steps", type=int, default=64, help="FLM / MDLM steps (FMLM: 1; AR: one per token)")
    p.add_argument("--n", type=int, default=128, help="samples per checkpoint (default: 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="the corpus the runs were trained on (default: the embedded Shakespeare)")
    p.add_argument("--out", default=str(RESULTS / "consecutive_ids"), help="output stem (.json and .md)")
    return p.parse_args(argv)


def diff_rates(tokens) -> dict[int, float]:
    """Share of neighbouring pairs (i, i+1) with ``x[i+1] − x[i] = k``, for each k in :data:`DIFFS`."""
    d = (tokens[:, 1:] - tokens[:, :-1]).flatten()
    return {k: float((d == k).float().mean()) for k in DIFFS}


def shuffled_rates(tokens, seed: int, repeats: int = 20) -> dict[int, float]:
    """:func:`diff_rates` after shuffling the positions within each sequence (mean of ``repeats``
    shuffles): what the same tokens give with no order between neighbours."""
    import torch

    g = torch.Generator().manual_seed(seed)
    acc = {k: 0.0 for k in DIFFS}
    for _ in range(repeats):
        perm = torch.argsort(torch.rand(tokens.shape, generator=g), dim=1)
        for k, r in diff_rates(torch.gather(tokens, 1, perm)).items():
            acc[k] += r / repeats
    return acc


def _char_class(text: str) -> str:
    if len(text) != 1:
        return "other"
    return "lower" if text.islower() else "upper" if text.isupper() else "digit" if text.isdigit() else "other"


def head_cosines(model, tok, counts, seed: int) -> dict[str, float]:
    import torch

    head = getattr(model.net, "head", None)
    if head is None:
        return {}
    W = torch.nn.functional.normalize(head.weight.detach().float()[: counts.numel()], dim=-1)  # [V, d]
    nb = min(256, counts.numel())  # the single-byte ids of a byte-level BPE (every id of a small vocabulary)
    used = counts[:nb] > 0
    v = torch.arange(nb - 1)
    both_used = used[:-1] & used[1:]
    both_unused = ~used[:-1] & ~used[1:]
    cos = (W[v] * W[v + 1]).sum(-1)
    ids = torch.nonzero(used).flatten()
    perm = ids[torch.randperm(ids.numel(), generator=torch.Generator().manual_seed(seed))]
    rnd = (W[ids] * W[perm]).sum(-1)
    # used lowercase letters: adjacent ids (a,b), (b,c), ... vs every non-adjacent pair of used lowercase letters
    lower = [i for i in range(nb) if used[i] and _char_class(tok.decode([i])) == "lower"]
    adj = [(a, b) for a, b in zip(lower, lower[1:]) if b == a + 1]
    far = [(a, b) for i, a in enumerate(lower) for b in lower[i + 1:] if b > a + 1]
    pair_cos = lambda pairs: float(sum(float(W[a] @ W[b]) for a, b in pairs) / len(pairs)) if pairs else float("nan")
    return {"adjacent_all": float(cos.mean()), "adjacent_used": float(cos[both_used].mean()),
            "lower_adjacent": pair_cos(adj), "lower_nonadjacent": pair_cos(far),
            "adjacent_unused": float(cos[both_unused].mean()) if both_unused.any() else float("nan"),
            "random_used": float(rnd[ids != perm].mean()), "n_unused_bytes": int((~used).sum())}


def main(argv: list[str]) -> int:
    import torch

    from flowlm._io import write_result_files
    from flowlm.pipeline import _data_for, load_model

    args = parse_args(argv)
    rows, counts, data_row = [], None, None
    for spec in args.checkpoint:
        label, sep, path = spec.partition("=")
        if not sep:
            label, path = Path(spec).name, spec
        model, tok, cfg = load_model(path)
        if counts is None:
            _, splits, _ = _data_for(cfg, args.data, tok, 512)
            train = torch.cat(list(splits.train.iter_blocks(512)))
            val = torch.cat(list((splits.val or splits.train).iter_blocks(512)))
            counts = torch.bincount(train.flatten(), minlength=model.vocab_size)
            data_row = {"label": "data (held out)", "kind": "data", **{f"d{k:+d}": r for k, r in diff_rates(val).items()},
                        "byte_share": float((val < 256).float().mean())}
            rows.append(data_row)
            rows.append({"label": "data, positions shuffled", "kind": "data",
                         **{f"d{k:+d}": r for k, r in shuffled_rates(val, args.seed).items()},
                         "byte_share": data_row["byte_share"]})
        g = torch.Generator().manual_seed(args.seed)
        L = cfg.data.seq_len
        if model.kind == "ar":
            out = model.sample(args.n, L, generator=g)
        elif model.kind == "mdlm":
            out = model.sample(args.n, L, steps=args.steps, generator=g)
        else:
            out = model.sample(args.n, L, 1 if model.kind == "fmlm" else args.steps, generator=g)
        x = out.tokens.cpu()
        row = {"label": label, "kind": model.kind, **{f"d{k:+d}": r for k, r in diff_rates(x).items()},
               "byte_share": float((x < 256).float().mean()), **{f"head_{k}": v for k, v in head_cosines(model, tok, counts, args.seed).items()}}
        rows.append(row)
        rows.append({"label": f"{label}, positions shuffled", "kind": model.kind,
                     **{f"d{k:+d}": r for k, r in shuffled_rates(x, args.seed).items()}, "byte_share": row["byte_share"]})
        print(row, file=sys.stderr)
    keys = [f"d{k:+d}" for k in DIFFS]
    lines = ["| model | " + " | ".join(f"rate {k}" for k in keys) + " | byte-token share | head cos v,v+1 (used / unused) | "
             "head cos random used | head cos a–z adjacent / non-adjacent |", "|---|" + "---:|" * (len(keys) + 4)]
    for r in rows:
        ratio = " | ".join(f"{r[k] * 100:.2f}%" + (f" ({r[k] / data_row[k]:.1f}×)" if r is not data_row and data_row[k] else "")
                           for k in keys)
        head = (f"{r['head_adjacent_used']:.2f} / {r['head_adjacent_unused']:.2f}" if "head_adjacent_used" in r else "–")
        rnd = f"{r['head_random_used']:.2f}" if "head_random_used" in r else "–"
        az = f"{r['head_lower_adjacent']:.2f} / {r['head_lower_nonadjacent']:.2f}" if "head_lower_adjacent" in r else "–"
        lines.append(f"| {r['label']} | {ratio} | {r['byte_share'] * 100:.0f}% | {head} | {rnd} | {az} |")
    write_result_files(args.out, {"args": vars(args), "rows": rows}, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`flowlm quickstart` end to end on the tiny preset, its resumability, and `flowlm eval` / `flowlm bench`."""

from __future__ import annotations

import json
import math
import re

import pytest

from flowlm.cli.main import main
from flowlm.evaluation import MIN_ENTROPY_RATIO, EvalRecord, load_record, load_records
from flowlm.quickstart import matching_flm_steps

FMLM_STEPS, FLM_STEPS = (1, 2, 4, 8), (8, 16, 32, 64, 128)
# the tests sharing the tiny run go to one xdist worker (the run is built once per worker)
shared_run = pytest.mark.xdist_group("quickstart-tiny")


def _table_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "tiny"
    code = main(["quickstart", "--preset", "tiny", "--out-dir", str(out), "--no-progress", "--device", "cpu"])
    assert code == 0
    return out


@shared_run
@pytest.mark.slow
def test_quickstart_tiny_writes_a_complete_report(tiny_run, capsys):
    report = tiny_run / "report"
    for name in ("results.md", "results.json", "genppl.png", "samples.md"):
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    assert (report / "genppl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = _table_rows((report / "results.md").read_text())
    got = [(r[0], r[1]) for r in rows]
    expected = [("data (held-out)", "–")] + [("FMLM", str(s)) for s in FMLM_STEPS] + [("FLM", str(s)) for s in FLM_STEPS]
    assert got == expected
    for r in rows:
        ppl, entropy = float(r[3]), float(r[4])
        assert math.isfinite(ppl) and ppl >= 1.0
        assert math.isfinite(entropy) and 0.0 < entropy <= math.log(32)  # 32-token samples
        if r[0] != "data (held-out)":
            assert int(r[2]) == int(r[1])  # deterministic samplers: NFE = steps
            assert float(r[5]) > 0.0

    records = load_records(tiny_run / "records")
    assert len(records) == 1 + len(FMLM_STEPS) + len(FLM_STEPS)
    for rec in records:
        assert rec.evaluator == "smollm2-135m" and rec.checkpoint_hash and rec.config["preset"] == "tiny"
        if rec.method != "data":
            assert rec.n_samples == 4 and rec.seed == 0 and rec.wall_time_s > 0
            assert rec.metrics["reference_entropy"] == pytest.approx(load_record(tiny_run / "records" / "data.json").metrics["entropy"])
    data = json.loads((report / "results.json").read_text())
    assert [d["method"] for d in data][:2] == ["data", "FMLM"]
    samples = (report / "samples.md").read_text()
    assert "## held-out data" in samples and "## FMLM, 1 steps" in samples and "## FLM, 128 steps" in samples


@shared_run
@pytest.mark.slow
def test_quickstart_rerun_skips_finished_stages(tiny_run, monkeypatch, capsys):
    import flowlm.pipeline as pipeline

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished stage was run again")

    for name in ("train_flm", "distill_fmlm", "generate"):
        monkeypatch.setattr(pipeline, name, forbidden)
    before = {p.name: p.read_text() for p in (tiny_run / "records").glob("*.json")}
    capsys.readouterr()
    assert main(["quickstart", "--preset", "tiny", "--out-dir", str(tiny_run), "--no-progress", "--device", "cpu"]) == 0
    out = capsys.readouterr()
    assert "already trained" in out.err and "already distilled" in out.err
    assert {p.name: p.read_text() for p in (tiny_run / "records").glob("*.json")} == before
    # the table is printed to stdout at the end
    assert len(_table_rows(out.out)) == 1 + len(FMLM_STEPS) + len(FLM_STEPS)


@shared_run
@pytest.mark.slow
def test_quickstart_more_distillation_does_not_retrain(tiny_run, monkeypatch, capsys):
    import flowlm.pipeline as pipeline

    def forbidden(*args, **kwargs):
        raise AssertionError("the FLM was retrained although only distillation settings changed")

    monkeypatch.setattr(pipeline, "train_flm", forbidden)
    flm_rec = (tiny_run / "records" / "flm-008.json").read_text()
    old_fmlm = load_record(tiny_run / "records" / "fmlm-001.json")
    args = ["quickstart", "--preset", "tiny", "--out-dir", str(tiny_run), "--no-progress", "--device", "cpu",
            "--set", "distill_steps=12"]
    assert main(args) == 0
    assert "distilling the FMLM" in capsys.readouterr().err
    stages = json.loads((tiny_run / "stages.json").read_text())
    assert stages["distill"]["config"]["distill"]["steps"] == 12
    new_fmlm = load_record(tiny_run / "records" / "fmlm-001.json")
    assert new_fmlm.checkpoint_hash != old_fmlm.checkpoint_hash  # re-evaluated with the new student
    assert (tiny_run / "records" / "flm-008.json").read_text() == flm_rec  # FLM rows kept


def test_quickstart_bad_input_gives_clear_errors(tmp_path, capsys):
    code = main(["quickstart", "--preset", "tiny", "--out-dir", str(tmp_path / "q"), "--no-progress",
                 "--evaluator", str(tmp_path / "no-such-evaluator")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no such directory" in err and "built-in" in err
    assert not (tmp_path / "q" / "flm").exists()  # failed before training
    assert main(["quickstart", "--preset", "tiny", "--out-dir", str(tmp_path / "q"), "--n-samples", "1"]) == 2
    assert "n_samples must be >= 2" in capsys.readouterr().err
    assert main(["quickstart", "--preset", "tiny", "--set", "stepz=3"]) == 2
    assert re.search(r"did you mean 'train.steps'", capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["quickstart", "--fmlm-steps", "0,1"])


# ---------------------------------------------------------------------------------------------
# flowlm eval


@shared_run
@pytest.mark.slow
def test_eval_cli_reproduces_the_quickstart_record(tiny_run, tmp_path, capsys):
    from flowlm.evaluation import file_hash

    out = tmp_path / "eval"
    code = main(["eval", "--checkpoint", str(tiny_run / "fmlm"), "--steps", "1,2", "--n-samples", "4",
                 "--reference", "--device", "cpu", "--out", str(out)])
    assert code == 0
    one, two, ref = (load_record(out / n) for n in ("fmlm-fmlm-001.json", "fmlm-fmlm-002.json", "data.json"))
    ckpt_hash = file_hash(tiny_run / "fmlm" / "checkpoint.safetensors")
    for rec, steps in ((one, 1), (two, 2)):
        assert (rec.method, rec.steps, rec.nfe, rec.n_samples, rec.seed) == ("FMLM", steps, steps, 4, 0)
        assert rec.checkpoint_hash == ckpt_hash
        assert rec.metrics["reference_entropy"] == pytest.approx(ref.metrics["entropy"])
    # same checkpoint, seed, steps and sample count as the quickstart's row: same samples, same score
    qs = load_record(tiny_run / "records" / "fmlm-001.json")
    assert one.metrics["gen_ppl"] == pytest.approx(qs.metrics["gen_ppl"], rel=1e-5)
    assert one.metrics["entropy"] == pytest.approx(qs.metrics["entropy"], rel=1e-12)
    assert (out / "results.md").is_file()
    assert len(_table_rows(capsys.readouterr().out)) == 3


def test_eval_cli_bad_input_gives_clear_errors(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "missing-run")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    assert main(["eval", "--checkpoint", str(junk), "--device", "cpu"]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert main(["eval"]) == 2
    assert "--checkpoint CKPT" in capsys.readouterr().err
    assert main(["eval", "--texts", str(tmp_path / "none.txt")]) == 2
    assert "no such file" in capsys.readouterr().err


@shared_run
@pytest.mark.slow
def test_eval_cli_scores_a_text_file(tmp_path, capsys):
    texts = tmp_path / "samples.txt"
    texts.write_text("To be, or not to be, that is the question.\n\n----------\n\nbe be be be be be be be\n")
    assert main(["eval", "--texts", str(texts), "--device", "cpu", "--out", str(tmp_path / "ev")]) == 0
    rec = load_record(tmp_path / "ev" / "texts-samples.json")
    assert rec.method == "texts" and rec.n_samples == 2 and rec.metrics["n_scored_samples"] == 2
    assert math.isfinite(rec.metrics["gen_ppl"]) and rec.metrics["entropy"] > 0


# ---------------------------------------------------------------------------------------------
# flowlm bench


@shared_run
@pytest.mark.slow
def test_bench_measures_every_setting_and_the_speedup(tiny_run, tmp_path, capsys):
    out = tmp_path / "sampling"
    code = main(["bench", "--run-dir", str(tiny_run), "--fmlm-steps", "1,2", "--flm-steps", "1,8,32",
                 "--repeats", "2", "--batch", "4", "--device", "cpu", "--out", str(out)])
    assert code == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".md").is_file()
    rows = {(r["method"], r["steps"]): r for r in res["rows"]}
    assert set(rows) == {("FMLM", 1), ("FMLM", 2), ("FLM", 1), ("FLM", 8), ("FLM", 32)}
    for (method, steps), r in rows.items():
        assert r["nfe"] == steps
        assert r["latency_ms"] > 0 and r["throughput_samples_per_s"] > 0 and math.isfinite(r["gen_ppl"])
        assert r["latency_ms"] <= r["latency_median_ms"] + 1e-9
    # 32 network calls cost more than one on the same backbone
    assert rows[("FLM", 32)]["latency_ms"] > rows[("FMLM", 1)]["latency_ms"]
    s = res["speedup_one_step"]
    assert s["bound"] in ("within-sweep", "upper", "lower") and s["latency_speedup"] > 0
    flm_ppl = {st: rows[("FLM", st)]["gen_ppl"] for st in (1, 8, 32)}
    min_entropy = MIN_ENTROPY_RATIO * rows[("FMLM", 1)]["entropy"]
    usable = {st: p for st, p in flm_ppl.items() if rows[("FLM", st)]["entropy"] >= min_entropy}
    if s["reached"]:  # the matched FLM row is the first usable one at least as good as one-step FMLM
        assert usable[s["flm_steps"]] <= s["fmlm_gen_ppl"]
        assert all(usable[st] > s["fmlm_gen_ppl"] for st in usable if st < s["flm_steps"])
    else:
        assert s["flm_steps"] == 32 and all(p > s["fmlm_gen_ppl"] for p in usable.values())


def _record(method: str, steps: int, gen_ppl: float, entropy: float) -> EvalRecord:
    return EvalRecord(method=method, metrics={"gen_ppl": gen_ppl, "entropy": entropy}, evaluator="test", n_samples=1, steps=steps)


def test_matching_flm_steps_skips_degenerate_rows():
    """A repetitive FLM row (entropy collapsed) is no match, however low its Gen PPL."""
    fmlm = _record("FMLM", 1, gen_ppl=400.0, entropy=3.2)
    degenerate = _record("FLM", 1, gen_ppl=50.0, entropy=0.8)  # e.g. one token repeated
    worse = _record("FLM", 8, gen_ppl=900.0, entropy=3.8)
    better = _record("FLM", 64, gen_ppl=380.0, entropy=3.7)
    match = matching_flm_steps([fmlm, degenerate, worse, better], 1)
    assert match["reached"] and match["flm"] is better and match["bound"] == "within-sweep"
    # without the degenerate row's entropy it would have matched at 1 step
    assert matching_flm_steps([fmlm, degenerate, worse, better], 1, min_entropy_ratio=0.0)["flm"] is degenerate
    none = matching_flm_steps([fmlm, degenerate, worse], 1)
    assert not none["reached"] and none["flm"] is worse and none["bound"] == "lower"


def test_bench_rejects_missing_checkpoints(tmp_path, capsys):
    assert main(["bench", "--run-dir", str(tmp_path / "nothing-here")]) == 2
    assert "run `flowlm quickstart` first" in capsys.readouterr().err


@shared_run
@pytest.mark.slow
def test_bench_rejects_swapped_checkpoints(tiny_run, tmp_path, capsys):
    code = main(["bench", "--flm", str(tiny_run / "fmlm"), "--fmlm", str(tiny_run / "flm"), "--device", "cpu",
                 "--repeats", "1", "--out", str(tmp_path / "s")])
    assert code == 2
    assert "is not an FLM checkpoint" in capsys.readouterr().err

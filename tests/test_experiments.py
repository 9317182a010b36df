"""`flowlm experiment`: suite plans, bad input, and each suite end to end at the tiny preset (resumable)."""

from __future__ import annotations

import json

import pytest

from flowlm.cli.main import main
from flowlm.experiments import SUITES, ExperimentError, build_suite
from flowlm.experiments.suites import GUIDANCE_WEIGHTS
from flowlm.presets import preset

TEXT = ("Shall I compare thee to a summer's day? Thou art more lovely and more temperate. "
        "Rough winds do shake the darling buds of May, and summer's lease hath all too short a date. ") * 12


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "sonnet.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def evaluator():
    from flowlm.evaluation import load_evaluator

    return load_evaluator("smollm2-135m", device="cpu")  # the quickstart tests' offline evaluator


def test_suite_plans_follow_the_config():
    cfg = preset("tiny").updated({"eval.steps": "3,5", "eval.temperatures": "0.5,1"})
    d = build_suite("distillers", cfg)
    assert [s.name for s in d.stages] == ["flm", "semigroup", "lagrangian", "eulerian", "eulerian-paper"]
    assert all(s.teacher == "flm" for s in d.stages[1:]) and d.residuals
    assert d.stage("eulerian-paper").changes["distill.eulerian_target"] == "paper"
    assert {w.stage: w.steps for w in d.sweeps}["flm"] == (3, 5)
    assert {w.stage: w.steps for w in d.sweeps}["lagrangian"] == (1, 2, 4, 8)
    b = build_suite("baselines", cfg)
    kinds = {s.name: s.changes.get("model.kind") for s in b.stages if s.kind == "train"}
    assert kinds == {"flm": "flm", "ar": "ar", "mdlm": "mdlm"}
    ar = next(w for w in b.sweeps if w.stage == "ar")
    assert ar.steps == (None,) and ar.temperatures == (0.5, 1.0)
    assert [s.name for s in b.stages] == ["flm", "semigroup", "ar", "mdlm"]  # the FMLM stage is named by its method
    a = build_suite("ablations", cfg)
    assert a.stage("semigroup-self").changes["distill.teacher"] == "self" and not a.unavailable
    assert a.stage("flm-mse").changes["model.loss"] == "mse"
    assert a.stage("flm-velocity-mse").changes["model.loss"] == "velocity_mse"
    assert a.stage("flm-uniform-time").changes["model.schedule"] == "uniform"
    assert {a.stage(n).changes["model.interpolant"] for n in ("flm-cosine", "flm-quadratic")} == {"cosine", "quadratic"}
    for st in a.stages:  # every variant is a valid run config
        cfg.updated(st.changes).validate()
    only = build_suite("distillers", cfg, ["lagrangian"])
    assert [s.name for s in only.stages] == ["flm", "lagrangian"]  # the teacher comes along


def test_unknown_suite_and_variant_are_named():
    with pytest.raises(ExperimentError, match="did you mean 'baselines'"):
        build_suite("baseline", preset("tiny"))
    with pytest.raises(ExperimentError, match="did you mean 'lagrangian'.*choose from"):
        build_suite("distillers", preset("tiny"), ["lagrange"])
    assert set(SUITES) == {"distillers", "baselines", "ablations", "guidance"}


def test_cli_bad_input(tmp_path, capsys):
    assert main(["experiment", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    assert main(["experiment", "baselines", "--set", "distill.projektion=clip", "--out", str(tmp_path / "x")]) == 2
    assert "did you mean 'distill.projection'" in capsys.readouterr().err
    tiny = tmp_path / "small.txt"
    tiny.write_text("too short", encoding="utf-8")
    code = main(["experiment", "baselines", "--preset", "tiny", "--data", str(tiny), "--out", str(tmp_path / "y"),
                 "--no-progress", "--variants", "ar", "--evaluator", "smollm2-135m"])
    err = capsys.readouterr().err
    assert code == 2 and "flowlm experiment: error:" in err and "32" in err  # names the sequence length


@pytest.mark.slow
@pytest.mark.parametrize("suite", ["distillers", "baselines", "ablations", "guidance"])
def test_suite_runs_at_tiny_and_resumes(suite, corpus, evaluator, tmp_path):
    from flowlm.experiments import run_suite

    cfg = preset("tiny", device="cpu").updated({"train.steps": 6, "distill.steps": 3, "eval.n_samples": 2,
                                                 "eval.steps": "2", "eval.temperatures": "0.8,1.0"})
    if suite == "guidance":  # the weak model is the network with dropout on
        cfg = cfg.updated({"model.dropout": 0.1, "sample.steps": 2})
    out = tmp_path / suite
    res = run_suite(suite, cfg, out=out, data=corpus, evaluator=evaluator, progress=False, log=lambda m: None)
    plan = build_suite(suite, cfg)
    assert {s.name for s in res.stages} == {s.name for s in plan.stages}
    expected = sum(len(w.points()) for w in plan.sweeps) + 1  # + the data row
    assert len(res.rows) == expected and len(res.summary) == expected
    for r in res.rows:
        assert r.gen_ppl > 0 and r.entropy >= 0
    kinds = {s.name: s.kind for s in res.stages}
    if suite == "baselines":
        assert kinds == {"flm": "flm", "semigroup": "fmlm", "ar": "ar", "mdlm": "mdlm"}
        ar = [r for r in res.rows if r.variant == "ar"]
        assert {r.temperature for r in ar} == {0.8, 1.0} and all(r.nfe == 32 for r in ar)  # one call per token
    if suite == "distillers":
        assert all(set(s.residuals) >= {"semigroup", "lagrangian", "eulerian"} for s in res.stages if s.kind == "fmlm")
    report = out / "report"
    md = (report / "results.md").read_text()
    assert "| variant | method |" in md and (report / "genppl_entropy.png").stat().st_size > 0
    assert "**sample 0**" in (report / "samples.md").read_text()
    data = json.loads((report / "results.json").read_text())["suites"][suite]
    assert data["suite"] == suite and len(data["rows"]) == expected
    if suite == "guidance":
        etas = {(r.variant, r.guidance) for r in res.rows if r.variant != "data"}
        assert {e for _, e in etas} == set(GUIDANCE_WEIGHTS) and {v for v, _ in etas} == {"flm", "semigroup", "mdlm"}
        one = {r.variant: r.nfe for r in res.rows if r.guidance == 1.0}
        two = {r.variant: r.nfe for r in res.rows if r.guidance == 2.0}
        assert two["flm"] == 2 * one["flm"] and two["semigroup"] == 2 * one["semigroup"]  # both models count
        assert "| η |" in md
    if suite == "ablations":
        assert "flm-velocity-mse" in md and "flm-uniform-time" in md and "Not run" not in md
    # an interrupted / repeated run skips finished stages and evaluations
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} | \
             {p: p.stat().st_mtime_ns for p in (out / "seed0" / "records").glob("*.json")}
    again = run_suite(suite, cfg, out=out, data=corpus, evaluator=evaluator, progress=False, log=lambda m: None)
    assert [r.gen_ppl for r in again.rows] == [r.gen_ppl for r in res.rows]
    assert {p: p.stat().st_mtime_ns for p in before} == before


@pytest.mark.slow
def test_suites_in_one_folder_share_stages_and_one_report(corpus, evaluator, tmp_path):
    """distillers then baselines into one --out: the FLM teacher and the semigroup FMLM train once, the report
    holds both tables, and the estimate counts only what is left."""
    from flowlm.experiments import run_suite
    from flowlm.experiments.estimate import estimate_suite

    cfg = preset("tiny", device="cpu").updated({"train.steps": 4, "distill.steps": 2, "eval.n_samples": 2,
                                                 "eval.steps": "2"})
    out = tmp_path / "exp"
    fresh = estimate_suite(build_suite("baselines", cfg, ["semigroup"]), cfg, [0], out, 2)
    assert fresh.stages_left == 2 and fresh.train_seconds > 0 and fresh.evals_left == 5  # flm 1 + fmlm 4
    run_suite("distillers", cfg, out=out, data=corpus, evaluator=evaluator, variants=["semigroup"], progress=False,
              log=lambda m: None)
    ckpts = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    left = estimate_suite(build_suite("baselines", cfg, ["semigroup"]), cfg, [0], out, 2)
    assert left.stages_left == 0 and left.train_seconds == 0 and left.evals_left == 0
    logs: list[str] = []
    run_suite("baselines", cfg, out=out, data=corpus, evaluator=evaluator, variants=["semigroup"], progress=False,
              log=logs.append)
    assert {p: p.stat().st_mtime_ns for p in ckpts} == ckpts  # nothing retrained
    assert sum("already trained" in m for m in logs) == 2 and any("estimated run time" in m for m in logs)
    md = (out / "report" / "results.md").read_text()
    assert "## distillers" in md and "## baselines" in md and (out / "report" / "genppl_entropy_baselines.png").is_file()
    assert set(json.loads((out / "report" / "results.json").read_text())["suites"]) == {"distillers", "baselines"}


def test_cli_dry_run_prints_the_plan_and_an_estimate(tmp_path, capsys):
    code = main(["experiment", "ablations", "--preset", "tiny", "--dry-run", "--out", str(tmp_path / "x"),
                 "--set", "train.steps=3", "--set", "distill.steps=2", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "flm-velocity-mse: train" in out and "estimated run time" in out
    assert not (tmp_path / "x").exists()  # nothing was run


@pytest.mark.slow
def test_bench_measures_baselines_on_the_same_backbone(corpus, tmp_path):
    """`flowlm bench --baseline`: AR and MDLM rows next to FLM / FMLM (AR: one step per token)."""
    from flowlm.cli.bench import format_markdown, run_bench
    from flowlm.pipeline import distill_fmlm, train_model

    cfg = preset("tiny", steps=3, device="cpu").updated({"distill.steps": 2})
    flm = train_model(cfg, corpus, tmp_path / "flm")
    fmlm = distill_fmlm(cfg, flm, out_dir=tmp_path / "fmlm", data=corpus)
    ar = train_model(cfg.updated({"model.kind": "ar"}), corpus, tmp_path / "ar")
    mdlm = train_model(cfg.updated({"model.kind": "mdlm"}), corpus, tmp_path / "mdlm")
    res = run_bench(flm, fmlm, fmlm_steps=(1,), flm_steps=(2,), batch=2, repeats=1, device="cpu", progress=False,
                    baselines=[ar, mdlm], baseline_steps=(4,))
    rows = {(r["method"], r["steps"]): r for r in res["rows"]}
    assert set(rows) == {("FMLM", 1), ("FLM", 2), ("AR", 32), ("MDLM", 4)}
    assert rows[("AR", 32)]["nfe"] == 32 and set(res["baselines"]) == {"AR", "MDLM"}
    assert "| AR | 32 |" in format_markdown(res)
    with pytest.raises(Exception, match="expected one AR and/or one MDLM"):
        run_bench(flm, fmlm, fmlm_steps=(1,), flm_steps=(2,), batch=2, repeats=1, device="cpu", progress=False,
                  baselines=[flm])

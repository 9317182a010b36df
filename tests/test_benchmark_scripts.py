"""The measurement scripts of benchmarks/ that the README quotes run end to end on a tiny run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT = "Shall I compare thee to a summer's day? Thou art more lovely and more temperate. " * 30


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from flowlm.pipeline import train_model
    from flowlm.presets import preset

    root = tmp_path_factory.mktemp("bench")
    corpus = root / "c.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    return Path(train_model(preset("tiny", steps=2, device="cpu"), corpus, root / "flm")).parent, corpus


def test_prompt_continuation_keeps_the_prompt_and_scores_the_continuation(tiny_run, tmp_path):
    run, corpus = tiny_run
    out = tmp_path / "pc"
    code = _script("prompt_continuation").main(["--checkpoint", f"clamp={run}", "--n", "3", "--prefix", "16",
                                                "--flm-steps", "1,2", "--data", str(corpus), "--out", str(out)])
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert code == 0 and [r["training"] for r in rows] == ["data", "clamp", "clamp"]
    assert all(r["gen_ppl"] > 1 for r in rows) and rows[2]["nfe"] == 2
    assert "| clamp | FLM | 2 |" in out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit, match="LABEL=PATH"):
        _script("prompt_continuation").main(["--checkpoint", str(run), "--out", str(out)])


def test_consecutive_ids_reports_rates_and_a_shuffled_control(tiny_run, tmp_path):
    run, corpus = tiny_run
    out = tmp_path / "ci"
    assert _script("consecutive_ids").main(["--checkpoint", f"flm={run}", "--n", "4", "--steps", "2", "--data", str(corpus),
                                            "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["data (held out)", "data, positions shuffled", "flm", "flm, positions shuffled"]
    for r in rows:
        assert 0.0 <= sum(r[f"d{k:+d}"] for k in (-2, -1, 0, 1, 2)) <= 1.0

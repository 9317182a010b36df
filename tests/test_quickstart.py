"""`flowlm quickstart` end to end on the tiny preset, its resumability, and `flowlm eval` / `flowlm bench`."""

from __future__ import annotations

import json
import math
import re

import pytest

from flowlm.cli.main import main
from flowlm.evaluation import load_record, load_records

FMLM_STEPS, FLM_STEPS = (1, 2, 4, 8), (8, 16, 32, 64, 128)


def _table_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "tiny"
    code = main(["quickstart", "--preset", "tiny", "--out-dir", str(out), "--no-progress", "--device", "cpu"])
    assert code == 0
    return out


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
    assert re.search(r"did you mean 'steps'", capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["quickstart", "--fmlm-steps", "0,1"])

"""The command line end to end (train → resume → distill → sample) and its bad-input errors.

Each error case checks three things: exit code 2, a one-line message on stderr that names the
problem (no traceback), and that the files already there are left byte-for-byte intact.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowlm.cli.main import main

TEXT = (
    "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n"
    "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date;\n"
    "Sometime too hot the eye of heaven shines,\nAnd often is his gold complexion dimm'd;\n"
) * 12
FAST = ["--preset", "tiny", "--device", "cpu", "--set", "n_samples=1", "--set", "sample_steps=2"]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _error_line(err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("flowlm ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    """Token caches of these runs go to a temporary $FLOWLM_CACHE, not the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLOWLM_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("corpus") / "sonnet.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def run_dir(corpus, tmp_path_factory) -> Path:
    """A tiny FLM trained for 6 steps (shared by the error tests)."""
    out = tmp_path_factory.mktemp("runs") / "flm"
    assert main(["train", *FAST, "--data", str(corpus), "--out-dir", str(out), "--steps", "6"]) == 0
    return out


# ----------------------------------------------------------------------------- the happy path
@pytest.mark.slow
def test_train_resume_distill_sample(corpus, tmp_path, capsys):
    flm = tmp_path / "flm"
    code, out, _ = _run(capsys, "train", *FAST, "--data", corpus, "--out-dir", flm, "--steps", 10)
    assert code == 0 and "checkpoint.safetensors" in out
    for f in ("config.json", "tokenizer.json", "run.json", "checkpoint.safetensors", "metrics.jsonl", "samples.txt"):
        assert (flm / f).is_file(), f
    cfg = json.loads((flm / "config.json").read_text())
    assert cfg["preset"] == "tiny" and cfg["train"]["steps"] == 10
    spec = json.loads((flm / "tokenizer.json").read_text())
    assert spec["kind"] == "char" and set(spec["chars"]) == set(TEXT)
    train_steps = [r["step"] for r in _metrics(flm) if "split" not in r]
    assert train_steps == [5, 10]

    # resume (no --preset: the run's own config): continues at step 10, steps 1..10 are not redone
    code, _, _ = _run(capsys, "train", "--device", "cpu", "--data", corpus, "--out-dir", flm, "--steps", 15)
    assert code == 0
    train_steps = [r["step"] for r in _metrics(flm) if "split" not in r]
    assert train_steps == [5, 10, 15]
    assert json.loads((flm / "config.json").read_text())["train"]["steps"] == 15
    val = [r for r in _metrics(flm) if r.get("split") == "val"]
    assert all(r["val_loss"] > 0 for r in val)
    assert [r["step"] for r in val if r["ema"]] == [10, 15]  # the end of each run, EMA weights
    assert [r["step"] for r in val if not r["ema"]] == [10]  # tiny: eval_every = 10, current weights

    for method in ("semigroup", "lagrangian", "eulerian"):
        student = tmp_path / method
        code, _, _ = _run(capsys, "distill", "--teacher", flm, "--method", method, "--steps", 3,
                          "--out-dir", student, "--device", "cpu")
        assert code == 0
        assert json.loads((student / "run.json").read_text())["method"] == method
        assert json.loads((student / "tokenizer.json").read_text()) == spec  # the teacher's tokenizer
        assert [r["step"] for r in _metrics(student) if "split" not in r] == [3]

    for ckpt, steps in ((flm, 3), (tmp_path / "semigroup", 1), (tmp_path / "semigroup", 2)):
        code, out, err = _run(capsys, "sample", "--checkpoint", ckpt, "--steps", steps, "--n", 3, "--device", "cpu")
        assert code == 0
        texts = out.rstrip("\n").split("\n\n----------\n\n")
        assert len(texts) == 3
        assert all(set(t) <= set(TEXT) for t in texts)  # decoded with the corpus characters
        assert f"NFE {steps}" in err

    target = tmp_path / "out" / "s.txt"
    code, out, _ = _run(capsys, "sample", "--checkpoint", flm, "--n", 2, "--seed", 3, "--out", target)
    assert code == 0 and out == "" and target.read_text().count("----------") == 1
    # the same seed gives the same text
    code, again, _ = _run(capsys, "sample", "--checkpoint", flm, "--n", 2, "--seed", 3)
    assert again == target.read_text()


@pytest.mark.slow
def test_entry_point_subprocess(run_dir, tmp_path):
    exe = Path(sys.executable).with_name("flowlm")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    helped = subprocess.run([exe, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert helped.returncode == 0
    for cmd in ("train", "distill", "sample", "eval", "bench", "import", "quickstart"):
        assert cmd in helped.stdout
    done = subprocess.run([exe, "sample", "--checkpoint", run_dir, "--n", "2", "--steps", "2"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("----------") == 1 and "NFE 2" in done.stderr
    bad = subprocess.run([exe, "sample", "--checkpoint", tmp_path / "missing"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "no checkpoint at" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("cmd", ["train", "distill", "sample"])
def test_help_has_examples(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"flowlm {cmd}" in out and "examples:" in out and "--data" in out


# ----------------------------------------------------------------------------- bad input
def _bad_corpora(tmp: Path) -> dict[str, tuple[Path, str]]:
    (tmp / "empty.txt").write_text("")
    (tmp / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 100)
    (tmp / "no_txt").mkdir()
    (tmp / "no_txt" / "notes.md").write_text(TEXT)
    return {
        "missing": (tmp / "missing.txt", "does not exist"),
        "empty": (tmp / "empty.txt", "is empty"),
        "undecodable": (tmp / "latin1.txt", "latin1.txt is not valid UTF-8"),
        "no_txt": (tmp / "no_txt", "holds no .txt files"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "undecodable", "no_txt"])
def test_bad_corpus(case, tmp_path, capsys):
    data, needle = _bad_corpora(tmp_path)[case]
    before = _snapshot(tmp_path)
    code, _, err = _run(capsys, "train", *FAST, "--data", data, "--out-dir", tmp_path / "run")
    assert code == 2
    _error_line(err, "flowlm train: error:", needle)
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed
    assert not (tmp_path / "run").exists()


def test_distill_with_bad_corpus(run_dir, tmp_path, capsys):
    data, needle = _bad_corpora(tmp_path)["undecodable"]
    code, _, err = _run(capsys, "distill", "--teacher", run_dir, "--data", data, "--out-dir", tmp_path / "d")
    assert code == 2
    _error_line(err, "flowlm distill: error:", needle)
    assert not (tmp_path / "d").exists()
    # the teacher's corpus is gone: say so instead of silently distilling on other text
    moved = tmp_path / "teacher"
    shutil.copytree(run_dir, moved)
    run = json.loads((moved / "run.json").read_text())
    run["data"] = str(tmp_path / "deleted.txt")
    (moved / "run.json").write_text(json.dumps(run))
    code, _, err = _run(capsys, "distill", "--teacher", moved, "--out-dir", tmp_path / "d")
    assert code == 2
    _error_line(err, "deleted.txt, which no longer exists", "--data")
    assert not (tmp_path / "d").exists()


def test_existing_run_is_never_clobbered(run_dir, corpus, tmp_path, capsys):
    before = _snapshot(run_dir)
    code, _, err = _run(capsys, "train", *FAST, "--data", corpus, "--out-dir", run_dir, "--no-resume")
    assert code == 2
    _error_line(err, "already holds a run", "--resume")
    # resuming with another model shape, or on other data, is refused
    code, _, err = _run(capsys, "train", *FAST, "--data", corpus, "--out-dir", run_dir, "--set", "width=64")
    assert code == 2
    _error_line(err, "cannot resume", "width: run has 32, requested 64")
    other = tmp_path / "other.txt"
    other.write_text(TEXT.upper())
    code, _, err = _run(capsys, "train", *FAST, "--data", other, "--out-dir", run_dir, "--steps", 8)
    assert code == 2
    _error_line(err, "cannot resume", "other data")
    assert _snapshot(run_dir) == before
    # a folder that holds other things is not taken over as a run directory
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "config.json").write_text("mine")
    code, _, err = _run(capsys, "train", *FAST, "--data", corpus, "--out-dir", busy)
    assert code == 2
    _error_line(err, "is not a flowlm run directory")
    assert _snapshot(busy) == {"config.json": b"mine"}


def test_checkpoint_with_another_tokenizer_or_config_is_refused(run_dir, corpus, tmp_path, capsys):
    # run B: other characters (so another char vocabulary); run C: same data, wider model
    other = tmp_path / "upper.txt"
    other.write_text(TEXT.upper() + "0123456789")
    b, c = tmp_path / "b", tmp_path / "c"
    assert main(["train", *FAST, "--data", str(other), "--out-dir", str(b), "--steps", "2"]) == 0
    assert main(["train", *FAST, "--data", str(corpus), "--out-dir", str(c), "--steps", "2",
                 "--set", "width=64"]) == 0
    capsys.readouterr()

    # A's checkpoint dropped into B's run: another tokenizer and vocabulary
    shutil.copy(run_dir / "checkpoint.safetensors", b / "checkpoint.safetensors")
    before = _snapshot(b)
    code, _, err = _run(capsys, "sample", "--checkpoint", b, "--n", 1, "--steps", 1)
    assert code == 2
    line = _error_line(err, "flowlm sample: error:", "another configuration")
    assert "tokenizer" in line and "vocab_size" in line
    assert _snapshot(b) == before

    # C's checkpoint (width 64) dropped into A's run files (width 32)
    a2 = tmp_path / "a2"
    shutil.copytree(run_dir, a2)
    shutil.copy(c / "checkpoint.safetensors", a2 / "checkpoint.safetensors")
    code, _, err = _run(capsys, "sample", "--checkpoint", a2 / "checkpoint.safetensors", "--n", 1)
    assert code == 2
    _error_line(err, "model.width: checkpoint has 64, expected 32")

    # a distilled model is not a teacher
    code, _, err = _run(capsys, "distill", "--teacher", b, "--out-dir", tmp_path / "x")  # b is still broken
    assert code == 2 and not (tmp_path / "x").exists()


def test_distill_refuses_a_student_as_teacher_and_model_overrides(run_dir, tmp_path, capsys):
    student = tmp_path / "sg"
    assert main(["distill", "--teacher", str(run_dir), "--steps", "1", "--out-dir", str(student),
                 "--set", "n_samples=1"]) == 0
    capsys.readouterr()
    code, _, err = _run(capsys, "distill", "--teacher", student, "--out-dir", tmp_path / "sg2")
    assert code == 2
    _error_line(err, "the teacher must be an FLM")
    code, _, err = _run(capsys, "distill", "--teacher", run_dir, "--set", "depth=3", "--out-dir", tmp_path / "sg3")
    assert code == 2
    _error_line(err, "contradicts the teacher", "depth")
    # resuming a student with another method is refused
    code, _, err = _run(capsys, "distill", "--teacher", run_dir, "--method", "eulerian", "--out-dir", student)
    assert code == 2
    _error_line(err, "distilled with semigroup, not eulerian")
    assert not (tmp_path / "sg2").exists() and not (tmp_path / "sg3").exists()


def test_sample_errors(run_dir, tmp_path, capsys):
    existing = tmp_path / "keep.txt"
    existing.write_text("precious")
    code, _, err = _run(capsys, "sample", "--checkpoint", run_dir, "--out", existing)
    assert code == 2
    _error_line(err, "already exists")
    assert existing.read_text() == "precious"
    code, _, err = _run(capsys, "sample", "--checkpoint", tmp_path / "nowhere")
    assert code == 2
    _error_line(err, "no checkpoint at")
    code, _, err = _run(capsys, "sample", "--checkpoint", run_dir, "--length", 999)
    assert code == 2
    _error_line(err, "exceeds the model's sequence length 32")
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(run_dir / "checkpoint.safetensors", lone / "checkpoint.safetensors")
    code, out, err = _run(capsys, "sample", "--checkpoint", lone, "--n", 1)  # self-describing: loads alone
    assert code == 0 and out.strip(), err
    not_ckpt = tmp_path / "fake.safetensors"
    not_ckpt.write_text("hello")
    code, _, err = _run(capsys, "sample", "--checkpoint", not_ckpt)
    assert code == 2
    _error_line(err, "not a readable checkpoint")


def test_bad_overrides(corpus, tmp_path, capsys):
    for args, needle in (
        (["--set", "stepz=3"], "did you mean 'train.steps'"),
        (["--set", "steps=many"], "expected an integer"),
        (["--set", "heads=3"], "divisible by model.heads 3"),
        (["--set", "tokenizer=words"], "tokenizer must be one of"),
        (["--set", "seq_len=4096"], "shorter than one sequence of 4096 tokens"),
        (["--set", "width=34"], "head width 17"),
        (["--set", "attention=sdpa"], "cannot apply attn_softcap"),
        (["--set", "grad_accum=3"], "divisible by train.grad_accum 3"),
        (["--device", "tpu9"], "unknown device"),
    ):
        code, _, err = _run(capsys, "train", *FAST, "--data", corpus, "--out-dir", tmp_path / "r", *args)
        assert code == 2, args
        _error_line(err, needle)
    assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit) as e:  # argparse's own usage error for an unknown preset
        main(["train", "--preset", "huge"])
    assert e.value.code == 2


# ----------------------------------------------------------------------------- presets
def test_presets_build_valid_models():
    from flowlm.presets import PRESETS, preset

    sizes = {}
    for name in PRESETS:
        cfg = preset(name)
        dit = cfg.dit_config(vocab_size=100)
        sizes[name] = (dit.depth, dit.width, dit.heads, dit.max_length)
        assert cfg.to_dict() == type(cfg).from_dict(json.loads(cfg.to_json())).to_dict()  # JSON round trip
    assert sizes["lm1b"] == (12, 768, 12, 128) and sizes["owt"] == (12, 768, 12, 1024)  # the paper's sizes
    assert preset("lm1b").tokenizer == "bert" and preset("owt").tokenizer == "gpt2"


def test_overrides_parse_with_the_field_type():
    from flowlm.presets import ConfigError, apply_overrides, preset

    cfg = apply_overrides(preset("tiny"), ["steps=1e3", "lr=0.5", "compile=yes", "tokenizer=bpe", "attn_softcap=0"])
    assert (cfg.steps, cfg.lr, cfg.compile, cfg.tokenizer) == (1000, 0.5, True, "bpe")
    assert cfg.dit_config(50).attn_softcap is None  # 0 switches the cap off
    for bad, needle in ((["steps=1.5"], "integer"), (["compile=maybe"], "boolean"), (["steps"], "key=value")):
        with pytest.raises(ConfigError, match=needle):
            apply_overrides(cfg, bad)


# ----------------------------------------------------------------------------- rough edges of issue 15
@pytest.mark.parametrize("argv", [
    ["sample", "--steps", "0"], ["sample", "--steps", "-3"], ["sample", "--n", "0"], ["sample", "--length", "0"],
    ["train", "--steps", "0"], ["distill", "--steps", "0"], ["eval", "--steps", "0"], ["eval", "--steps", "2,-1"],
    ["eval", "--n-samples", "0"], ["bench", "--repeats", "0"], ["quickstart", "--fmlm-steps", "0"],
])
def test_non_positive_counts_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as e:  # argparse's usage error: nothing runs, nothing is read
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[1]}" in err and ">= 1" in err and "Traceback" not in err


def test_sample_steps_zero_does_not_fall_back_to_the_default(run_dir):
    """The old bug: ``--steps 0`` was falsy and silently became the run's 64 steps (subprocess: exit code)."""
    exe = Path(sys.executable).with_name("flowlm")
    done = subprocess.run([exe, "sample", "--checkpoint", run_dir, "--steps", "0"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert "argument --steps: must be an integer >= 1, got 0" in done.stderr


def test_a_run_too_large_for_memory_is_refused_up_front(corpus, tmp_path, capsys):
    code, _, err = _run(capsys, "train", *FAST, "--data", corpus, "--out-dir", tmp_path / "r", "--set", "seq_len=100000")
    assert code == 2
    line = _error_line(err, "this run needs about", "attention scores", "TiB", "--set seq_len=", "or less")
    assert not (tmp_path / "r").exists()  # refused before anything was written or read
    # the suggested length fits, and is the largest that does (the estimate's own arithmetic)
    from flowlm.memory import available_memory, estimate_training_memory
    from flowlm.presets import apply_overrides, preset

    fits = int(line.split("--set seq_len=")[1].split()[0])
    cfg = apply_overrides(preset("tiny"), ["n_samples=1", "sample_steps=2"])
    budget = 0.8 * available_memory("cpu")[0]
    assert estimate_training_memory(cfg.replace(seq_len=fits)).total_bytes <= budget * 1.01
    assert estimate_training_memory(cfg.replace(seq_len=int(fits * 1.05) + 1)).total_bytes > budget * 0.99


def test_memory_check_names_what_to_change(tmp_path):
    from flowlm.memory import check_training_memory, estimate_training_memory
    from flowlm.presets import ConfigError, preset

    cfg = preset("shakespeare-char", batch_size=64, distill_batch_size=64)
    est = estimate_training_memory(cfg, 65)
    assert check_training_memory(cfg, 65, available=2 * est.total_bytes) == est  # fits: no error
    with pytest.raises(ConfigError) as e:
        check_training_memory(cfg, 65, available=est.total_bytes)  # 100% > the 80% margin
    msg = str(e.value)
    assert "seq_len=" in msg and "grad_accum=2" in msg and "batch_size=" in msg and "FLOWLM_SKIP_MEMORY_CHECK" in msg
    # the L² term: doubling L quadruples the attention part and doubles the rest of the activations
    long = estimate_training_memory(cfg.replace(seq_len=2 * cfg.seq_len), 65)
    assert long.attention_bytes == 4 * est.attention_bytes and long.activation_bytes == 2 * est.activation_bytes
    # distillation keeps a frozen teacher and runs the student more than once per step
    sg = estimate_training_memory(cfg, 65, method="semigroup")
    assert sg.total_bytes > est.total_bytes and sg.parameters > est.parameters


def test_train_logs_validation_every_eval_every_steps(corpus, tmp_path, capsys):
    out = tmp_path / "r"
    code, _, err = _run(capsys, "train", *FAST, "--data", corpus, "--out-dir", out, "--steps", 6, "--set", "eval_every=2")
    assert code == 0
    val = [r for r in _metrics(out) if r.get("split") == "val"]
    assert [(r["step"], r["ema"]) for r in val] == [(2, False), (4, False), (6, False), (6, True)]
    assert all(0 < r["val_loss"] < 10 for r in val)
    for step in (2, 4, 6):
        assert f"step {step}: validation loss" in err
    assert "\r" not in err  # not a terminal: plain progress lines


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ar", "mdlm"])
def test_train_baseline_kind_saves_reloads_and_samples(kind, corpus, tmp_path, capsys):
    """`flowlm train --model ar|mdlm`: the same DiT trains, the checkpoint records its kind, and it
    reloads from the checkpoint file alone and samples through `flowlm sample` (temperature, top-p)."""
    from flowlm.models import AR, MDLM
    from flowlm.pipeline import load_model

    run = tmp_path / kind
    code, out, err = _run(capsys, "train", *FAST, "--model", kind, "--data", corpus, "--out-dir", run, "--steps", 4)
    assert code == 0, err
    assert json.loads((run / "run.json").read_text())["kind"] == kind
    assert json.loads((run / "config.json").read_text())["model"]["kind"] == kind
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(run / "checkpoint.safetensors", lone / "model.safetensors")
    model, tok, cfg = load_model(lone / "model.safetensors")
    assert isinstance(model, AR if kind == "ar" else MDLM) and cfg.model.kind == kind
    assert model.config.causal == (kind == "ar")
    args = ["sample", "--checkpoint", run, "--n", 2, "--temperature", 0.7, "--top-p", 0.9, "--seed", 3]
    if kind == "mdlm":
        args += ["--steps", 5]
    code, out, err = _run(capsys, *args)
    assert code == 0, err
    texts = out.split("\n\n----------\n\n")
    assert len(texts) == 2 and f"from the {kind.upper()}" in err
    assert f"NFE {32 if kind == 'ar' else 5}" in err  # AR: one network call per token; MDLM: one per step
    code, out2, _ = _run(capsys, *args)
    assert out2 == out  # seeded
    code, _, err = _run(capsys, "distill", "--teacher", run, "--out-dir", tmp_path / "d")
    assert code == 2
    _error_line(err, f"is a {kind} model; the teacher must be an FLM checkpoint")


def test_sample_flags_for_the_wrong_kind_are_refused(run_dir, capsys):
    code, _, err = _run(capsys, "sample", "--checkpoint", run_dir, "--temperature", 0.5)
    assert code == 2
    _error_line(err, "--temperature and --top-p apply to AR and MDLM models")


# ----------------------------------------------------------------------------- prompts and infilling (issue 13)
def test_sample_prompt_and_infill(run_dir, tmp_path, capsys):
    """--prompt / --infill on the tiny FLM and a 1-step-distilled FMLM: the prompt text is printed
    unchanged, the generated part has the requested size; bad combinations get clear errors."""
    student = tmp_path / "fmlm"
    code, _, _ = _run(capsys, "distill", "--teacher", run_dir, "--method", "semigroup", "--steps", 1,
                      "--out-dir", student, "--device", "cpu")
    assert code == 0
    for ckpt, steps in ((run_dir, 3), (student, 1)):
        code, out, err = _run(capsys, "sample", "--checkpoint", ckpt, "--steps", steps, "--n", 2, "--device", "cpu",
                              "--prompt", "Shall I", "--length", 16)
        assert code == 0, err
        texts = out.rstrip("\n").split("\n\n----------\n\n")
        assert len(texts) == 2 and all(t.startswith("Shall I") and len(t) == 16 for t in texts), texts
        code, out, err = _run(capsys, "sample", "--checkpoint", ckpt, "--steps", steps, "--n", 2, "--device", "cpu",
                              "--infill", "thee ___ day", "--gap", 5)
        assert code == 0, err
        texts = out.rstrip("\n").split("\n\n----------\n\n")
        assert all(t.startswith("thee ") and t.endswith(" day") and len(t) == len("thee  day") + 5 for t in texts), texts
    code, out, err = _run(capsys, "sample", "--checkpoint", run_dir, "--steps", 2, "--n", 2, "--device", "cpu",
                          "--prompt", "Shall I", "--length", 12, "--guidance", 2, "--weak", "online")  # autoguidance with a prompt
    assert code == 0, err
    assert all(t.startswith("Shall I") and len(t) == 12 for t in out.rstrip("\n").split("\n\n----------\n\n"))
    for argv, needle in (
        (("--prompt", "a", "--infill", "a ___ b"), "not both"),
        (("--infill", "no gap here"), '"___"'),
        (("--prompt", "x" * 40), "shorten the prompt"),
        (("--infill", "x" * 20 + " ___ " + "y" * 10, "--gap", 8), "at most 32"),
    ):
        code, _, err = _run(capsys, "sample", "--checkpoint", run_dir, "--steps", 2, "--device", "cpu", *argv)
        assert code == 2
        _error_line(err, needle)

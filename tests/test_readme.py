"""The README's Python examples run as written and do what their comments say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _run(code: str) -> dict:
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README is ours
    return namespace


def test_readme_has_the_examples():
    blocks = _python_blocks()
    assert any("from_functions" in b for b in blocks) and any("Distiller" in b for b in blocks)


def test_readme_interpolant_example():
    ns = _run(next(b for b in _python_blocks() if "from_functions" in b))
    quad = ns["quad"]
    t = torch.tensor([0.0, 0.3, 1.0])
    torch.testing.assert_close(quad.alpha(t), 1 - t**2)
    torch.testing.assert_close(quad.beta_dot(t), 2 * (1 - t))
    # the comment's values: τ = 0.01, 0.5, 0.99 at t ≈ 0.63, 0.80, 0.87 for Linear, V = 30522
    assert ns["path"].xt.shape == (1, 3, 4) and float(ns["path"].tau) == 0.5
    got = ns["schedule"].t_of_tau(torch.tensor([0.01, 0.5, 0.99], dtype=torch.float64))
    torch.testing.assert_close(got, torch.tensor([0.63, 0.80, 0.87], dtype=torch.float64), atol=6e-3, rtol=0)


@pytest.mark.slow
def test_readme_distillation_example():
    ns = _run(next(b for b in _python_blocks() if "Distiller" in b))
    out, law_seqs = ns["out"], torch.tensor([[0, 1, 2], [1, 2, 3], [2, 3, 0]])
    assert out.nfe == 1
    in_law = (out.tokens[:, None, :] == law_seqs[None]).all(-1).any(-1)  # [n]
    assert float(in_law.float().mean()) > 0.8  # "most rows are one of the three sequences"
    counts = torch.stack([(out.tokens == s).all(-1).sum() for s in law_seqs]).float()
    assert float(counts.min()) > 0.15 * len(out.tokens)  # and all three are drawn (no mode collapse)

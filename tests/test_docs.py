"""The documentation site: the docstring conversion, the strict offline build, links that stay in the repository."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def rst():
    pytest.importorskip("griffe", reason="the docs extra is not installed (pip install -e '.[docs]')")
    return _module("griffe_rst", ROOT / "docs" / "hooks" / "griffe_rst.py").rst_to_markdown


def test_math_roles_and_blocks_become_arithmatex_math(rst):
    assert rst(r"with :math:`\alpha(0)=1` and :math:` \rho `.") == r"with $\alpha(0)=1$ and $\rho$."
    text = "Text:\n\n.. math::\n    a = b \\\\\n    c = d\n\nAfter."
    assert rst(text) == "Text:\n\n$$\n\\begin{gathered}\na = b \\\\\nc = d\n\\end{gathered}\n$$\n\nAfter."
    assert rst("    .. math::\n        x_t = y\n") == "    $$\n    x_t = y\n    $$\n"  # indented stays indented


def test_cross_reference_roles(rst):
    out = rst("see :class:`~flowlm.nets.DiT` and :func:`flowlm.training.train`, :meth:`target`")
    assert '<autoref identifier="flowlm.nets.DiT" optional><code>DiT</code></autoref>' in out
    assert '<autoref identifier="flowlm.training.train" optional><code>flowlm.training.train</code></autoref>' in out
    assert out.endswith("`target`")  # an unqualified name cannot be resolved: plain code


def test_doctests_are_fenced_and_literal_markers_dropped(rst):
    out = rst("Example::\n\n    >>> f([1])\n    [2]\n\nEnd.")
    assert out == "Example:\n\n    ```pycon\n    >>> f([1])\n    [2]\n    ```\n\nEnd."
    assert rst("```python\n>>> x\n```") == "```python\n>>> x\n```"  # already fenced: untouched


@pytest.mark.slow
def test_site_builds_strictly_and_offline(tmp_path):
    """``mkdocs build --strict`` (what ``make docs`` runs): a broken reference, a missing page or a
    docstring warning fails. The site loads nothing from the network."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "WARNING" not in done.stderr
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    for page in ("index.html", "math.html", "conditioning.html", "cli.html", "benchmarks.html",
                 "quickstart/results.html", "quickstart/samples.html", "api/index.html", "notebooks/index.html"):
        assert page in pages, page
    packages = [p.name for p in (ROOT / "flowlm").iterdir() if (p / "__init__.py").is_file() and p.name not in
                ("cli", "experiments") and not p.name.startswith("_")]
    for name in packages:  # every public package has its API page
        assert f"api/{name}.html" in pages, name
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        assert f"notebooks/{nb.stem}.html" in pages, nb.name
    for result in (ROOT / "benchmarks" / "results").glob("*.md"):
        assert f"benchmarks/{result.stem}.html" in pages, result.name
    # formulas: arithmatex markup, rendered by the MathJax copy inside the site
    math = (site / "math.html").read_text()
    assert math.count('class="arithmatex"') > 30 and "assets/mathjax/tex-mml-chtml.js" in math
    assert (site / "assets" / "mathjax" / "tex-mml-chtml.js").is_file()
    assert (site / "assets" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    nets = (site / "api" / "nets.html").read_text()
    assert ":math:" not in nets and ".. math::" not in nets and 'class="arithmatex"' in nets
    assert 'href="#flowlm.nets.ProjectedSpace"' in nets  # a docstring cross-reference, resolved
    for page in site.rglob("*.html"):  # no script, style or font from the network
        assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', page.read_text()), page


def test_readme_links_stay_inside_the_repository():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        path = link.split("#")[0]
        target = (ROOT / path).resolve()
        assert target.is_relative_to(ROOT) and target.exists(), link
    assert "shared/" not in text  # the design notes users need are pages of the site (docs/)

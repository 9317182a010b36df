"""MkDocs hook: the parts of the site that follow the repository instead of a fixed list.

* API reference: one page per public package of ``flowlm`` that exists (``api/<name>.md`` holding
  ``::: flowlm.<name>``), so a package added later (``flowlm.flow``, ``flowlm.hub``) gets its page
  by being added to ``API_PACKAGES``, and a missing one never breaks the build.
* Benchmarks: every report in ``benchmarks/results/*.md`` (with its figures) as a page.
* Notebooks: every ``notebooks/*.ipynb`` of the repository (rendered by mkdocs-jupyter with the
  outputs committed in it, never executed here) and ``notebooks/README.md`` as their index.
* MathJax 3 served from the site itself (the ``mathjax`` package of the ``docs`` extra), so the
  site builds and reads offline.
* The navigation, built from the above.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.flowlm")
ROOT = Path(__file__).resolve().parents[2]

# (package, one-line summary) in dependency order; packages that do not exist are skipped
API_PACKAGES = [
    ("interpolants", "α, β and the t ↔ τ schedules"),
    ("flow", "Flow: an interpolant with its schedule"),
    ("prompt", "Prompt: clean positions held with per-token times; training masks"),
    ("denoisers", "the Denoiser protocol, the FLM loss, velocity"),
    ("states", "one-hot and projected state spaces"),
    ("oracles", "exact float64 denoisers and flow maps"),
    ("samplers", "FLM samplers on the τ grid"),
    ("flowmaps", "two-time denoisers, flow maps, the three distillers, FMLM samplers"),
    ("guidance", "autoguidance, reward guidance through the flow map, rewards"),
    ("nets", "the DiT and its parts"),
    ("baselines", "the AR and MDLM baselines' math: losses, samplers, exact oracles"),
    ("models", "FLM and FMLM, and the AR and MDLM baselines on the same DiT"),
    ("training", "the training loop, checkpoints, EMA"),
    ("data", "corpora, tokenizers, packing, token shards, batch sources"),
    ("evaluation", "Gen PPL, entropy, evaluation records"),
    ("hub", "checkpoints of the paper's authors, Hugging Face folders"),
    ("memory", "the up-front memory estimate of a run"),
    ("experiments", "comparison harnesses (the toy distiller comparison)"),
]

MATHJAX_PARTS = ("tex-mml-chtml.js", "input/tex/extensions", "output/chtml/fonts", "ui", "a11y")


def _exists(name: str) -> bool:
    """A package or module of this checkout (read from the files: nothing is imported)."""
    return (ROOT / "flowlm" / name / "__init__.py").is_file() or (ROOT / "flowlm" / f"{name}.py").is_file()


def api_packages() -> list[tuple[str, str]]:
    return [(name, summary) for name, summary in API_PACKAGES if _exists(name)]


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def benchmark_results() -> list[Path]:
    return sorted((ROOT / "benchmarks" / "results").glob("*.md"))


def _submodules(name: str) -> list[str]:
    """Public submodules of package ``flowlm.<name>`` (none for a plain module)."""
    import pkgutil

    folder = ROOT / "flowlm" / name
    if not (folder / "__init__.py").is_file():
        return []
    return [m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_") and m.name != "__main__"]


def _api_page(name: str, summary: str) -> str:
    """The package's docstring and public names, then each submodule's docstring (where the
    formulas of a module are written), without repeating its members."""
    page = (f"# flowlm.{name}\n\n{summary[0].upper() + summary[1:]}.\n\n"
            f"::: flowlm.{name}\n    options:\n      show_root_heading: false\n      show_root_toc_entry: false\n")
    subs = _submodules(name)
    if subs:
        page += "\n## Modules\n\nThe notes at the top of each module (the names above are defined in them).\n"
        for sub in subs:
            page += (f"\n::: flowlm.{name}.{sub}\n    options:\n      members: false\n      show_root_heading: true\n"
                     f"      heading_level: 3\n")
    return page


def on_config(config, **kwargs):
    api = [{"Overview": "api/index.md"}] + [{f"flowlm.{n}": f"api/{n}.md"} for n, _ in api_packages()]
    nbs = [{"Overview": "notebooks/index.md"}] + [{nb.stem.replace("_", " ", 1): f"notebooks/{nb.name}"}
                                                    for nb in notebooks()]
    config["nav"] = [
        {"Home": "index.md"},
        {"The math": ["math.md", "conditioning.md"]},
        {"Command line": "cli.md"},
        {"Notebooks": nbs},
        {"API reference": api},
        {"Results": ["quickstart/results.md", "quickstart/samples.md",
                     {"Benchmarks": ["benchmarks.md"] + [f"benchmarks/{p.name}" for p in benchmark_results()]}]},
    ]
    return config


@event_priority(100)  # before mkdocs-jupyter and mkdocstrings see the files
def on_files(files: Files, config, **kwargs) -> Files:
    index = ["# API reference\n", "One page per package, generated from the docstrings (formulas and shapes "
             "included). Dependencies run one way, from top to bottom of this list.\n",
             "| package | what it holds |", "|---|---|"]
    for name, summary in api_packages():
        files.append(File.generated(config, f"api/{name}.md", content=_api_page(name, summary)))
        index.append(f"| [`flowlm.{name}`]({name}.md) | {summary} |")
    files.append(File.generated(config, "api/index.md", content="\n".join(index) + "\n"))

    readme = ROOT / "notebooks" / "README.md"
    files.append(File.generated(config, "notebooks/index.md", abs_src_path=str(readme)))
    for nb in notebooks():  # a real source file under the repository root (mkdocs-jupyter reads it by path)
        files.append(File(f"notebooks/{nb.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))

    for result in benchmark_results():  # the reports the benchmark scripts write, with their figures
        files.append(File.generated(config, f"benchmarks/{result.name}", abs_src_path=str(result)))
    for figure in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        files.append(File.generated(config, f"benchmarks/{figure.name}", abs_src_path=str(figure)))

    spec = importlib.util.find_spec("mathjax")
    es5 = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5" if spec else None
    if es5 is None or not (es5 / "tex-mml-chtml.js").is_file():
        log.warning("MathJax is not installed: formulas will show as TeX source; install the docs extra "
                    "(pip install -e '.[docs]')")
        return files
    for part in MATHJAX_PARTS:
        src = es5 / part
        for f in ([src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())):
            rel = f.relative_to(es5).as_posix()
            files.append(File.generated(config, f"assets/mathjax/{rel}", abs_src_path=str(f)))
    return files

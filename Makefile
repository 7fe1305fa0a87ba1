# Two commands set up a fresh machine (Python 3.10+ with pip and venv; no network beyond PyPI):
#   make demo   creates .venv, installs claver-hf, runs the main job on an embedded default
#   make test   creates .venv, installs claver-hf[dev], runs lint + the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-runtime: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed-runtime

demo: $(VENV)/.installed-runtime
	$(BIN)/claver-hf demo --output-dir outputs/demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-runtime
	$(BIN)/python benchmarks/model_cost.py
	$(BIN)/python benchmarks/bench_attention.py

clean:
	rm -rf $(VENV) outputs .pytest_cache

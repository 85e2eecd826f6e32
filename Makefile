# The README's commands. `make run` serves the web chat; `make test` runs everything CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RAG := $(BIN)/rag
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export ANONYMIZED_TELEMETRY := False
export TOKENIZERS_PARALLELISM := false

.PHONY: run install install-dev apt-test index test unit lint eval bench llm models clean

run: index
	$(BIN)/python app.py

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Debian's Chromium drives the browser tests (playwright's own browser download cannot work offline).
apt-test:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

index: install
	$(RAG) ingest --if-stale

lint: install-dev
	$(BIN)/ruff check rag tests evals bench app.py
	$(BIN)/mypy rag

unit: install-dev
	$(BIN)/python -m pytest -m "not integration"

test: install-dev apt-test lint
	$(BIN)/python -m pytest
	$(RAG) eval --gate evals/thresholds.json --out .rag/eval-ci

eval: install-dev
	$(RAG) eval --out evals/out

bench: install-dev
	$(BIN)/python bench/run.py

clean:
	rm -rf .rag evals/out

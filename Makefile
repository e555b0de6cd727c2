# The MediaJob controller. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## Show this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[sandbox,test,bench]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with its test tools

controlplane: ## Build (or reuse) etcd, kube-apiserver and kubectl from Go modules (cached per version)
	bash hack/controlplane/build.sh

lint: install ## ruff, mypy --strict and the layering rule (.importlinter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

promtool: ## Install promtool (Debian's prometheus package) where it is missing: the alert rules' unit tests need it
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

helm: ## Build (or reuse) the helm binary from its Go module (hack/helm, cached per version)
	@bash hack/helm/build.sh >/dev/null

chart: ## Copy what the chart shares with manifests/ (CRD, RBAC, alert rules) into its files/ (a test keeps it current)
	bash hack/render-chart.sh

test: install controlplane node promtool helm lint ## Lint, then every tier but `slow` (control plane, image in Docker) beside `make e2e`
	bash hack/test.sh $(PYTEST_ARGS)

test-unit: install promtool ## Only the tests that need no control plane and no Docker
	$(VENV)/bin/pytest -m "not cluster and not slow" $(PYTEST_ARGS)

test-image: install controlplane ## Only the image tier: build the image, run it as a pod would
	$(VENV)/bin/pytest -m image $(PYTEST_ARGS)

image: ## Build mediajob-controller:dev (starts Docker if needed; offline base from Debian packages if no registry)
	bash hack/image.sh

image-sandbox: ## Build mediajob-controller:dev and the e2e simulators' image mediajob-sandbox:dev
	bash hack/image.sh --sandbox

lock: install ## Re-pin requirements.lock (hash-checked; the Dockerfile installs from it) after a dependency change
	$(VENV)/bin/pip-compile -q --generate-hashes --strip-extras --allow-unsafe --no-emit-find-links -o requirements.lock pyproject.toml

test-slow: install controlplane ## The long scenario tests (`make demo` end to end, SIGKILL failover with 1,000 jobs, the chaos soak)
	$(VENV)/bin/pytest -m slow $(PYTEST_ARGS)

dev-cluster: install controlplane ## Start a local control plane in .dev-cluster and print its KUBECONFIG
	@$(PY) -m sandbox.controlplane up --state-dir .dev-cluster

dev-cluster-down: ## Stop the local control plane started by `make dev-cluster`
	@$(PY) -m sandbox.controlplane down --state-dir .dev-cluster

demo: install controlplane ## Run the whole mission locally: control plane, simulators, controller, jobs completing
	$(PY) -m sandbox.demo

bench: install controlplane ## Benchmark against the seed's design; writes docs/benchmarks.md
	$(PY) -m bench

manifests: controlplane ## Render manifests/install.yaml from manifests/default, and the chart's shared files (tests keep them current)
	bash hack/render-manifests.sh
	bash hack/render-chart.sh

node: controlplane ## Build (or reuse) kubelet, kube-controller-manager, kube-scheduler, kube-proxy (cached per version)
	bash hack/node/build.sh

e2e: install controlplane node promtool helm ## Only the real single-node cluster (root + Docker): README install, failovers (docs/e2e.md)
	bash hack/e2e.sh

e2e-kind: install controlplane promtool helm ## The same e2e checks on a kind cluster (kind from its Go module; its node image pulled, or made here: docs/e2e.md)
	E2E_CLUSTER=kind bash hack/e2e.sh

kind-node-image: ## A kind node image made here, for machines that cannot pull kind's own (docs/e2e.md)
	bash hack/kind/node-image.sh

clean: ## Remove the venv and caches (not the control-plane binaries)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .dev-cluster

PHONY_EXTRA := test-image image image-sandbox lock node promtool helm chart
.PHONY: help install controlplane lint test test-unit test-slow dev-cluster dev-cluster-down demo bench manifests e2e e2e-kind kind-node-image clean $(PHONY_EXTRA)

# imgproc — `make run` serves the app (embedded, no servers); `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
PYTEST_ARGS ?=
# The unit and integration tiers run on one pytest-xdist worker per core, a test file per worker
# (`make test-unit XDIST=` runs them in one process, as when reading a failure's output).
XDIST ?= -n auto --dist loadfile
# The lock files describe the image's Python (Dockerfile: Debian bookworm, CPython 3.11, x86_64).
UV_VERSION := 0.13.9
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_36
# Keeps the pins that still satisfy pyproject.toml; `make lock LOCK_ARGS=--upgrade` moves all to the newest.
LOCK_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[operator]'
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[operator,test]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the service

run: install ## serve API + worker on http://127.0.0.1:8000 (PORT=... to change; SQLite, files in ./data)
	IMGPROC_PORT=$(PORT) $(BIN)/imgproc run

dev: install ## like run, reloading the API on code changes
	IMGPROC_PORT=$(PORT) IMGPROC_LOG_LEVEL=DEBUG $(BIN)/imgproc run --reload

worker: install ## run one Celery worker against the configured broker
	$(BIN)/imgproc worker

flower: install ## Celery Flower on http://127.0.0.1:5555/flower/
	$(BIN)/imgproc flower

migrate: install ## upgrade the database schema
	$(BIN)/imgproc migrate

system-packages: ## the Debian packages the tests and the local cluster need (apt, as root)
	scripts/system-packages

tools: system-packages ## build/locate the Kubernetes tools, the local cluster's parts, versitygw and the OpenTelemetry Collector (cached)
	scripts/k8s-tools --cluster >/dev/null
	scripts/versitygw >/dev/null
	scripts/otelcol >/dev/null

test: $(VENV)/.installed-test system-packages ## the whole suite (its own PostgreSQL, Redis, a real cluster; builds the tools it needs)
	scripts/test-suite -- $(PYTEST_ARGS)

# The tiers (tests/README.md): the folder under tests/ is the marker.
test-unit: $(VENV)/.installed-test ## the fast loop: tests/unit, no server (helm and the offline checks' cheap tools; ~1 min)
	scripts/k8s-tools --offline >/dev/null
	$(BIN)/pytest tests/unit $(XDIST) $(PYTEST_ARGS)

test-integration: $(VENV)/.installed-test system-packages ## tests/integration: real PostgreSQL, Redis, Sentinel, S3 servers and Chromium on loopback
	scripts/k8s-tools --offline >/dev/null
	scripts/versitygw >/dev/null
	$(BIN)/pytest tests/integration $(XDIST) $(PYTEST_ARGS)

test-k8s: $(VENV)/.installed-test tools ## tests/k8s: the kube-apiserver + etcd + helm test bed and the big Go tools, no cluster
	$(BIN)/pytest tests/k8s $(PYTEST_ARGS)

test-cluster: $(VENV)/.installed-test tools ## tests/cluster: the real single-node cluster and the image builds (root)
	$(BIN)/pytest tests/cluster $(PYTEST_ARGS)

cluster: tools ## a local single-node cluster (root) with the chart installed; prints the URL
	scripts/cluster up >/dev/null
	scripts/cluster deploy

cluster-dev: tools ## the skaffold loop on the local cluster (root): rebuild + redeploy on every change, Ctrl-C uninstalls
	scripts/cluster up >/dev/null
	eval "$$(scripts/cluster env)" && skaffold dev -p cluster

cluster-down: ## stop the local cluster and remove everything it made
	scripts/cluster down

LINTED := app worker operator tests bench scripts/*.py scripts/test-suite
lint: $(VENV)/.installed-test ## ruff check and ruff format --check
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

bench: $(VENV)/.installed-test ## image pipeline and end-to-end figures (both storage backends)
	$(BIN)/pip install -q -e '.[bench]'
	@# The end-to-end figures are printed even when a pipeline target is missed; make still fails then.
	$(BIN)/python -m bench.bench_pipeline; status=$$?; $(BIN)/python -m bench.bench_e2e && exit $$status

bench-peers: $(VENV)/.installed-test ## imgproc next to imgproxy and thumbor: images/s and sets of variants/s, CPU per image and per set (several min)
	scripts/system-packages --bench
	$(BIN)/python -m bench.bench_peers $(BENCH_PEERS_ARGS)

bench-observability: $(VENV)/.installed-test ## what metrics and tracing cost: CPU per image with neither, metrics, tracing (all spans, 1 in 10, no SQL/Redis spans) (~5 min)
	scripts/otelcol >/dev/null
	$(BIN)/python -m bench.bench_observability $(BENCH_OBSERVABILITY_ARGS)

bench-cluster: $(VENV)/.installed-test tools ## autoscaling on real pods: a 200-upload burst at min 1 and 0, KEDA simulated beside it (root, ~8 min)
	$(BIN)/python -m bench.bench_cluster $(BENCH_CLUSTER_ARGS)

reliability: $(VENV)/.installed-test ## fault, hostile-input and load figures in one table (~4 min)
	$(BIN)/python scripts/reliability.py $(RELIABILITY_ARGS)

reliability-cluster: $(VENV)/.installed-test tools ## the fault rows on real pods of the local cluster (root, ~8 min)
	$(BIN)/python scripts/reliability.py --cluster

loadtest: $(VENV)/.installed-test ## 1,000 uploads from 20 cookie users, 2 workers, on loopback
	$(BIN)/python -m bench.loadtest $(LOADTEST_ARGS)

screenshot: $(VENV)/.installed-test ## regenerate docs/screenshot.png (embedded stack + headless Chromium)
	$(BIN)/python scripts/screenshot.py

lock: | $(BIN)/python ## regenerate requirements.lock (+ requirements-build.lock) with hashes from pyproject.toml
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra operator --generate-hashes $(LOCK_TARGET) \
	  --custom-compile-command 'make lock' $(LOCK_ARGS) -o requirements.lock
	$(BIN)/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
	  | $(BIN)/uv pip compile --quiet - --generate-hashes $(LOCK_TARGET) \
	  --custom-compile-command 'make lock' $(LOCK_ARGS) -o requirements-build.lock

setup: $(VENV)/.installed-test ## the development environment: .venv (with the test extra) and .env with generated secrets
	scripts/compose setup

docker-up: ## Docker Compose: build, start, wait until healthy, print the URL (IMGPROC_HTTP_PORT, default 80)
	@[ -s .env ] || scripts/compose setup
	scripts/compose up

docker-logs: ## follow the Compose stack's logs (SERVICE=api to pick one)
	scripts/compose logs $(SERVICE)

docker-down: ## stop the Compose stack (tasks, results and database stay in its volumes)
	scripts/compose down

docker-purge: ## stop the Compose stack and remove its volumes (every task, result and the database)
	scripts/compose purge

test-compose: $(VENV)/.installed-test system-packages ## the Compose tier: make docker-up on a free port, client flow, worker kill, restart (~5 min)
	$(BIN)/pytest tests/compose $(PYTEST_ARGS)

images: ## build the local base, app, PostgreSQL and Redis images with buildah (scripts/images)
	scripts/images all

clean: ## remove the virtualenv, ./data and caches
	rm -rf $(VENV) data .pytest_cache .hypothesis .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install run dev worker flower migrate system-packages tools test test-unit test-integration test-k8s test-cluster cluster cluster-dev cluster-down lint bench bench-peers bench-observability bench-cluster reliability reliability-cluster loadtest screenshot lock images clean setup docker-up docker-logs docker-down docker-purge test-compose

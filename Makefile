# imgproc — `make run` serves the app (embedded, no servers); `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

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

tools: ## build/locate helm, etcd, kube-apiserver and versitygw for the tests (cached)
	scripts/k8s-tools >/dev/null
	scripts/versitygw >/dev/null

test: $(VENV)/.installed-test tools ## the whole suite (starts its own PostgreSQL, Redis, kube-apiserver)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test ## ruff
	$(BIN)/ruff check app worker operator tests bench

bench: $(VENV)/.installed-test ## image pipeline and end-to-end figures (both storage backends)
	$(BIN)/pip install -q -e '.[bench]'
	@# The end-to-end figures are printed even when a pipeline target is missed; make still fails then.
	$(BIN)/python -m bench.bench_pipeline; status=$$?; $(BIN)/python -m bench.bench_e2e && exit $$status

reliability: $(VENV)/.installed-test ## fault, hostile-input and load figures in one table (~4 min)
	$(BIN)/python scripts/reliability.py $(RELIABILITY_ARGS)

loadtest: $(VENV)/.installed-test ## 1,000 uploads from 20 cookie users, 2 workers, on loopback
	$(BIN)/python -m bench.loadtest $(LOADTEST_ARGS)

screenshot: $(VENV)/.installed-test ## regenerate docs/screenshot.png (embedded stack + headless Chromium)
	$(BIN)/python scripts/screenshot.py

clean: ## remove the virtualenv, ./data and caches
	rm -rf $(VENV) data .pytest_cache .hypothesis .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install run dev worker flower migrate tools test lint bench reliability loadtest screenshot clean

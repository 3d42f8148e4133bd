# cryptomon developer entry points. The README's two commands: `make up` and `make test`.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/cryptomon
VENV := $(CACHE)/venv
PY := $(VENV)/bin/python
export CRYPTOMON_CACHE := $(CACHE)
export PATH := $(VENV)/bin:$(PATH)
PYTEST_ARGS ?=

.PHONY: venv cache lint unit integration test
venv:
	@scripts/bootstrap-venv.sh

cache: venv
	$(PY) scripts/fetch_artifacts.py

lint: venv
	ruff check services flink_jobs tests scripts roles benchmarks

unit: venv
	$(PY) -m pytest -m "not integration and not molecule" $(PYTEST_ARGS)

integration: cache
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

test: lint unit integration

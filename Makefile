# cryptomon developer entry points. The README's two commands: `make up` and `make test`.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/cryptomon
VENV := $(CACHE)/venv
PY := $(VENV)/bin/python
INVENTORY ?= inventory/sandbox
export CRYPTOMON_CACHE := $(CACHE)
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_FORCE_COLOR ?= 0
PYTEST_ARGS ?=

.PHONY: help system-deps venv cache image deps lint unit integration molecule test
help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

system-deps:  ## Debian packages: Java 17, Maven, Docker engine, debootstrap, Chromium
	@scripts/install-system-deps.sh

venv: system-deps  ## controller virtualenv (outside the repo, reused between clones)
	@scripts/bootstrap-venv.sh

cache: venv  ## fill and verify the artifact cache (Kafka, Flink wheels, connector, services)
	@$(PY) scripts/fetch_artifacts.py

image: system-deps  ## Docker engine + local Debian systemd base image
	@scripts/base-image.sh >/dev/null

deps: venv cache image

lint: venv  ## ruff, yamllint, ansible-lint (production profile)
	ruff check .
	yamllint --strict .
	ansible-lint

unit: venv  ## tests that need no services
	$(PY) -m pytest -m "not integration and not molecule" $(PYTEST_ARGS)

integration: cache  ## tests against real Kafka/Flink processes started from the cache
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

molecule: cache image  ## converge, idempotence and verify in a systemd container
	CRYPTOMON_BASE_IMAGE=$$(scripts/base-image.sh) molecule test

test: deps lint unit integration molecule  ## everything CI runs

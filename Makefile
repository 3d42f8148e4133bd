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

.PHONY: help system-deps venv cache image deps lint unit integration molecule molecule-cluster test up down status logs submit-flink shell-jobmanager
help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

system-deps:  ## Debian packages of every tier: Java 17, Maven, Docker engine, debootstrap, Chromium, promtool
	@scripts/install-system-deps.sh all

# One tier's Debian packages (scripts/install-system-deps.sh says which).
system-deps-%:
	@scripts/install-system-deps.sh $*

venv:  ## controller virtualenv (outside the repo, reused between clones)
	@scripts/bootstrap-venv.sh

cache: venv system-deps-cache  ## fill and verify the artifact cache (Kafka, Flink wheels, connector, services)
	@$(PY) scripts/fetch_artifacts.py

image: system-deps-molecule  ## Docker engine + local Debian systemd base image
	@scripts/base-image.sh >/dev/null

deps: venv cache image

lint: venv  ## ruff, yamllint, ansible-lint (production profile)
	ruff check .
	yamllint --strict .
	ansible-lint

unit: venv system-deps-unit  ## tests that need no services
	$(PY) -m pytest -m "not integration and not molecule" $(PYTEST_ARGS)

integration: cache system-deps-integration  ## tests against real Kafka/Flink processes started from the cache
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

molecule: cache image  ## converge, idempotence and verify in a systemd container
	CRYPTOMON_BASE_IMAGE=$$(scripts/base-image.sh) molecule test

# Not part of `make test`: ~45 min on 2 cores would take it past its 75-minute budget.
# CRYPTOMON_DRILLS=kill-taskmanager,scale-out runs only those drills.
molecule-cluster: cache image  ## 8 systemd containers: 3 Kafka, JobManager, 2 TaskManagers, services; drills under load
	CRYPTOMON_BASE_IMAGE=$$(scripts/base-image.sh) molecule test -s cluster

test: deps lint unit integration molecule  ## everything CI runs

# --- The local stack (inventory/sandbox: three systemd containers) ---------------------------
up: deps  ## start the sandbox hosts and converge site.yml on them
	scripts/sandbox.sh up
	ansible-playbook -i $(INVENTORY) site.yml
	@scripts/sandbox.sh info

down:  ## remove the sandbox hosts
	@scripts/sandbox.sh down

status:  ## systemctl status of every cryptomon unit in the sandbox
	@for h in cm-kafka cm-flink cm-services; do \
	  echo "== $$h"; docker exec $$h systemctl --no-pager list-units 'kafka*' 'flink*' 'cryptomon*' || true; done

UNIT ?= cryptomon-producer@binance
logs:  ## journalctl of one unit in the sandbox (UNIT=cryptomon-producer@binance)
	docker exec cm-services journalctl -u $(UNIT) --no-pager -n 100

FLINK_JOB ?=
submit-flink:  ## (re)submit one Flink job: make submit-flink FLINK_JOB=anomaly_detector.py
	@test -n "$(FLINK_JOB)" || { echo "usage: make submit-flink FLINK_JOB=<file or name>"; exit 2; }
	ansible-playbook -i $(INVENTORY) site.yml --tags jobs -e flink_jobs_only=$(FLINK_JOB)

shell-jobmanager:  ## a shell on the Flink JobManager host of the sandbox
	docker exec -it cm-flink bash -l

# driftrec — one command surface. `make help` lists the targets; CI calls the same ones.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DRIFTREC := $(VENV)/bin/driftrec
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3
DEMO_SPEED ?= 2000
PYTEST_ARGS ?=
# The folders installed as driftrec.<name>; the root conftest.py runs their doctests.
PACKAGES := core models features producers online_update stream ops

.DEFAULT_GOAL := help
.PHONY: help setup system-deps services up down status test unit stress lint typecheck bench demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip check
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install driftrec with its dev extras (quick when nothing changed)

system-deps: ## install redis-server, Java, Maven and Chromium (browser test) where missing (apt)
	@bash ops/scripts/install-system-deps.sh

services: setup system-deps ## start local Kafka and Redis (idempotent)
	$(DRIFTREC) up

up: services ## alias of services

down: ## stop the demo processes and the local Kafka and Redis
	@test -x $(DRIFTREC) && $(DRIFTREC) demo --stop && $(DRIFTREC) down || true

status: setup ## show the local services
	$(DRIFTREC) status

test: services ## install what is missing, start the services, run every test (but stress)
	$(PY) -m pytest $(PACKAGES) tests -m "not stress" $(PYTEST_ARGS)

unit: setup ## unit tests only (no Kafka/Redis needed)
	$(PY) -m pytest $(PACKAGES) tests -m "not integration and not stress" $(PYTEST_ARGS)

STRESS_ROUNDS ?= 20
stress: services ## crash, rebalance and Redis-restart scenarios, STRESS_ROUNDS rounds under CPU load
	STRESS_ROUNDS=$(STRESS_ROUNDS) $(PY) -m pytest tests/stream/test_stress.py -m stress -x $(PYTEST_ARGS)

lint: setup ## ruff, and the import-linter contracts that keep the layers apart
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: setup ## mypy (strict on the packages)
	@# mypy cannot follow setuptools' editable import hook: give it the installed layout.
	@mkdir -p $(VENV)/typecheck/driftrec
	@for d in $(PACKAGES); do ln -sfn $(CURDIR)/$$d $(VENV)/typecheck/driftrec/$$d; done
	$(VENV)/bin/mypy

bench: services ## every benchmark, figures and ratios
	$(DRIFTREC) bench replay --events 200000
	$(DRIFTREC) bench train

demo: services ## start worker, embedder and server, replay the drifting log at a watchable speed
	$(DRIFTREC) demo --speed $(DEMO_SPEED)

clean: down ## stop services and remove local state (.driftrec)
	rm -rf .driftrec

# Everything a newcomer needs: `make run` and `make test` (each sets itself up first).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
DB     ?= sqlite:///unstuck.db
PYTEST_ARGS ?=

REPORT ?= reports

.PHONY: help setup run serve scenarios-full test test-slow lint bench loadtest clean

help:
	@echo "make run    - set up .venv, run the quick scenario profile against an embedded CSMS, print the HTML report's path"
	@echo "make serve  - set up .venv and start the CSMS alone on SQLite ($(DB)) in lab mode; Ctrl-C stops it"
	@echo "make test   - set up .venv and run the fast test tier"
	@echo "make test-slow - the slow tier: mutations, crash safety, the quick profile, cluster, locust, schemathesis"
	@echo "make scenarios-full - the full profile (chaos with 200 charge points); DB=postgresql+psycopg://... for PostgreSQL"
	@echo "make lint   - ruff (rules and format) and mypy"
	@echo "make bench  - benchmark: 100 and 1000 raw OCPP connections against a fresh CSMS"
	@echo "make loadtest - locust: a fresh CSMS, USERS=500 RATE=50 TIME=60s (WORKERS=2: distributed), reports/load* and the oracle's summary"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/unstuck-scenarios run --profile quick --report '$(REPORT)'

# Lab mode for a bench: any charge point id and any id tag (both say so loudly at start-up).
serve: $(STAMP)
	$(BIN)/csms serve --db '$(DB)' --allow-unknown-chargers --accept-unknown-id-tags

scenarios-full: $(STAMP)
	$(BIN)/unstuck-scenarios run --profile full --report '$(REPORT)' $(if $(filter postgresql%,$(DB)),--db '$(DB)')

# Three test files at a time (pytest-xdist, one file per worker): most tests wait on real servers.
TEST_JOBS ?= 3

# The tiers are split by tests/conftest.py:SLOW_TIER.
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile -m "not slow_tier" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile -m slow_tier $(PYTEST_ARGS)

LINTED := csms ocppj simulator scenarios loadtests benchmarks tests

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/python -m mypy

bench: $(STAMP)
	$(BIN)/python -m loadtests.bench --cps 100 --duration 15
	$(BIN)/python -m loadtests.bench --cps 1000 --duration 15

# Locust against a fresh `csms serve` (SQLite in a temporary folder); exits with locust's exit code.
USERS   ?= 500
RATE    ?= 50
TIME    ?= 60s
WORKERS ?= 0
loadtest: $(STAMP)
	$(BIN)/python -m loadtests.run --users $(USERS) --rate $(RATE) --time $(TIME) --workers $(WORKERS) --report '$(REPORT)'

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .mypy_cache

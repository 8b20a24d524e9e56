# unsubscribe-sync-operator: `make demo` runs the whole flow locally, `make test` passes the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2
# Extras installed into the venv; CI adds `actionlint` (EXTRAS=test,actionlint), whose install downloads
# the actionlint binary from GitHub. REQUIRE_ACTIONLINT=1 makes `lint` fail when actionlint is missing.
EXTRAS ?= test
REQUIRE_ACTIONLINT ?=

.PHONY: help venv lint typecheck test test-fast demo bench soak e2e services clean

help:
	@echo "make demo   - sandbox Salesforce + worker (SQLite) + a push + a nightly run, then a report"
	@echo "make test   - lint, type-check and run the test suite (installs what it needs)"
	@echo "make bench  - run the benchmarks under bench/"
	@echo "make soak   - run the long soak test and write docs/RELIABILITY.md"
	@echo "make e2e    - end-to-end tests on a kind cluster (skipped without one)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	@touch $(STAMP)

venv: $(STAMP)

services:
	bash scripts/test-services.sh

lint: venv
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/hadolint Containerfile
	@actionlint="$$(command -v $(VENV)/bin/actionlint || command -v actionlint || true)"; \
	shellcheck="$$(command -v $(VENV)/bin/shellcheck || command -v shellcheck || true)"; \
	if [ -n "$$actionlint" ]; then \
	  echo "$$actionlint -shellcheck=$$shellcheck"; "$$actionlint" -shellcheck="$$shellcheck"; \
	elif [ "$(REQUIRE_ACTIONLINT)" = 1 ]; then \
	  echo "lint: actionlint is required (pip install -e '.[actionlint]')" >&2; exit 1; \
	else \
	  echo "lint: actionlint not installed, workflows not linted (pip install -e '.[actionlint]' needs github.com)"; \
	fi

typecheck: venv
	$(VENV)/bin/mypy

test: lint typecheck services
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --durations=15 -m "not e2e and not soak" $(PYTEST_ARGS)

test-fast: venv
	$(VENV)/bin/pytest -x -q -m "not e2e and not soak and not slow" $(PYTEST_ARGS)

demo: venv
	$(VENV)/bin/unsubscribe-sync demo

bench: venv
	$(PY) -m bench

soak: venv services
	$(VENV)/bin/pytest -m soak -p no:randomly tests/soak $(PYTEST_ARGS)

e2e: venv
	$(VENV)/bin/pytest -m e2e tests/e2e $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# Set-up is part of every target: a fresh machine needs only python3 (3.11+) and make.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo run test lint format bench bench-dashboard prometheus clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## the daemon on embedded defaults against the sandbox workspace, one scripted declare
	$(BIN)/chatops demo

run: $(STAMP)  ## the daemon, configured from the environment
	$(BIN)/chatops run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

prometheus:  ## Debian's prometheus + promtool for the tests, cached in .cache/prometheus (apt-get download)
	scripts/fetch-prometheus >/dev/null

test: lint prometheus  ## lint, type-check, then the whole test suite
	$(BIN)/pytest

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) bench-dashboard
	$(BIN)/python benchmarks/declare.py
	$(BIN)/python benchmarks/timeline_ingest.py
	$(BIN)/python benchmarks/timeline_query.py

bench-dashboard: $(STAMP) prometheus  ## /dashboard cold/warm latency and RSS against a real Prometheus
	$(BIN)/python benchmarks/dashboard.py

clean:
	rm -rf $(VENV) .chatops .cache .mypy_cache .pytest_cache .ruff_cache

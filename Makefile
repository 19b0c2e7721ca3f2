# Two commands on a fresh machine: `make run` and `make test` (only python3.11 and make needed).
PYTHON ?= python3.11
UV_VERSION ?= 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON := $(PYTHON)
export UV_LINK_MODE := copy
# Dependencies installed with their bytecode (.pyc): without it every process compiles ~3,000 modules
# on import when .pyc files cannot be written (PYTHONDONTWRITEBYTECODE, read-only venv), which made
# `import oil_analysis.definitions` 3x slower for each CLI call, run worker and sensor (bench/README.md).
export UV_COMPILE_BYTECODE := 1
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# `make materialize CLIENT=emin [CONFIG_JSON='{...}']`, `make backfill CLIENTS=cda` (default: every client).
CLIENT ?= cda
CLIENTS ?=
CONFIG_JSON ?=

.PHONY: run test test-timing ui api materialize backfill check-defs lint format install demo bench summary clean

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

install: $(UV)
	$(UV) sync --frozen --quiet
	@mkdir -p $(DAGSTER_HOME) && cp -n dagster.yaml $(DAGSTER_HOME)/dagster.yaml 2>/dev/null || true

run: install
	$(UV) run --frozen python -m oil_analysis run

summary: install
	$(UV) run --frozen python -m oil_analysis summary

test: install
	$(UV) run --frozen pytest -q

test-timing: install
	$(UV) run --frozen pytest -q -m timing

ui: install
	$(UV) run --frozen dg dev -w workspace.yaml -h 127.0.0.1 -p 3000

# One client, every asset, in this process; recorded in the instance `make ui` shows.
materialize: install
	$(UV) run --frozen dg launch --assets '*' --partition $(CLIENT) $(if $(CONFIG_JSON),--config-json '$(CONFIG_JSON)')

# One run per client through workspace.yaml; waits and exits non-zero naming the failed run ids.
backfill: install
	$(UV) run --frozen python -m oil_analysis backfill $(if $(CLIENTS),--clients $(CLIENTS))

check-defs: install
	$(UV) run --frozen dg check defs

# The read API over the published gold (OIL_API_HOST / OIL_API_PORT, default 127.0.0.1:8000).
api: install
	$(UV) run --frozen python -m oil_analysis.api serve

lint: install
	$(UV) run --frozen ruff check oil_analysis oil_analysis_tests bench
	$(UV) run --frozen ruff format --check oil_analysis oil_analysis_tests bench

format: install
	$(UV) run --frozen ruff check --fix oil_analysis oil_analysis_tests bench
	$(UV) run --frozen ruff format oil_analysis oil_analysis_tests bench

demo: install
	$(UV) run --frozen python -m oil_analysis.demo --out data

bench: install
	$(UV) run --frozen python bench/run_bench.py

clean:
	rm -rf data/silver data/gold data/bronze/_registry data/bronze/_quarantine

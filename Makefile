# Everything a fresh machine with Python 3.11 needs: `make train` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=
# The slow tiers wait on servers, freezes and restarts as much as they compute: three test
# processes, each taking a whole group at a time (a module, or every module of the one full
# training; tests/conftest.py), the longest groups first (pytest-xdist's loadgroup).
PARALLEL ?= -n 3 --dist loadgroup --no-loadscope-reorder

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser postgres netns train test test-fast test-integration test-system lint docs bench clean stack-up stack-down stack-status

# uv installs the same resolution as pip in under half the time (81 s against 196 s on a fresh
# 2-core machine: ADR 0094); pip does it where uv cannot. Compiled, as pip does: where
# PYTHONDONTWRITEBYTECODE is set, nothing compiles later and every import parses its source.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev,docs]' || \
		$(BIN)/python -m pip install -q -e '.[dev,docs]'
	touch $@

install: $(VENV)/.installed

browser:  ## Debian's chromium, for the drawing page's browser test (Playwright drives it)
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }

postgres:  ## Debian's PostgreSQL server, for the tests that run on it (started by the fixtures)
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q postgresql; }

netns:  ## iproute2's `ip`, for the test whose Dask workers run on other hosts (network namespaces)
	@command -v ip >/dev/null || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q iproute2; }

train: install  ## run the training flow end to end (ARGS="--epochs 3 ...")
	$(BIN)/mnist train $(ARGS)

test: lint browser postgres netns  ## lint, then the whole test suite
	$(BIN)/pytest $(PARALLEL) $(PYTEST_ARGS)

test-fast: install  ## the unit tier: every module on small data, no servers (about a minute)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: install postgres netns  ## real MLflow, Prefect and PostgreSQL servers, real training
	$(BIN)/pytest tests/integration $(PARALLEL) $(PYTEST_ARGS)

test-system: install browser postgres  ## whole commands, the browser page, the stack, faults
	$(BIN)/pytest tests/system $(PARALLEL) $(PYTEST_ARGS)

lint: install  ## style, types, the layers' import contracts, the docs site
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	@# pyright (31 s) and the docs build (12 s) at once, on two cores; either failing fails lint
	$(BIN)/pyright & types=$$!; \
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict --quiet \
		--site-dir $(VENV)/site; docs=$$?; wait $$types && exit $$docs

docs: install  ## the documentation site on http://127.0.0.1:8000/
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs serve

stack-up: install postgres  ## PostgreSQL, Prefect and MLflow servers, workers (app/stack/)
	$(BIN)/python -m app.stack up

stack-down:  ## stop everything stack-up started (the state stays in .stack/)
	$(BIN)/python -m app.stack down

stack-status:  ## each piece of the stack: its state, uptime and restarts
	$(BIN)/python -m app.stack status

clean:
	rm -rf $(VENV) mlruns/[0-9]* mlruns/models mlflow.db .pytest_cache

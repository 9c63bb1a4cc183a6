# The two commands a newcomer runs: `make run` and `make test`. Everything else supports them;
# `make check` is the quick loop before a commit (lint, types, import contracts, unit tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# xterm.js and its fit addon for the console's terminal: pinned npm packages fetched at build time
# (npm pack, cached in .cache/npm, sha256-checked), never committed and never from a CDN.
CONSOLE_ASSETS := appliance/console/static/vendor/packages.json
# Two build tests that each spend minutes building what the e2e release build also builds (the
# Debian closure installed offline; the base image built twice for one digest). They pass when
# named (`make build-tests`) but do not fit `make test`'s 45-minute CI budget yet.
SLOW_BUILD_TESTS := tests/integration/bundles/build/test_offline_install.py tests/integration/bundles/build/test_base_image.py

.PHONY: run test check lint typecheck unit integration browser e2e build-tests security bench clean

# Start the control plane with embedded PostgreSQL on http://127.0.0.1:3000. The server publishes
# the appliance Terraform provider into its mirror itself (PyInstaller on first start, then cached).
run: $(VENV)/.run-installed $(CONSOLE_ASSETS)
	@dev/system-packages.sh
	$(BIN)/appliance server

# Lint, type-check and run every test (unit, integration, browser) against real components.
test: $(VENV)/.dev-installed $(CONSOLE_ASSETS)
	@dev/system-packages.sh --test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/ansible-lint --profile production playbooks/
	dev/run-tests.sh tests $(SLOW_BUILD_TESTS:%=--ignore=%)

# Under a minute on two cores: no PostgreSQL, no browser, no playbooks. Run it before every commit.
check: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/ansible-lint --profile production playbooks/

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

unit integration browser e2e: $(VENV)/.dev-installed $(CONSOLE_ASSETS)
	$(BIN)/pytest tests/$@

build-tests: $(VENV)/.dev-installed
	@dev/system-packages.sh --test
	$(BIN)/pytest $(SLOW_BUILD_TESTS)

# One test per finding of the security review (issue 12), wherever in tests/ it lives.
security: $(VENV)/.dev-installed
	@dev/system-packages.sh --test
	$(BIN)/pytest -m security tests

# Throughput of GET /api/v2/users/me under gunicorn, as a ratio to a bare Flask endpoint.
bench: $(VENV)/.dev-installed
	@dev/system-packages.sh
	@command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
	$(BIN)/python benchmarks/api_throughput.py
	$(BIN)/python benchmarks/bundle_verify.py
	$(BIN)/python benchmarks/mirror_init.py
	$(BIN)/python benchmarks/build_overhead.py
	$(BIN)/python benchmarks/sandbox_overhead.py
	$(BIN)/python benchmarks/image_import.py
	$(BIN)/python benchmarks/workspace_start.py
	$(BIN)/python benchmarks/relay.py
	$(BIN)/python benchmarks/connections.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(CONSOLE_ASSETS): bundles/build/console_assets.py | $(BIN)/python
	@dev/system-packages.sh  # npm, on a fresh machine, before it is needed
	$(BIN)/python -m bundles.build.console_assets

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[build]'  # build: PyInstaller and tf, for the provider
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.run-installed

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache *.egg-info

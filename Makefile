# crashd: `make run` starts the server on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
CHROMIUM ?= /usr/bin/chromium
# Breakpad's source (for tests/test_symbols_api.py, which builds the real symupload from it),
# from the npm package minidump; fetched into .tools/ (ignored by git) by `make test`.
BREAKPAD_NPM := minidump@0.26.0
BREAKPAD_SRC ?= $(CURDIR)/.tools/breakpad/node_modules/minidump/deps/breakpad/src
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint install install-dev chromium breakpad-src bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installed once, again only when pyproject.toml changes: each stamp is newer than the
# pyproject.toml it installed (`make run` starts without reinstalling; `make clean` forgets both).
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

run: install
	$(BIN)/crashd serve --host $(HOST) --port $(PORT)

# The browser tests (tests/test_browser.py) drive Debian's Chromium through Playwright; the
# browser comes from apt, never from `playwright install`.
chromium:
	@test -x $(CHROMIUM) || { echo "installing chromium and chromium-driver for the browser tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; }

# Without npm (or the registry) the symupload tests skip, and say so in the summary.
breakpad-src:
	@test -f $(BREAKPAD_SRC)/tools/linux/symupload/sym_upload.cc || { \
		if command -v npm >/dev/null; then echo "fetching Breakpad's source ($(BREAKPAD_NPM)) into .tools/"; \
		mkdir -p .tools/breakpad && (cd .tools/breakpad && npm install --no-save --no-audit --no-fund \
			--ignore-scripts --loglevel=error $(BREAKPAD_NPM) >/dev/null) \
		|| echo "WARNING: could not fetch Breakpad's source: the symupload tests will be skipped"; \
		else echo "WARNING: npm not found: the Breakpad symupload tests will be skipped"; fi; }

# Tests run in PYTEST_WORKERS processes (pytest-xdist): most of a test's time is waiting on
# servers, workers and subprocesses, so two processes on two cores halve the wall time.
PYTEST_WORKERS ?= 2

test: install-dev chromium breakpad-src
	CRASHD_BREAKPAD_SRC=$${CRASHD_BREAKPAD_SRC:-$(BREAKPAD_SRC)} $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# ruff (lint, import order) and mypy (types) with the settings in pyproject.toml; .ci/run runs it before the tests.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install-dev
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) crashd-data .pytest_cache tests/artifacts .tools

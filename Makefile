# crashd: `make run` starts the server on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test install install-dev chromium bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

run: install
	$(BIN)/crashd serve --host $(HOST) --port $(PORT)

# The browser tests (tests/test_browser.py) drive Debian's Chromium through Playwright; the
# browser comes from apt, never from `playwright install`.
chromium:
	@test -x $(CHROMIUM) || { echo "installing chromium and chromium-driver for the browser tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; }

test: install-dev chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-dev
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) crashd-data .pytest_cache tests/artifacts

# `make demo` and `make test` work from a clean clone: each does the setup it needs first (idempotent).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INDEX_DIR ?= var/index
HOST ?= 127.0.0.1
PORT ?= 8000
# Models come from PyPI packages; nothing may be fetched from a model hub.
export HF_HUB_OFFLINE := 1

.PHONY: setup index demo test lint browser clean

setup: $(VENV)/.installed
	$(BIN)/python scripts/prepare_model.py --all

# torch is installed first and pinned: 2.13.0 is the CPU build (a plain `torch` would pull a multi-GB CUDA build).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,eval,ray,train]'
	touch $@

index: setup
	$(BIN)/python scripts/build_index.py --catalog data/demo/catalog.jsonl --index-dir $(INDEX_DIR)

demo: index
	@echo "Serving on http://$(HOST):$(PORT)  (try /publications/pcns-plan-b-like-minded-internationalism/related)"
	$(BIN)/python scripts/serve.py --index-dir $(INDEX_DIR) --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the engine's layers (pyproject.toml [tool.importlinter])

# The browser, Hugo, WordPress and nginx tests use Debian's Chromium (never a downloaded browser), hugo,
# php-cli and nginx;
# as root, install whichever is missing. axe-core (the accessibility checks) comes from npm, pinned by its lock file.
DEBIAN_TOOLS := chromium:chromium hugo:hugo php:php-cli nginx:nginx
browser:
	@missing=""; for pair in $(DEBIAN_TOOLS); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's$$missing for the browser, Hugo and WordPress tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "note: missing$$missing and not root: the tests that need them will be skipped"; fi
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/browser --no-audit --no-fund --silent; \
	else echo "note: no npm: the accessibility checks will be skipped"; fi

test: setup lint browser
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) var models/*/sentence-transformer *.egg-info

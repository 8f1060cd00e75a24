# triggerpost: `make run` to start the service, `make test` to check it.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# `make fuzz`: cases and seed (the test suite runs a few hundred with its own seed)
FUZZ_COUNT ?= 2300
FUZZ_SEED ?= 1
# headless Chromium for the browser tests (Debian's package; no browser downloads)
CHROMIUM := /usr/bin/chromium
# Playwright drives that Chromium: never a browser build of its own
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
# axe-core for the browser tests' accessibility checks (a test tool: the app never serves it)
AXE := var/npm/node_modules/axe-core/axe.min.js
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# the Shopify Web Pixel extension (its npm packages only for its tests: Shopify's CLI bundles it)
PIXEL := extensions/triggerpost-pixel
# npm from Debian when the machine has none
ENSURE_NPM := command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q npm \
		|| ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q npm)

.PHONY: help run test lint format typecheck pytest pixel bench bench-render bench-pipeline fuzz clean

help: ## Show this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --editable .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --editable . --group dev
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed ## Set up and start everything on embedded defaults (PORT=8000)
	$(BIN)/triggerpost run --port $(PORT)

test: lint typecheck pytest pixel ## Set up, then lint, type-check and run every test

lint: $(VENV)/.dev-installed ## ruff, the layout's import contracts, declared dependencies
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/deptry .

format: $(VENV)/.dev-installed ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(VENV)/.dev-installed ## mypy on the four packages
	$(BIN)/mypy

$(CHROMIUM):
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium \
		|| ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium)

$(AXE):
	$(ENSURE_NPM)
	npm install --silent --no-save --no-audit --no-fund --prefix var/npm axe-core@4

pytest: $(VENV)/.dev-installed $(CHROMIUM) $(AXE) ## The test suite (PostgreSQL too when TEST_DATABASE_URL is set)
	$(BIN)/pytest

# the versions package-lock.json pins, installed when it changes
$(PIXEL)/node_modules/.installed: $(PIXEL)/package-lock.json
	$(ENSURE_NPM)
	npm ci --silent --no-audit --no-fund --prefix $(PIXEL)
	touch $@

pixel: $(PIXEL)/node_modules/.installed ## The Shopify pixel: Node tests, type check against its package's types
	cd $(PIXEL) && npm test --silent && npm run --silent typecheck

bench: $(VENV)/.dev-installed ## Intake benchmark against gunicorn on loopback
	$(BIN)/python bench/intake.py

bench-render: $(VENV)/.dev-installed ## Email rendering against MRML per email and Node's mjml
	@command -v npm >/dev/null && [ -d var/bench-node/node_modules/mjml ] \
		|| npm install --silent --prefix var/bench-node mjml@4 \
		|| echo "(Node's mjml could not be installed: measured without it)"
	$(BIN)/python bench/render.py

bench-pipeline: $(VENV)/.dev-installed ## Webhooks to sent emails through real workers, 10 k and 1 M contacts
	$(BIN)/python bench/pipeline.py

fuzz: $(VENV)/.run-installed ## Webhook fuzzer, FUZZ_COUNT cases (PostgreSQL too when TEST_DATABASE_URL is set)
	@status=0; \
	$(BIN)/python bench/fuzz.py --seed $(FUZZ_SEED) --count $(FUZZ_COUNT) || status=1; \
	if [ -n "$$TEST_DATABASE_URL" ]; then \
		$(BIN)/python bench/fuzz.py --seed $(FUZZ_SEED) --count $(FUZZ_COUNT) \
			--database-url "$$TEST_DATABASE_URL" || status=1; \
	fi; \
	exit $$status

clean: ## Remove the virtualenv and caches (keeps ./var, your data)
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .import_linter_cache

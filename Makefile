# One target per task; CI (.ci/run) uses the same ones.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: dev test lint format clean

$(BIN)/tokenrelay: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# the official openai npm SDK for tests/node/ (tests/test_node_sdk.py), from the lock file
NODE_TEST_DEPS := tests/node/node_modules/.installed
$(NODE_TEST_DEPS): tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --silent
	touch $@

## dev: gateway + worker + mock model in one process (no OpenAI key, no Redis needed)
dev: $(BIN)/tokenrelay
	$(BIN)/tokenrelay dev --port $(PORT)

## test: lint, type-check, the JS unit tests and the whole test suite
##       (needs Redis on 127.0.0.1:6379, node and npm, and /usr/bin/chromium for the browser tests)
test: lint $(NODE_TEST_DEPS)
	node --test web/tests/
	$(BIN)/pytest -q

lint: $(BIN)/tokenrelay
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(BIN)/tokenrelay
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

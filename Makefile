# One target per task; CI (.ci/run) uses the same ones.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# runs a command; its output shows only if it fails
QUIETLY := scripts/quietly

.PHONY: dev test lint format clean example

# quiet unless it fails (then pip's whole output): before `make dev`'s banner, pip's chatter and
# setuptools' warnings read like errors
$(BIN)/tokenrelay: pyproject.toml
	@$(QUIETLY) $(PYTHON) -m venv $(VENV)
	@$(QUIETLY) $(BIN)/pip install --upgrade pip
	@$(QUIETLY) $(BIN)/pip install -e ".[dev]"
	@touch $@

# the official openai npm SDK for tests/node/ (tests/test_node_sdk.py), from the lock file
NODE_TEST_DEPS := tests/node/node_modules/.installed
$(NODE_TEST_DEPS): tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --silent
	touch $@

# the React example (examples/react-chat/): its npm packages from the lock file, then its build
EXAMPLE_DIR := examples/react-chat
EXAMPLE_DEPS := $(EXAMPLE_DIR)/node_modules/.installed
$(EXAMPLE_DEPS): $(EXAMPLE_DIR)/package.json $(EXAMPLE_DIR)/package-lock.json
	npm ci --prefix $(EXAMPLE_DIR) --no-audit --no-fund --silent
	touch $@

$(EXAMPLE_DIR)/dist/index.html: $(EXAMPLE_DEPS) $(EXAMPLE_DIR)/build.mjs $(EXAMPLE_DIR)/index.html $(EXAMPLE_DIR)/src/app.jsx
	npm run --prefix $(EXAMPLE_DIR) --silent build

## example: build the React example into examples/react-chat/dist
##          (tokenrelay dev serves it at /examples/react-chat/)
example: $(EXAMPLE_DIR)/dist/index.html

## dev: gateway + worker + mock model in one process (no OpenAI key, no Redis needed)
dev: $(BIN)/tokenrelay
	$(BIN)/tokenrelay dev --port $(PORT)

## test: lint, type-check, the JS unit tests, the React example's build and the whole test suite
##       (needs Redis on 127.0.0.1:6379, node and npm, and /usr/bin/chromium for the browser tests)
test: lint $(NODE_TEST_DEPS) example
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

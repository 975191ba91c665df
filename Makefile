# The two commands: `make run` (privca on its embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint unit conformance fuzz bench migration clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/privca serve --data-dir data

lint: $(STAMP)
	$(BIN)/ruff check server protocols tests conformance bench
	$(BIN)/ruff format --check server protocols tests conformance bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest

conformance: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash conformance/run_all.sh

test: lint unit conformance

# The long fuzzing profile (tests/fuzz): over 1,000,000 cases across every edge parser.
fuzz: $(STAMP)
	PRIVCA_FUZZ=long $(BIN)/python -m pytest tests/fuzz -o timeout=0 -p no:cacheprovider

# Regenerate a migration after changing server/store models: make migration MSG="what changed" REV=0005
migration: $(STAMP)
	$(BIN)/python -m server.store.makemigration "$(MSG)" "$(REV)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

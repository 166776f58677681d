# Carina: `make run` starts it, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.carina-installed
SHARED_DATA ?= $(abspath ../shared/data)

.PHONY: run test test-slow lint format bench system-deps clean

$(STAMP): pyproject.toml scripts/system-deps.sh
	bash scripts/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,deid,postgres]'
	touch $(STAMP)

DATA_DIR ?= data

run: $(STAMP)
	bash scripts/run.sh $(DATA_DIR)

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: lint
	CARINA_SHARED_DATA=$(SHARED_DATA) $(BIN)/python -m pytest -m "not slow and not bench" \
		--cov --cov-report=term:skip-covered --cov-report=xml:.coverage.xml

test-slow: $(STAMP)
	CARINA_SHARED_DATA=$(SHARED_DATA) $(BIN)/python -m pytest -m slow

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,deid,bench]'
	CARINA_SHARED_DATA=$(SHARED_DATA) $(BIN)/python -m pytest -m bench -s
	CARINA_SHARED_DATA=$(SHARED_DATA) $(BIN)/python bench/deid.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.xml

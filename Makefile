# Carina: `make run` starts it, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.carina-installed
SHARED_DATA ?= $(abspath ../shared/data)

.PHONY: run test test-slow lint format bench bench-viewer system-deps clean web web-schema

$(STAMP): pyproject.toml scripts/system-deps.sh
	bash scripts/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU build of torch first: an unpinned torch pulled in by another package would be CUDA's
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,deid,postgres,ai]'
	touch $(STAMP)

DATA_DIR ?= data

# the web viewer bundle (web/dist), rebuilt when missing or older than its sources
web:
	bash scripts/build-web.sh

# the viewer's API types, regenerated from the server's OpenAPI document
web-schema: $(STAMP)
	PYTHONPATH=src $(BIN)/python scripts/openapi.py web/src/api/openapi.json
	cd web && npx --no-install openapi-typescript src/api/openapi.json -o src/api/schema.d.ts

run: $(STAMP) web
	bash scripts/run.sh $(DATA_DIR)

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: lint web
	CARINA_SHARED_DATA=$(SHARED_DATA) $(BIN)/python -m pytest -m "not slow and not bench" \
		--cov --cov-report=term:skip-covered --cov-report=xml:.coverage.xml

test-slow: $(STAMP)
	CARINA_SHARED_DATA=$(SHARED_DATA) $(BIN)/python -m pytest -m slow

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,deid,bench]'
	CARINA_SHARED_DATA=$(SHARED_DATA) $(BIN)/python bench/archive.py
	CARINA_SHARED_DATA=$(SHARED_DATA) $(BIN)/python bench/deid.py

# the viewer in a real browser: time to first image and to MPR (bench/results/viewer.md)
bench-viewer: $(STAMP) web
	$(BIN)/python bench/viewer.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.xml

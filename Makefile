# Examtrail: `make run` serves the embedded demo; `make test` runs the whole suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH, else a private copy bootstrapped with the machine's python3.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PYTEST_WORKERS ?= 2
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help install run test lint typecheck test-sqlite test-postgres test-rabbitmq bench clean

help:
	@echo "make run    install, migrate, seed a demo and serve the embedded default on $(HOST):$(PORT)"
	@echo "make test   install and run linters, type checks and the whole test suite"
	@echo "make bench  run the benchmarks (writes bench/RESULTS.md)"

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv

install: $(if $(filter .tools/bin/uv,$(UV)),.tools/bin/uv)
	$(UV) sync --frozen --quiet

run: install
	$(UV) run examtrail db upgrade
	$(UV) run examtrail demo --public-url http://$(HOST):$(PORT)
	EXAMTRAIL_PUBLIC_URL=$${EXAMTRAIL_PUBLIC_URL:-http://$(HOST):$(PORT)} \
	EXAMTRAIL_WEBHOOK_ALLOW_PRIVATE=$${EXAMTRAIL_WEBHOOK_ALLOW_PRIVATE:-true} \
		$(UV) run examtrail serve --host $(HOST) --port $(PORT)

lint: install
	$(UV) run ruff check src tests bench clients
	$(UV) run ruff format --check src tests bench clients

typecheck: install
	$(UV) run mypy

# The suite runs on both deployments: the embedded default (SQLite, local store,
# in-process worker) and the production stack (PostgreSQL, SeaweedFS S3, Redis);
# the export tests, the live contract and the local store's links once more on PostgreSQL
# with RabbitMQ and the local store.
test-sqlite: install
	$(UV) run pytest -q -n $(PYTEST_WORKERS)

test-postgres: install
	EXAMTRAIL_TEST_DB=postgresql EXAMTRAIL_TEST_STORAGE=s3 EXAMTRAIL_TEST_BROKER=redis \
		$(UV) run pytest -q -n $(PYTEST_WORKERS)

test-rabbitmq: install
	EXAMTRAIL_TEST_DB=postgresql EXAMTRAIL_TEST_BROKER=rabbitmq \
		$(UV) run pytest -q -n $(PYTEST_WORKERS) tests/exports tests/contract tests/storage/test_api.py

test: lint typecheck test-sqlite test-postgres test-rabbitmq

bench: install
	$(UV) run python -m bench.run

clean:
	rm -rf var .tools .pytest_cache .mypy_cache .ruff_cache

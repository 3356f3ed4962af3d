# The README's two commands are `make demo` and `make test`; both set up what they need.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv deps run demo test lint typecheck unit bench goldens

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

# Debian packages and services the tests need (promtool, redis-server, RabbitMQ running).
deps:
	bash scripts/ensure-deps

run: venv
	$(BIN)/celery-ops-exporter

demo: venv
	$(BIN)/python -m demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

test: venv deps lint typecheck
	bash scripts/pytest-ci $(BIN)/python -m pytest -q -ra

unit: venv
	$(BIN)/python -m pytest -q tests/unit

goldens: venv
	UPDATE_GOLDEN=1 $(BIN)/python -m pytest -q tests -k golden

bench: venv
	$(BIN)/python -m bench.run

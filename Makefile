# TaskManager: `make run` serves it locally, `make test` checks everything.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install run migrate lint format test test-fast services bench clean

help:
	@echo "make run    - install, migrate and serve on http://localhost:$${TASKMAN_PORT:-5000}"
	@echo "make test   - install, lint (ruff, mypy) and run the whole test suite"
	@echo "make bench  - run the benchmarks (claims, callbacks) and print their figures"
	@echo "make lint | format | migrate | clean"

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/taskmanager db upgrade

run: migrate
	$(BIN)/taskmanager serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy api worker shared cli

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

services:
	@$(BIN)/python tests/services.py

# Tests marked serial (they stop and start the shared RabbitMQ) run alone, after the rest.
test: lint services
	$(BIN)/pytest -n 2 -m "not serial"
	$(BIN)/pytest -m serial

test-fast: install
	$(BIN)/pytest tests/unit tests/api -x -q

bench: install services
	$(BIN)/python -m bench
	$(BIN)/python -m bench.callbacks

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache

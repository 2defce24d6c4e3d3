# Two commands do all the set-up on a fresh machine:
#   make run    virtualenv, install, migrate, demo county, web + worker + beat
#   make test   virtualenv, install, the whole test suite
# With DATABASE_URL and REDIS_URL unset, both start an embedded PostgreSQL and Redis under .data/.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
EMBEDDED := $(BIN)/python -m marketplace.embedded exec --
PYTEST_ARGS ?=
# Test processes (pytest-xdist), each with its own test database, Celery queue and worker.
# Most of the suite's time is spent waiting on workers, engines and other processes, so two
# halve it even on two cores; more would crowd PostgreSQL's 100 connections (a race test opens
# 32). 0 runs everything in this one process.
TEST_PROCESSES ?= 2

.PHONY: run test lint format lock install clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	touch $@

run: install
	$(BIN)/python -m marketplace.embedded run

test: install
	$(EMBEDDED) $(BIN)/python -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(EMBEDDED) $(BIN)/python manage.py makemigrations --check --dry-run

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin every dependency after changing pyproject.toml.
lock: install
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url --no-emit-find-links -o requirements-dev.lock pyproject.toml

clean:
	rm -rf $(VENV) .data staticfiles

# Two commands for a newcomer: `make run` (the service with demo data) and `make test`.
# Both create .venv and install what they need; only Python 3.11+ and make are required.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# What the service needs (`make run`), and that plus the test tools (`make test`): a fresh
# install without the test tools takes well under half the time.
RUNTIME := $(VENV)/.installed-runtime
STAMP   := $(VENV)/.installed

.PHONY: run test check pytest bench clean

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed: run make PYTHON=python3.11 ..."; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $(RUNTIME)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(RUNTIME) $(STAMP)

# Stop it with Ctrl-C (or SIGTERM): it drains, then exits.
run: $(RUNTIME)
	$(BIN)/pos serve

test: check pytest

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy service
	$(BIN)/lint-imports

# The suite on PYTEST_WORKERS processes (pytest-xdist), each on a database of its own; work is
# stolen from a busy worker by an idle one. Three beat two on two cores (tests wait on
# PostgreSQL and on processes); PYTEST_WORKERS=0 runs it in this one process.
PYTEST_WORKERS ?= 3
pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal

# Not part of `make test`: seeds the national data set (reused across runs) and loads the
# service for several minutes; BENCH_QUICK=1 for a short smoke run. See bench/README.md.
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache

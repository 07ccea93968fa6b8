# The two commands of the README: `make demo` and `make test`. Each sets itself up.
# `make test` runs lint and typing once, then the suite on every supported Python it finds
# (noxfile.py: one virtualenv per version under .nox/, coverage on the oldest), side by side.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck bench docs mutate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install whenever pyproject.toml changes.
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[cli]'
	touch $@

$(VENV)/.bench-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

$(VENV)/.mutate-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[mutate]'
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/python -m certpoll demo

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/nox --no-error-on-missing-interpreters --parallel 3

# Not part of `make test`: about 15 minutes (it starts PostgreSQL and Redis for sections 6
# and 7); writes docs/benchmarks.md and its plots.
bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench

# The documentation site in site/; any warning (a broken link, a bad docstring) fails it.
docs: $(VENV)/.dev-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Not part of `make test`: mutation testing of the core modules, each module's score
# (docs/testing-internals.md). At the lowest priority, two mutants at a time.
mutate: $(VENV)/.mutate-installed
	nice -n 19 $(BIN)/python -m tools.mutate --max-children 2

clean:
	rm -rf $(VENV) .nox .mypy_cache .pytest_cache .ruff_cache .coverage build dist mutants

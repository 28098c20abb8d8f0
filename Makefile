# One Makefile that CI calls verbatim (.ci/run -> make test).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m wrapper

test: install
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage report

lint: install
	$(BIN)/ruff check wrapper tests bench
	$(BIN)/mypy wrapper

clean:
	rm -rf $(VENV) .coverage .mypy_cache .pytest_cache .ruff_cache *.egg-info

bench: install
	$(BIN)/python bench/latency.py

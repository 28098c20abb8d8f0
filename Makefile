# One Makefile that CI calls verbatim (.ci/run -> make test).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench stress clean contrib-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m wrapper

test: install contrib-deps
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage report

lint: install
	$(BIN)/ruff check wrapper tests bench examples
	$(BIN)/mypy wrapper

clean:
	rm -rf $(VENV) .coverage .mypy_cache .pytest_cache .ruff_cache *.egg-info

bench: install
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/continuation.py

# Load, faults and fuzz against the real CLI and the mock API (loopback only, ~10 min on
# 2 cores); figures printed and written to bench/results/stress-<date>.json. Options:
# make stress STRESS_ARGS="--small", "--only fuzz load", "--out path.json".
stress: install
	$(BIN)/python -m bench.stress $(STRESS_ARGS)

# What the contrib/ and examples/ tests run, and bubblewrap for the sandbox tests (wrapper.sandbox).
# Commands from Debian when missing (command:package);
# nginx may live in /usr/sbin, off a normal user's PATH.
CONTRIB_COMMANDS := nginx:nginx systemd-analyze:systemd openssl:openssl curl:curl bwrap:bubblewrap
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends

contrib-deps:
	@missing=; for pair in $(CONTRIB_COMMANDS); do \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "contrib-deps: install$$missing: the contrib/ and examples/ tests run them" >&2; exit 1; \
	  fi; \
	  echo "contrib-deps: installing$$missing from Debian"; \
	  $(APT_INSTALL) $$missing || { $(SUDO) apt-get update -q && $(APT_INSTALL) $$missing; }; \
	fi

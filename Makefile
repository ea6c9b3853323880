# Two entry points, both self-contained on a fresh machine with Python 3.11:
#   make demo   -> local virtualenv + `deploywatch demo` against the local sandbox
#   make test   -> local virtualenv + system deps (tmux) + lint, types, contracts, tests
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
# PYTEST_WORKERS=2 runs the suite on both cores (pytest-xdist); 0 (the default, as CI runs it) in one process.
PYTEST_WORKERS ?= 0

.PHONY: demo test check venv system-deps screenshots bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[sandbox,test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP)
	$(BIN)/deploywatch demo $(ARGS)

system-deps:
	@scripts/install-system-deps

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) system-deps check
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py

bench: $(STAMP) system-deps
	$(BIN)/python -m bench.startup
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.keys
	$(BIN)/python -m bench.rollback
	$(BIN)/python -m bench.gate

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# `make demo` and `make test` set everything up on a fresh machine that only has Python 3.11+.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lessons bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m minprune demo

test: $(STAMP)
	MINPRUNE_FAST=1 $(PY) -m pytest -q

lessons: $(STAMP)
	$(VENV)/bin/jupyter lab lessons/

bench: $(STAMP)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) bench/bench_engine.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache

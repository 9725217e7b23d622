# rpyc_ipy: every target sets itself up from the project's own files.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench lab clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rpyc_ipy.demo

test: $(STAMP) lint
	$(PY) -m pytest -q -p no:cacheprovider tests

lint: $(STAMP)
	$(VENV)/bin/ruff check rpyc_ipy tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/run.py

lab: $(STAMP)
	$(PY) -m pip install --quiet -e '.[lab]'
	$(PY) -m rpyc_ipy.demo --lab

clean:
	rm -rf $(VENV) build dist *.egg-info

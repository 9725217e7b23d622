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

# Tests import helpers by bare name from what pytest puts on sys.path: tests/, tests/auth and
# tests/protocol (tests/conftest.py), tests/kernel (tests/notebooks/conftest.py) and the test's own
# directory, which mypy adds by itself. Each directory has its own conftest.py, and mypy refuses
# two modules of one name in a run: one run per directory.
TEST_HELPER_PATH := tests:tests/auth:tests/protocol:tests/kernel
TEST_DIRS := $(sort $(patsubst %/,%,$(dir $(wildcard tests/*.py tests/*/*.py tests/*/*/*.py))))

lint: $(STAMP)
	$(VENV)/bin/ruff check rpyc_ipy tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench/*.py
	@status=0; for dir in $(TEST_DIRS); do \
		echo "mypy $$dir"; \
		MYPYPATH=$(TEST_HELPER_PATH) $(VENV)/bin/mypy $$dir/*.py || status=1; \
	done; exit $$status

bench: $(STAMP)
	$(PY) bench/run.py

lab: $(STAMP)
	$(PY) -m pip install --quiet -e '.[lab]'
	$(PY) -m rpyc_ipy.demo --lab

clean:
	rm -rf $(VENV) build dist *.egg-info

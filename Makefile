# The two commands a newcomer needs: `make demo` and `make test`. Both bootstrap uv and the locked environment.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY_VERSION := 3.11
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen --no-sync
PORT ?= 4566
# uv verifies TLS with its bundled roots; machines behind a TLS-inspecting proxy publish theirs here.
ifneq ($(wildcard /etc/ssl/certs/ca-certificates.crt),)
export SSL_CERT_FILE ?= /etc/ssl/certs/ca-certificates.crt
endif

.PHONY: help bootstrap sync browser requirements flink-jars up down status demo test test-fast lint format bench airflow airflow-down clean

help:
	@echo "make demo    - start the local AWS endpoint and run the pipeline through Airflow (prints where data landed)"
	@echo "make test    - run every test (starts its own local endpoint on another port)"
	@echo "make test-fast - the inner loop: tests without a JVM, endpoint, PostgreSQL or browser (under a minute)"
	@echo "make up/down - start/stop the whole local stack (Airflow UI on http://127.0.0.1:8080, login printed)"
	@echo "make status  - is every part of the local stack up and healthy"
	@echo "make airflow - make up in the foreground (Ctrl-C stops everything)"
	@echo "make bench   - benchmarks (results go to docs/performance.md by hand)"
	@echo "make requirements - regenerate requirements/mwaa.txt (what a deployment installs) from uv.lock"
	@echo "make flink-jars - build the Flink source-format jar a deployment ships (into FLINK_JARS_DIR, default dist/jars)"

$(UV):
	@command -v python$(PY_VERSION) >/dev/null || { echo "python$(PY_VERSION) is required"; exit 1; }
	python$(PY_VERSION) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

bootstrap: $(UV)

# Every dependency group too (pyproject [tool.uv] default-groups): Airflow, the local-only tools, the test tools.
sync: bootstrap
	$(UV) sync --frozen --python $(PY_VERSION)

# requirements/mwaa.txt from the lock; tests/test_packaging.py fails when it is stale.
requirements: sync
	UV=$(UV) $(RUN) python -m localdev.requirements

# The source-format jar for the Airflow workers (no JDK on MWAA): needs javac 17+; docs/deploy-aws.md section 6.
FLINK_JARS_DIR ?= dist/jars
flink-jars: sync
	$(RUN) python -m include.flink_app.format_jar --out $(FLINK_JARS_DIR)

# The whole local stack (AWS endpoint, PostgreSQL, Airflow, the Flink app, live DAGs), detached; PIDs under .local/.
up: sync
	$(RUN) python -m localdev.stack up --aws-port $(PORT) --api-port $(or $(AIRFLOW_PORT),8080)

# Stops whatever `make up` / `make airflow` recorded, however the launcher ended (even kill -9).
down:
	@if [ -x .venv/bin/python ]; then .venv/bin/python -m localdev.stack down; else echo "nothing to stop"; fi

status: sync
	$(RUN) python -m localdev.stack status

demo: sync
	$(RUN) python -m localdev.demo --port $(PORT)

# The Clickstream page's browser test drives Debian's chromium (Playwright, never `playwright install`).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium (apt-get) for the browser test"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# Tests run on TEST_WORKERS pytest-xdist workers (2, this machine's cores; TEST_WORKERS=1 runs one process), one
# test module per worker at a time, each worker with its own endpoint, PostgreSQL and AIRFLOW_HOME
# (tests/conftest.py). The longest modules go first (conftest LONGEST_FIRST, hence --no-loadscope-reorder).
TEST_WORKERS ?= 2
FAST_WORKERS ?= 2
xdist = $(if $(filter-out 0 1,$(1)),-n $(1) --dist loadscope --no-loadscope-reorder)

test: sync browser
	$(RUN) ruff check .
	$(RUN) pytest --durations=20 $(call xdist,$(TEST_WORKERS))

# No ruff: only the tests marked neither integration, jvm, browser nor slow; guards fail any that
# starts a JVM, endpoint, PostgreSQL or chromium anyway (tests/fast_guard.py).
test-fast: sync
	CLICKSTREAM_TEST_FAST=1 $(RUN) pytest -p no:cacheprovider $(call xdist,$(FAST_WORKERS))

lint: sync
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: sync
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

bench: sync
	$(RUN) python -m bench

# `make up` in the foreground: Ctrl-C or SIGTERM stops the whole stack.
airflow: sync
	$(RUN) python -m localdev.stack up --foreground --aws-port $(PORT) --api-port $(or $(AIRFLOW_PORT),8080)

clean: down
	rm -rf .local dist

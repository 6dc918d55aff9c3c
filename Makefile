# fapiao-hub: the two front-door commands are `make run` and `make test`.
# Each creates the project virtualenv (.venv, Python 3.13) on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
# SAM's python3.13 build workflow looks for python3.13 on PATH: the venv provides it.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0

.PHONY: help run test unit integration lint sam-validate lint-template sam-build clean chromium openapi bench sam-invoke soak

help:
	@echo "make run    - run the hub locally (moto + HTTP API on 127.0.0.1:$${API_PORT:-3000}); keeps its state across restarts, FRESH=1 starts empty"
	@echo "make test   - lint, unit and integration tests, sam validate --lint, cfn-lint (serverless rules), sam build, make sam-invoke"
	@echo "make soak   - $${SOAK_ORDERS:-10000} orders through the local run with channel faults and dispatcher crashes"
	@echo "make sam-invoke - every function through sam local invoke in the Lambda container (docker, offline)"
	@echo "make lint   - ruff"
	@echo "make lint-template - cfn-lint with the serverless rules on template.yaml (part of make test)"
	@echo "make openapi - regenerate docs/openapi.json (the HTTP API's OpenAPI document)"
	@echo "make bench  - benchmarks: requests, cost, cold start, warm, polling, throughput -> docs/benchmarks.md"
	@echo "make clean  - remove the virtualenv and build output"

# Find a Python 3.13: on PATH, or through pyenv (PYENV_VERSION / pyenv root).
$(STAMP): pyproject.toml
	@set -e; \
	py=""; \
	for cand in python3.13 "$$(command -v pyenv >/dev/null 2>&1 && pyenv root)/versions/3.13"*/bin/python3.13; do \
	  if [ -n "$$cand" ] && "$$cand" -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then py="$$cand"; break; fi; \
	  if [ "$$cand" = python3.13 ] && PYENV_VERSION=3.13.0 python3.13 -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then \
	    py="$$(PYENV_VERSION=3.13.0 python3.13 -c 'import sys; print(sys.executable)')"; break; fi; \
	done; \
	if [ -z "$$py" ]; then echo "error: Python 3.13 not found (on PATH as python3.13, or through pyenv). Install it, e.g. 'pyenv install 3.13'." >&2; exit 1; fi; \
	echo "using $$py"; \
	"$$py" -m venv $(VENV); \
	$(PY) -m pip install --quiet --upgrade pip; \
	$(PY) -m pip install --quiet -e '.[dev]'; \
	touch $(STAMP)

# The local run keeps its tables, files and token in .fapiao-hub/saved/ across restarts (local/state.py);
# `make run FRESH=1` starts empty, with a new token.
run: $(STAMP)
	$(if $(filter-out 0,$(FRESH)),FAPIAO_HUB_FRESH=1 )$(PY) -m local.run

lint: $(STAMP)
	$(VENV)/bin/ruff check .

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

integration: $(STAMP)
	$(PY) -m pytest tests/integration -q

sam-validate: $(STAMP)
	$(VENV)/bin/sam validate --lint --template template.yaml

# cfn-lint with the serverless rules (cfn-lint-serverless): failure handling of asynchronous
# functions, access logs, DLQs... A finding that does not apply is suppressed in template.yaml, on
# its resource, with the reason (Metadata: cfn-lint: config: ignore_checks).
lint-template: $(STAMP)
	$(VENV)/bin/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml

# The layer must ship compiled code (/opt is read-only in Lambda: without .pyc files every cold
# start compiles every module it imports): a hash-based, unchecked .pyc beside every module.
define LAYER_PYC_CHECK
import pathlib, sys
root = pathlib.Path(".aws-sam/build/HubLayer/python")
sources = sorted(root.rglob("*.py"))
def compiled(source):
    pyc = source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"
    return pyc.is_file() and pyc.read_bytes()[4:8] == bytes([1, 0, 0, 0])  # flags: hash-based, unchecked
missing = [str(s) for s in sources if not compiled(s)]
if not sources or missing:
    sys.exit(f"error: the built layer has {len(missing)} of {len(sources)} modules without an unchecked-hash .pyc: {missing[:5]}")
print(f"layer compiled: {len(sources)} modules, each with an unchecked-hash .pyc")
endef
export LAYER_PYC_CHECK

# Builds the artifacts, checks the layer is compiled, then imports every handler from them alone
# (no site-packages), as Lambda would: a handler missing a dependency in the layer fails here, not in AWS.
sam-build: $(STAMP)
	$(VENV)/bin/sam build --template template.yaml
	@$(PY) -S -c "$$LAYER_PYC_CHECK"
	@for fn in .aws-sam/build/*Function; do \
	  $(PY) -S -c "import sys; sys.path[:0] = ['$$fn', '.aws-sam/build/HubLayer/python']; import app" \
	    || { echo "error: $$fn does not import from its built artifact" >&2; exit 1; }; \
	  echo "imports from its artifact: $$fn"; \
	done

# docs/openapi.json from the routes' declarations (tests/unit/test_openapi.py fails when it is stale).
openapi: $(STAMP)
	$(PY) -m fapiao_hub.api.openapi

# The Swagger page test renders in Debian's Chromium, and the console's browser tests drive it through
# Selenium (the dev extra) and Debian's chromedriver; installed here when missing (root only, apt), with a
# CJK font so that the console's screenshots (docs/console/) show names and remarks, not boxes.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium and chromium-driver for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-wqy-zenhei >/dev/null; \
	  else echo "error: the browser tests need chromium and chromedriver: apt-get install chromium chromium-driver" >&2; exit 1; fi; }

# Unit and integration tests (the soak at 160 orders, the hostile-input tier and the bench smoke test
# among them), then the template checks and the container tier (which runs by its own target, below).
# Three pytest workers on two cores: most integration tests wait on local runs and sandboxes, not the CPU.
test: $(STAMP) chromium
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 3 --dist loadgroup --ignore=tests/container
	$(MAKE) --no-print-directory sam-validate
	$(MAKE) --no-print-directory lint-template
	$(MAKE) --no-print-directory sam-build
	$(MAKE) --no-print-directory sam-invoke

# Figures for docs/benchmarks.md (bench/). The cold-start section measures the layer as `sam build`
# makes it, so the layer is built first when missing or older than its requirements.
# BENCH_ORDERS scales the throughput run (default 2000).
bench: $(STAMP)
	@if [ ! -d .aws-sam/build/HubLayer/python ] || [ layers/hub/requirements.txt -nt .aws-sam/build/HubLayer ]; then \
	  $(MAKE) --no-print-directory sam-build; fi
	$(PY) -m bench

# The container tier: every function of template.yaml through `sam local invoke` in the Lambda
# container, with every fixture in events/, against moto and the channel sandboxes running as containers
# on a docker network of their own (tests/container/tier.py). The images are built here, without any
# registry, and reused (local/lambda-image/build.sh; it installs docker.io and starts dockerd as root).
sam-invoke: $(STAMP)
	local/lambda-image/build.sh
	FAPIAO_HUB_SAM_INVOKE=1 $(PY) -m pytest tests/container -q

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .hypothesis

# Load with faults (bench.soak): SOAK_ORDERS orders through the local run while the sandboxes fail
# (5% 5xx, 2% timeouts after issuing, duplicate and out-of-order pushes) and dispatchers crash at
# every step boundary; prints the tallies and fails on a double issue, a lost application or a 5xx.
# make test runs the same at 160 orders (tests/integration/test_soak.py).
# The tallies go to bench/last-soak.json and into docs/benchmarks.md (section 7).
soak: $(STAMP)
	$(PY) -m bench.soak --orders $${SOAK_ORDERS:-10000} --seed $${SOAK_SEED:-1} --json bench/last-soak.json
	$(PY) -m bench --render-only

# meshctl developer entry points. `make install` once, then `make demo` or `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install lint test unit testenv demo bench crds manifests protos verify-protos e2e-kind clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	bash hack/fetch-uplot.sh

lint: install verify-protos
	$(BIN)/ruff check meshctl tests testworld $(wildcard bench)
	$(BIN)/mypy meshctl
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest -q tests/unit

# The whole suite, real servers included; builds/starts them first.
test: install testenv
	$(BIN)/pytest -q

testenv:
	bash testworld/setup.sh

# The package manager's output goes to a log file, named in one line.
DEMO_LOG ?= .meshctl/demo-install.log
demo:
	@mkdir -p $(dir $(DEMO_LOG))
	@echo "make demo: installing meshctl (and Prometheus if missing); package manager output in $(DEMO_LOG)"
	@{ $(MAKE) --no-print-directory install && { command -v prometheus || \
	  { apt-get update -qq && apt-get install -y -qq prometheus; }; }; } >$(DEMO_LOG) 2>&1 \
	  || { echo "make demo: install failed; see $(DEMO_LOG)" >&2; tail -n 20 $(DEMO_LOG) >&2; exit 1; }
	$(BIN)/meshctl demo

# Every section of bench/RESULTS.md but the profile's, each written by its own script with
# the machine, the date and the load average (hours; give them a quiet machine).
bench: install testenv
	nice $(PY) -m bench.cli_startup
	nice $(PY) -m bench.local_mesh
	nice $(PY) -m bench.rollback_floor
	nice $(PY) -m bench.istio_propagation
	nice $(PY) -m bench.judge
	nice $(PY) -m bench.hostile_inputs
	nice $(PY) -m bench.dashboard
	nice $(PY) -m bench.controller_load --rollouts 1 1000
	nice $(PY) -m bench.controller_idle --rollouts 1000 10000 --replicas 1 0
	nice $(PY) -m bench.controller_scale --rollouts 1000
	nice $(PY) -m bench.kills

e2e-kind: install
	bash hack/e2e-kind.sh

crds: install
	$(PY) -m meshctl.ops.manifests manifests/crds
	$(PY) -m meshctl.ops.manifests manifests/helm/meshctl/crds

# manifests/ (kustomize) rendered from the Helm chart with its default values.
manifests: crds
	bash testworld/build-helm.sh
	bash hack/render-manifests.sh

# meshctl/api/gen/ from protos/ (grpcio-tools, pinned in pyproject.toml); never hand-edited.
protos: install
	$(PY) protos/generate.py

# Regenerates into a temporary directory and fails if meshctl/api/gen/ differs.
verify-protos: install
	$(PY) protos/generate.py --check

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

# The two commands a newcomer needs: `make run` and `make test`.
# Both create the virtual environment and install what is missing first.

# The Lambda runtime's Python (infra/app/runtime.py): every test runs on the version deployed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Options for the local stack, e.g. make run FAULTS='503=0.1,reset=0.02'.
# Passed in the environment (local.stack reads it), never pasted into a shell
# command, so that no value can break the command line.
FAULTS ?=
export FAULTS

.PHONY: help run test report bench-report checkov package deploy check lint typecheck bench bench-budget bench-screen bench-audit bench-edge clean system-packages bench-packages bundle lock
.DEFAULT_GOAL := help

## help: this list, from the `## target: what it does` lines of this file
help:
	@sed -n 's/^## \([a-z-]*\): /  make \1\t/p; s/^## \([^a-z]\)/\t\1/p' $(MAKEFILE_LIST) | expand -t 22,24

# Every environment is installed from its lock and nothing else (scripts/lock.py):
# `uv pip sync --require-hashes` installs exactly the lock's packages, each file checked
# against its hash. uv itself comes from its own lock, by pip with hashes.
UV_VENV := $(VENV)/uv
UV      := $(UV_VENV)/bin/uv
SYNC    := UV_LINK_MODE=copy $(UV) pip sync --quiet --require-hashes --no-python-downloads --python

$(UV): requirements/uv.txt
	@echo "Setting up .venv (first run, or a lock changed): uv, then the packages of requirements/dev.txt and checkov.txt ..."
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install it (Debian: apt-get install python3.11-venv) or name it with make PYTHON=..." >&2; exit 1; }
	@$(PYTHON) -m infra.app.runtime
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/uv.txt
	touch $(UV)

$(STAMP): requirements/dev.txt $(UV)
	$(PYTHON) -m venv --without-pip $(VENV)
	$(SYNC) $(BIN)/python requirements/dev.txt
	touch $(STAMP)

# checkov in a virtual environment of its own: its pins conflict with the dev
# requirements. Inside .venv so that `make clean` and .gitignore cover it.
CHECKOV_VENV  := $(VENV)/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
$(CHECKOV_STAMP): requirements/checkov.txt $(UV)
	$(PYTHON) -m venv --without-pip $(CHECKOV_VENV)
	$(SYNC) $(CHECKOV_VENV)/bin/python requirements/checkov.txt
	touch $(CHECKOV_STAMP)

## lock: every lock again from requirements/*.in, keeping the pins they do not move (UPGRADE=1 moves them all)
lock: $(UV)
	$(UV_VENV)/bin/python -m scripts.lock --uv $(UV) $(if $(UPGRADE),--upgrade)

checkov: $(CHECKOV_STAMP)

system-packages:
	@scripts/ensure-system-packages.sh $$(sed 's/#.*//' infra/nginx/debian-packages.txt) nodejs:node shellcheck chromium

bench-packages: system-packages
	@scripts/ensure-system-packages.sh haproxy wrk valgrind linux-perf:perf

## run: the whole local stack (HOSP stand-in, NGINX, chalice local, moto)
run: $(STAMP) system-packages
	$(BIN)/python -m local.stack

## test: every test, four test files at a time; no AWS account, no network beyond loopback
# Most tests wait on sockets and timers, not on a core: four workers finish sooner
# than one per core on a two-core machine, and their timing margins hold there.
TEST_WORKERS ?= 4
test: $(STAMP) $(CHECKOV_STAMP) system-packages
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

## report: the reliability report as one HTML file (default: the local stack's log -> .local/report.html);
## LOG=<file|dir|s3://bucket/prefix> FROM=<day> TO=<day> OUT=<file> (python -m infra.monitoring.report --help)
# The values reach the command through the environment, never pasted into it.
report: export REPORT_LOG := $(LOG)
report: export REPORT_FROM := $(FROM)
report: export REPORT_TO := $(TO)
report: export REPORT_OUT := $(OUT)
report: $(STAMP)
	$(BIN)/python -m infra.monitoring.report --log "$$REPORT_LOG" --from "$$REPORT_FROM" --to "$$REPORT_TO" --out "$$REPORT_OUT"

## package: the Chalice app of STAGE (dev or prod) as a CloudFormation template in dist/app-STAGE/, linted and scanned
# Offline: no AWS credentials (docs/runbooks/deploy.md).
STAGE ?=
package: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/python -m infra.app.package --stage "$(STAGE)"

## deploy: every stack of STAGE in order, then the URLs (DRY_RUN=1 prints the plan and touches nothing;
## ONLY=edge or ONLY=app,edge deploys those stacks alone)
ONLY ?=
deploy: package bundle
	$(BIN)/python -m infra.deploy --stage "$(STAGE)" $(if $(DRY_RUN),--dry-run) $(if $(ONLY),--only "$(ONLY)")

## check: lint, format, types, then tests (what CI should hold)
check: lint typecheck test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## bench: proxy benchmarks (not run by CI); figures go to docs/benchmarks.md
bench: $(STAMP) bench-packages
	$(BIN)/python -m bench.proxy_bench

## bench-budget: the retry budget under a full outage, at 30 and 300 GETs/s, and against a flood, beside the fixed budget and HAProxy (not run by CI)
# Other lengths: .venv/bin/python -m bench.budget_bench --help (bench/README.md).
bench-budget: $(STAMP) bench-packages
	$(BIN)/python -m bench.budget_bench

## bench-screen: a screen through the front door against straight to HOSP (latency, NGINX's memory) and one note per distinct screen (not run by CI)
# Other sizes: .venv/bin/python -m bench.screen_bench --help (bench/README.md).
bench-screen: $(STAMP) system-packages
	$(BIN)/python -m bench.screen_bench

## bench-audit: the audit export (trail query vs DuckDB's plain COPY) and the route's memory (not run by CI)
# Other sizes: .venv/bin/python -m bench.audit_bench --help (bench/README.md).
bench-audit: $(STAMP)
	$(BIN)/python -m bench.audit_bench

## bench-edge: what production's Host and origin checks and the local HTTPS edge cost, side by side (not run by CI)
# Other sizes: .venv/bin/python -m bench.edge_bench --help (bench/README.md).
bench-edge: $(STAMP) system-packages
	@scripts/ensure-system-packages.sh wrk
	$(BIN)/python -m bench.edge_bench

## bench-report: the reliability report on 1,000,000 log lines beside DuckDB's own count, and its headline's exactness (not run by CI)
# Other sizes: .venv/bin/python -m bench.report_bench --help (bench/README.md).
bench-report: $(STAMP)
	$(BIN)/python -m bench.report_bench

## bundle: the proxy fleet's bootstrap bundle (infra/ec2/README.md), reproducible, with its sha256
# BUNDLE_PACKAGES=DIR ships DIR's pinned Debian .deb files (apt-get download) in it, for a fleet without internet access.
BUNDLE_PACKAGES ?=
bundle:
	$(PYTHON) -m infra.ec2.build_bundle --output dist/hosp-proxy-bundle.tar.gz $(if $(BUNDLE_PACKAGES),--packages "$(BUNDLE_PACKAGES)")

clean:
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .ruff_cache

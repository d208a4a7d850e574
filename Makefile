# redrelay: `make demo` runs the main job end to end on the local stack;
# `make test` runs every check. Both install what they need (a project-local
# Python virtualenv with moto, boto3 and the aws CLI) on first use.

PYTHON ?= python3
VENV   := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Tests find moto's server and the Python clients here.
export REDRELAY_VENV := $(CURDIR)/$(VENV)

.PHONY: all build venv lock demo test fmt lint unit deploy-check bench torture clean pg browser faketime

all: build

# Exact versions and hashes of every Python package, transitive ones too
# (requirements.lock, made from requirements.txt by `make lock`).
$(VENV)/.installed: requirements.lock
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	@touch $@

lock:
	bash scripts/lock.sh

venv: $(VENV)/.installed

build:
	cargo build

demo: venv build
	bash scripts/demo.sh

fmt:
	cargo fmt --all --check

# The whole workspace, and the production build without the emulator.
lint:
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p redrelay --no-default-features --all-targets -- -D warnings

unit:
	cargo test --workspace --no-fail-fast

test: venv pg browser faketime fmt lint unit deploy-check

# PostgreSQL's server binaries for the tests (tests/common/pg.rs starts a
# private server from them). Installed with apt when missing and root.
PG_INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))
pg:
ifeq ($(PG_INITDB),)
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; \
	else \
	  echo "PostgreSQL's server binaries are missing: install Debian's postgresql package (apt-get install postgresql), or set REDRELAY_TEST_POSTGRES_URL" >&2; exit 1; \
	fi
else
	@echo "PostgreSQL: $(dir $(PG_INITDB))"
endif

# Chromium and its chromedriver for the console tests (tests/browser/,
# driven by selenium from .venv). Debian's packages, installed with apt
# when missing and root; selenium never downloads a browser or a driver.
CHROMIUM     := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
browser:
ifeq ($(wildcard $(CHROMIUM))$(wildcard $(CHROMEDRIVER)),$(CHROMIUM)$(CHROMEDRIVER))
	@echo "Chromium: $(CHROMIUM), chromedriver: $(CHROMEDRIVER)"
else
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; \
	else \
	  echo "Chromium or chromedriver is missing ($(CHROMIUM), $(CHROMEDRIVER)): install Debian's chromium and chromium-driver packages (apt-get install chromium chromium-driver)" >&2; exit 1; \
	fi
endif

# libfaketime (Debian's package) shifts one worker's host clock in a test
# of the scheduler (tests/service.rs). Installed with apt when missing and root.
FAKETIME_LIB := $(firstword $(wildcard /usr/lib/*/faketime/libfaketimeMT.so.1))
faketime:
ifeq ($(FAKETIME_LIB),)
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y libfaketime; \
	else \
	  echo "libfaketime is missing: install Debian's libfaketime package (apt-get install libfaketime)" >&2; exit 1; \
	fi
else
	@echo "libfaketime: $(FAKETIME_LIB)"
endif

deploy-check: venv
	bash deploy/check.sh

# Benchmarks print figures (docs/performance.md); they are not part of
# `test`. Release build: the figures are what users run.
$(VENV)/.bench-installed: requirements-bench.lock $(VENV)/.installed
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-bench.lock
	@touch $@

bench: venv pg $(VENV)/.bench-installed
	cargo test --release --test bench_compare -- --ignored --nocapture
	cargo test --release --test bench_reaction -- --ignored --nocapture
	cargo test --release --test bench_fleet -- --ignored --nocapture --test-threads 1
	cargo test --release --test bench_triggers -- --ignored --nocapture

# The torture test long: 1,000 jobs or more through the CLI and the API,
# three workers on PostgreSQL under faults, then the invariant checker
# (docs/reliability.md). `make test` runs it short (150 jobs).
# REDRELAY_TORTURE_SEED=N replays a seed; REDRELAY_TORTURE_JOBS=N sizes it.
REDRELAY_TORTURE_JOBS ?= 1000
torture: venv pg
	REDRELAY_TORTURE_JOBS=$(REDRELAY_TORTURE_JOBS) cargo test --test torture -- --nocapture

clean:
	cargo clean
	rm -rf $(VENV) .demo

# Gateway: `make run` serves the embedded gateway; `make test` runs lint, types and every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt
# apt-get needs root; elsewhere go through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# xmlsec and lxml must come from their wheels: a source build of xmlsec breaks on libxml2.
export PIP_ONLY_BINARY := xmlsec,lxml

.PHONY: help install run test lint fmt audit constraints services chromium

help:
	@echo "make run    install, then serve the gateway embedded (SQLite, no external services)"
	@echo "make test   install, start PostgreSQL and Redis, then lint, type-check and run all tests"
	@echo "make lint   ruff check, ruff format --check and mypy"
	@echo "make audit  pip-audit the pinned dependencies (AUDIT_STRICT=1: an unreachable service fails)"
	@echo "make fmt    ruff format and ruff check --fix"
	@echo "make constraints   re-pin $(CONSTRAINTS) (new dependencies get pinned)"

install: $(STAMP)

# Re-runs only when the dependencies change.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python >= 3.11 is required; python3 is $$(python3 --version 2>&1)" >&2; exit 1; }
	@if [ -x $(BIN)/python ] && ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
		echo "$(VENV) uses Python < 3.11; recreating it"; rm -rf $(VENV); fi
	[ -x $(BIN)/python ] || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev]' -c $(CONSTRAINTS)
	touch $(STAMP)

run: install
	$(BIN)/gateway serve

test: install chromium services
	@status=0; \
	echo "== ruff check";         $(BIN)/ruff check . || status=1; \
	echo "== ruff format --check"; $(BIN)/ruff format --check . || status=1; \
	echo "== mypy";               $(BIN)/mypy . || status=1; \
	echo "== pip-audit";          $(MAKE) --no-print-directory audit || status=1; \
	echo "== pytest";             $(BIN)/pytest -n auto --dist loadgroup || status=1; \
	exit $$status

lint: install
	@status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	$(BIN)/mypy . || status=1; \
	exit $$status

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# pip-audit lives in its own virtualenv (pinned in requirements/audit.txt) so its dependencies
# never mix with the gateway's; it audits the pinned set in $(CONSTRAINTS), not the venv.
AUDIT_VENV := $(VENV)/audit
$(AUDIT_VENV)/.installed: requirements/audit.txt
	[ -x $(AUDIT_VENV)/bin/python ] || python3 -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/python -m pip install -q -r requirements/audit.txt
	touch $@

audit: $(AUDIT_VENV)/.installed
	@mkdir -p var
	@$(AUDIT_VENV)/bin/pip-audit --disable-pip --no-deps -r $(CONSTRAINTS) -f json \
		--progress-spinner off -o var/pip-audit.json 2>/dev/null || true
	@$(AUDIT_VENV)/bin/python tools/audit_summary.py var/pip-audit.json

# Re-pin from a throw-away virtualenv holding only the project, keeping existing pins (delete a
# package's line first to upgrade it): stray packages in .venv never end up pinned.
constraints:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	python3 -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/pip" install -q -e '.[dev]' -c $(CONSTRAINTS) && \
	{ echo "# Pinned versions of every dependency (regenerate with: make constraints)."; \
	  "$$tmp/venv/bin/pip" freeze --exclude-editable | grep -v '^gateway=='; } > $(CONSTRAINTS).new && \
	mv $(CONSTRAINTS).new $(CONSTRAINTS) && echo "updated $(CONSTRAINTS)"

# Debian's Chromium, for the Playwright browser tests (Playwright's own download is not used).
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update && $(APT_INSTALL) chromium; }

# PostgreSQL (127.0.0.1:5432, user postgres, trust) and Redis (127.0.0.1:6379) for the tests:
# installed where missing, started where stopped, then waited for.
services:
	@if ! command -v pg_ctlcluster >/dev/null; then \
		$(SUDO) apt-get update && $(APT_INSTALL) postgresql postgresql-client && \
		for conf in /etc/postgresql/*/main; do \
			$(SUDO) sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' \
				"$$conf/pg_hba.conf"; \
			$(SUDO) pg_ctlcluster --skip-systemctl-redirect "$$(basename "$$(dirname "$$conf")")" \
				main reload 2>/dev/null || true; \
		done; \
	fi
	@if ! command -v redis-server >/dev/null; then \
		$(SUDO) apt-get update && $(APT_INSTALL) redis-server redis-tools; fi
	@pg_isready -q -h 127.0.0.1 -p 5432 \
		|| $(SUDO) pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | sort -V | tail -n1) main start
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { \
		$(SUDO) mkdir -p /var/lib/redis /var/log/redis; \
		$(SUDO) redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
			--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log; }
	@for i in $$(seq 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
		pg_isready -h 127.0.0.1 -p 5432
	@for i in $$(seq 60); do [ "$$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] && break; sleep 1; done; \
		[ "$$(redis-cli -h 127.0.0.1 -p 6379 ping)" = PONG ] && echo "redis 127.0.0.1:6379 - PONG"

# The real identity providers the SSO tests start on loopback (Node packages in tests/idp/).
.PHONY: idp-deps
IDP_STAMP := tests/idp/node_modules/.installed
idp-deps: $(IDP_STAMP)
$(IDP_STAMP): tests/idp/package.json tests/idp/package-lock.json
	cd tests/idp && npm ci --no-audit --no-fund
	touch $(IDP_STAMP)

test: idp-deps

# wrk (Debian's package) drives the proxy benchmark; its smoke test runs under `make test`.
.PHONY: wrk bench
wrk:
	@command -v wrk >/dev/null || { $(SUDO) apt-get update && $(APT_INSTALL) wrk; }

test: wrk

# The proxy benchmark (README "Benchmark"); pass options with BENCH_ARGS, e.g.
# `make bench BENCH_ARGS="--quick"` or `make bench BENCH_ARGS="--workers 2 --duration 30"`.
bench: install wrk
	$(BIN)/python bench/proxy_bench.py $(BENCH_ARGS)

# The observability benchmark (README "Observability benchmark"): seeds 1,000,000 request records
# into its own PostgreSQL database (BENCH_DATABASE_URL, default gw_bench_obs; created once, kept
# for later runs) and times the metrics page and the request log. Options through BENCH_ARGS,
# e.g. `make bench-observability BENCH_ARGS="--reseed --runs 9"`.
.PHONY: bench-observability
bench-observability: install services
	$(BIN)/python bench/observability_bench.py $(BENCH_ARGS)

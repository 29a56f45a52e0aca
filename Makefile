# Entry points for people and CI. `make demo` shows s3s3 replicating on local servers;
# `make test` runs the whole test matrix (what CI runs).
PYTHON ?= python3
VENV ?= .venv
# tox finds each Python of the matrix through pyenv's shims.
export PYENV_VERSION ?= 3.13.0:3.10.13:3.11.7

# Seconds each fuzz target runs in `make fuzz` (three targets); longer after a parser change:
# `make fuzz FUZZ_SECONDS=600`.
FUZZ_SECONDS ?= 20

.PHONY: setup demo test test-fast lint fuzz redis servers bench

servers:
	bash servers/install-debian.sh

redis:
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || \
	  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
	@for i in $$(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && exit 0; sleep 0.1; done; \
	  echo "redis did not start" >&2; exit 1

$(VENV)/bin/python: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,fuzz,lint]' tox
	touch $@

setup: $(VENV)/bin/python servers redis

demo: setup
	$(VENV)/bin/python -m examples.demo

# The suite starts its own redis-server on a free port: no Redis on 6379 needed.
test: $(VENV)/bin/python servers
	$(MAKE) lint
	$(VENV)/bin/tox
	$(MAKE) fuzz

# ruff (lint and format) over the tree, mypy over the package; configured in pyproject.toml.
LINTED = s3s3 tests bench fuzz servers examples setup.py
lint: $(VENV)/bin/python
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

# Coverage-guided fuzzing of the message parser, the INI loader and the listing parser
# (fuzz/run.py): fails on any input that makes one raise an undocumented error.
fuzz: $(VENV)/bin/python
	$(VENV)/bin/python fuzz/run.py --seconds $(FUZZ_SECONDS)

# One Python, no tox: quicker while developing.
test-fast: setup
	$(VENV)/bin/pytest -q -x

# The benchmarks against rclone, the 2015 s3s3, plain boto3 and the server's ceiling
# (s5cmd): they start their own Ceph RGW. See bench/README.md.
bench: setup
	$(VENV)/bin/python -m bench

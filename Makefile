# qsched build. `make run` and `make test` are the only set-up a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf
DEPS_STAMP := $(VENV)/.deps-installed
PROTO_STAMP := clients/python/qsched/api/.generated
PROTOS := $(shell find protos -name '*.proto')
PYTEST_ARGS ?=
ARGS ?=

.PHONY: all install run test proto lint bench bench-quick clean

all: install

install: $(DEPS_STAMP) $(PROTO_STAMP)

$(DEPS_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[all,dev]'
	touch $@

$(PROTO_STAMP): $(DEPS_STAMP) $(PROTOS) scripts/gen_protos.py
	$(BIN)/python scripts/gen_protos.py
	touch $@

## proto: regenerate the Python stubs from protos/ (never edit them by hand)
proto: $(DEPS_STAMP)
	$(BIN)/python scripts/gen_protos.py
	touch $(PROTO_STAMP)

## run: the whole stack on this machine (embedded SQLite, simulated board)
run: install
	$(BIN)/qsched up $(ARGS)

## test: lint, then every test (SQLite and the local PostgreSQL server)
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(BUF):
	npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error @bufbuild/buf@$(BUF_VERSION)

## lint: ruff, buf lint (STANDARD) and the floors of docs/architecture.md (tests/layering)
lint: install $(BUF)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BUF) lint
	$(BIN)/python -m tests.layering

## bench: the performance harness (issue 8; bench/README.md): real stacks on loopback, a table
## and bench/results/<timestamp>.json. BENCH_QUICK=1 (or `make bench-quick`) = CI's small counts.
bench: install
	$(BIN)/python -m bench $(ARGS)

bench-quick: install
	$(BIN)/python -m bench --quick $(ARGS)

clean:
	rm -rf $(VENV) .tools clients/python/qsched/api build *.egg-info

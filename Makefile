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
TS := clients/typescript
TS_DEPS := $(TS)/node_modules/.installed
TS_GEN := $(TS)/src/gen/.generated
TS_BUILD := $(TS)/dist/.built
TS_SOURCES := $(shell find $(TS)/src $(TS)/test $(TS)/examples -name '*.ts' -not -path '*/gen/*' 2>/dev/null)

.PHONY: all install run test proto lint bench bench-quick clean ts chromium

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

## test: lint, then every test (SQLite and the local PostgreSQL server, the TypeScript client and
## the web view in headless Chromium: tests/typescript)
test: lint ts chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## ts: the TypeScript client (clients/typescript): npm packages, code generated from protos/, tsc
ts: $(TS_BUILD)

$(TS_DEPS): $(TS)/package.json $(TS)/package-lock.json
	npm ci --prefix $(TS) --no-audit --no-fund --loglevel=error
	touch $@

$(TS_GEN): $(TS_DEPS) $(BUF) $(PROTOS) $(TS)/buf.gen.yaml
	rm -rf $(TS)/src/gen
	$(BUF) generate --template $(TS)/buf.gen.yaml
	touch $@

$(TS_BUILD): $(TS_GEN) $(TS_SOURCES) $(TS)/tsconfig.json $(TS)/tsconfig.examples.json
	cd $(TS) && node_modules/.bin/tsc -p . && node_modules/.bin/tsc -p tsconfig.examples.json
	touch $@

## chromium: Debian's chromium for the browser test (it skips, saying why, when this cannot install it)
chromium:
	@command -v chromium >/dev/null 2>&1 || \
		(DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)) || \
		echo "make: could not install chromium; the browser test will be skipped"

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
	rm -rf $(VENV) .tools clients/python/qsched/api build *.egg-info $(TS)/node_modules $(TS)/dist $(TS)/src/gen

# Two commands on a fresh machine: `make run` and `make test`. Everything else is set up here.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install run test test-fuzz lint format lock clean openapi chromium

install: $(INSTALLED)

$(INSTALLED): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(INSTALLED)

run: install  ## serve on http://127.0.0.1:8000 (SQLite and a generated dev secret unless configured)
	$(BIN)/todo-api serve

# A real Better Auth server (Node) for the end-to-end token test; skipped without npm outside CI.
BETTER_AUTH := tests/better_auth/node_modules/.package-lock.json

$(BETTER_AUTH): tests/better_auth/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/better_auth --no-audit --no-fund --loglevel=error; \
	else \
		echo "npm not found: the real Better Auth test will be skipped (it fails under CI=true)"; \
	fi

# Debian's Chromium for the docs browser test (tests/docs/test_browser.py), installed here when
# running as root; otherwise, or if that fails, the test is skipped (a failure under CI=true).
CHROMIUM := /usr/bin/chromium

chromium:
	@[ -x $(CHROMIUM) ] || { \
		if [ "$$(id -u)" = 0 ]; then \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -qq chromium >/dev/null 2>&1 || \
				{ apt-get update -qq && apt-get install -y -qq chromium; } || true; \
		fi; \
		[ -x $(CHROMIUM) ] || echo "$(CHROMIUM) not found: the docs browser test will be skipped" \
			"(it fails under CI=true); install it with: sudo apt-get install -y chromium"; \
	}

test: install $(BETTER_AUTH) chromium  ## the suite: SQLite always, PostgreSQL when reachable (required under CI=true)
	$(BIN)/pytest -m "not fuzz and not container"

# The hostile-input properties and Schemathesis over the whole API: a few thousand generated
# requests per database, about five minutes, so apart from `make test`; CI runs both.
test-fuzz: install
	$(BIN)/pytest -m fuzz

# The image for real (tests/deploy/test_container.py): a base made with mmdebstrap, the
# Containerfile built and run with podman against PostgreSQL; about a minute with the base
# cached (~/.cache/todo-api), so apart from `make test`; CI runs it. -s prints the figures.
.PHONY: test-container
test-container: install
	$(BIN)/pytest -m container -s tests/deploy

# openapi.json is the contract, checked in so that a change to it shows up in review; the
# tests fail when it differs from the app's document. It describes the default set-up (a
# shared secret, so the built-in accounts are mounted), whatever the local .env says.
openapi: install  ## regenerate openapi.json from the app
	env -i PATH="$$PATH" ACCOUNTS_ENABLED=true \
		BETTER_AUTH_SECRET=only-for-generating-the-openapi-document-0123456789 \
		$(BIN)/todo-api openapi > openapi.json.tmp
	mv openapi.json.tmp openapi.json

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

lock:  ## re-pin requirements.lock after changing pyproject.toml
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra bench --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis tests/better_auth/node_modules

# Load and scaling benchmark on PostgreSQL (bench/README.md). Options: BENCH_ARGS="--quick"
# or BENCH_* environment variables. Needs wrk: installed here when running as root.
.PHONY: bench
bench: install
	@command -v wrk >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }; \
		else \
			echo "wrk is not installed: run 'sudo apt-get install -y wrk', then 'make bench' again"; \
			exit 1; \
		fi; \
	}
	$(BIN)/python -m bench $(BENCH_ARGS)

# The README contract: `make up`, `make down`, `make test`, `make test-fast`, `make bench`.
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV

.PHONY: up down status test test-fast lint bench openapi bootstrap

bootstrap:
	@infra/local/bootstrap.sh

up: bootstrap
	@$(PY) -m infra.local.node up

down:
	@if [ -x $(PY) ]; then $(PY) -m infra.local.node down; else echo "nothing to stop"; fi

status: bootstrap
	@$(PY) -m infra.local.node status

lint: bootstrap
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy libs/access/src libs/render/src libs/service/src libs/storage/src services/catalog/src services/tiler/src services/ingest/src services/push/src services/discovery/src services/federation/src services/orders/src services/portal/src

# pytest starts and stops its own throwaway PostgreSQL cluster (see conftest.py), one per worker:
# two workers, each taking whole test files (module fixtures start their services once).
PYTEST_WORKERS ?= -n 2 --dist loadfile
test: lint
	$(PY) -m pytest $(PYTEST_WORKERS) --durations=20

# The edit-test loop: the unit tests only (not those marked slow; tests/e2e is slow throughout).
test-fast: bootstrap
	$(PY) -m pytest $(PYTEST_WORKERS) -q -m "not slow"

bench: bootstrap
	$(PY) -m pytest tests/bench -s -p no:randomly --override-ini="testpaths=tests/bench" --timeout=0 --override-ini="session_timeout="

openapi: bootstrap
	$(PY) -m infra.openapi

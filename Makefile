# Every target creates .venv on first use, so a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
IMAGE ?= dummy-vllm
SERVE_ARGS ?=
BENCH_CLIENTS_ARGS ?=

.PHONY: serve test fuzz soak lint typecheck bench bench-clients docker-build docker-build-dev docker-run docker-test clean

$(VENV)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

serve: $(VENV)/.runtime ## synthetic mode on 127.0.0.1:8000, SQLite under recordings/
	$(BIN)/python cli.py serve $(SERVE_ARGS)

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

# 50,000 generated requests against a live server; prints the answers by status (none may be 5xx).
fuzz: $(VENV)/.dev
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-50000} $(BIN)/python -m pytest -q -s --timeout 0 tests/test_fuzz.py

# 10 minutes of mixed valid, invalid and aborted traffic against every mode (SOAK_ARGS to change).
soak: $(VENV)/.dev
	$(BIN)/python -m benchmarks.soak --out benchmarks/SOAK_RESULTS.md $(SOAK_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.dev
	$(BIN)/python -m benchmarks.run

$(VENV)/.bench-clients: $(VENV)/.runtime requirements-bench-clients.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-bench-clients.txt
	touch $@

# vLLM's own `vllm bench serve` request functions (taken from the vLLM wheels on PyPI, cached
# under .cache/) against `serve --vllm-version` of the same release. Not part of `make test`.
bench-clients: $(VENV)/.bench-clients
	$(BIN)/python -m benchmarks.vllm_clients $(BENCH_CLIENTS_ARGS)

docker-build:
	docker build --target prod -t $(IMAGE) .

docker-build-dev:
	docker build --target dev -t $(IMAGE):dev .

docker-run: docker-build
	docker run --rm -p 8000:8000 -v $(CURDIR)/recordings:/app/recordings $(IMAGE)

docker-test: docker-build-dev
	docker run --rm $(IMAGE):dev

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .cache

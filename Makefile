# dupguard: make demo | make test | make bench
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: demo test bench venv lock clean-demo help chaos
help:
	@echo "make demo   - embedded PostgreSQL + chDB + Airflow standalone on http://localhost:8080"
	@echo "make test   - the whole test suite against engines it starts itself"
	@echo "make bench  - every benchmark under bench/, printed as tables"
	@echo "make chaos SEED=n - the chaos suite (tests/chaos), seeded, CHAOS_TRIALS trials of each kill (default 10)"
	@echo "make lock   - re-lock requirements.txt from requirements.in (hashed)"

venv: .venv/.synced
.venv/.synced: requirements.txt scripts/bootstrap.sh
	@scripts/bootstrap.sh

demo: venv
	@scripts/demo.sh

test: venv
	@scripts/test.sh $(PYTEST_ARGS)

chaos: venv
	@CHAOS_SEED=$(or $(SEED),14) CHAOS_TRIALS=$(or $(CHAOS_TRIALS),10) scripts/test.sh tests/chaos -q -s -p no:cacheprovider

bench: venv
	@$(PY) -m bench $(BENCH_ARGS)

lock:
	@test -x .uv/bin/uv || scripts/bootstrap.sh
	.uv/bin/uv pip compile --quiet --python-version 3.11 --generate-hashes requirements.in -o requirements.txt

clean-demo:
	@source scripts/env.sh && $(PY) -m tools.embedded_pg stop --root "$$LOCAL/pg" --port "$$PG_PORT" || true
	rm -rf .local

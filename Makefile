# shopdistill: the two commands of the quickstart are `make run` and `make test`.
# Both create .venv if missing, install torch (CPU build) first, then the project; a second call
# finds the stamp file up to date and starts in seconds.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.shopdistill-installed
PROFILE ?= demo
# dev: pytest, ruff, import-linter; onnx: ONNX export + onnxruntime serving; postgres: MLflow on
# PostgreSQL; ray: tasks on Ray (the tests of each skip without it)
EXTRAS ?= dev,onnx,postgres,ray

# The CLI and the test suite set the quiet, offline-safe environment themselves (flows/environment.py).

.PHONY: run test test-fast lint reference bench bench-full bench-quality bench-study bench-study-full serve clean-runs

run: $(STAMP)
	$(BIN)/shopdistill run --profile $(PROFILE)

# Everything CI runs: lint, format, import contracts, declared dependencies, every test tier.
test: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# The unit tier only (no end-to-end flow, CLI or benchmark runs): under a minute.
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# docs/configuration.md from the pydantic field descriptions (a test fails when it is stale).
reference: $(STAMP)
	$(BIN)/python -m shopdistill.components.config.reference > docs/configuration.md

# Schedule the flow from this process (nightly at 02:00 UTC); Ctrl-C stops (and pauses) it.
serve: $(STAMP)
	$(BIN)/shopdistill serve --profile $(PROFILE)

# Teacher vs. student with/without KD on ../shared/data/amazon-beauty (about 80-100 min on 2 cores from
# scratch: the beauty teacher is an ensemble of three; stored stages are reused on a rerun).
bench-quality: $(STAMP)
	$(BIN)/shopdistill bench quality --profile beauty $(BENCH_ARGS)

bench: $(STAMP)
	$(BIN)/shopdistill bench speed --profile beauty $(BENCH_ARGS)

bench-full: $(STAMP)
	$(BIN)/shopdistill bench speed --profile beauty --full $(BENCH_ARGS)

bench-study: $(STAMP)
	$(BIN)/shopdistill bench study --profile beauty $(BENCH_ARGS)

bench-study-full: $(STAMP)
	$(BIN)/shopdistill bench study --profile beauty --full $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/deptry .

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "shopdistill needs Python >= 3.11 (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: torch==2.13.0 is the CPU wheel on this machine; a bare `torch` requirement
# resolved before it would pull a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	@touch $@

clean-runs:
	rm -rf data/runs data/datasets

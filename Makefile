# `make help` lists the targets. Everything runs inside .venv, created on first use.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# DVC stages call `python -m ...`: put the venv first on PATH so they use its interpreter.
export PATH := $(BIN):$(PATH)

PORT ?= 8000
# pytest processes for `make test`: one per core; test files stay whole in one process.
TEST_WORKERS ?= auto

.DEFAULT_GOAL := help
.PHONY: help venv data repro run serve pipeline gate deploy smoke test test-fast lint format docs bench bench-scale bench-serve clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

# The locks (requirements*.txt, from requirements*.in by `make lock`) pin every package with
# its hashes, so a fork installs what CI tested. uv, pinned in the dev lock, installs them.
UV := $(BIN)/uv
LOCK := $(if $(GPU),requirements-gpu.txt,requirements-dev.txt)

# The first uv, by pip, from the dev lock's entry for it (its pin and hashes, which awk cuts
# out); later syncs update uv like any other package.
$(UV):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	awk '/^uv==/,!/\\$$/' requirements-dev.txt | \
		$(BIN)/python -m pip install -q --no-deps --require-hashes -r /dev/stdin

# `sync` makes .venv the lock exactly, removing what it does not list (GPU=1: tensorflow-cpu),
# and checks every file against the lock's hashes. The project comes in the same step (stdin),
# so a test running meanwhile never sees it uninstalled; -b builds it with the locked setuptools.
# --compile-bytecode does what pip does by default and uv does not: without it, wherever
# PYTHONDONTWRITEBYTECODE is set (CI machines, containers), every process compiles
# TensorFlow's and DVC's sources again at import (docs/benchmarks.md, "Installing").
$(VENV)/.installed: requirements-dev.txt requirements-gpu.txt pyproject.toml | $(UV)
	echo "-e ." | $(UV) pip sync -q --compile-bytecode --python $(BIN)/python -b $(LOCK) $(LOCK) -
	touch $@

venv: $(VENV)/.installed ## Create .venv (pipeline, serving, tests); GPU=1 for CUDA TensorFlow

# Linux x86-64 and CPython 3.11 (CI, Heroku, the Docker images) wherever `make lock` runs.
# The other sets take the dev set's versions (-c), so each is a subset of what CI tested.
LOCK_FLAGS = -q --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)

.PHONY: lock
lock: | $(UV) ## Lock requirements*.in into requirements*.txt (UPGRADE=1: newest everything)
	$(UV) pip compile $(LOCK_FLAGS) requirements-dev.in -o requirements-dev.txt
	$(UV) pip compile $(LOCK_FLAGS) -c requirements-dev.txt requirements-pipeline.in \
		-o requirements-pipeline.txt
	$(UV) pip compile $(LOCK_FLAGS) -c requirements-dev.txt requirements.in -o requirements.txt
	echo tensorflow-cpu | $(UV) pip compile $(LOCK_FLAGS) -c requirements-dev.txt --excludes - \
		requirements-gpu.in -o requirements-gpu.txt

data: venv ## Write the bundled sample (scikit-learn digits) into data/raw
	python -m image_classifier.sample_data

repro: venv ## Run the DVC pipeline (stages and their order: dvc.yaml, or `dvc dag`)
	dvc repro
	dvc metrics show

run: repro ## Environment, `dvc repro` on the bundled sample, then the web app (PORT=8000)
	python -m image_classifier.predict --no-progress saved_models/example.png
	@echo "Web app: http://localhost:$(PORT)  (Ctrl-C stops it)"
	$(MAKE) --no-print-directory serve

serve: venv ## Serve the exported model with gunicorn, as the Procfile does (PORT=8000)
	PORT=$(PORT) MALLOC_ARENA_MAX=2 gunicorn --config webapp/gunicorn.conf.py --pythonpath src "webapp:create_app()"

pipeline: venv ## CI's and the deploy's run: dvc pull (deploy/fetch.py), then dvc repro (ARGS: dvc exp run's)
	bash deploy/pipeline.sh $(ARGS)

gate: venv ## The deploy's quality gate: this model against the last deployed one (deploy/gate.sh)
	bash deploy/gate.sh

deploy: venv ## Push the web app with the model to Heroku (HEROKU_API_KEY, HEROKU_APP_NAME)
	bash deploy/heroku.sh

smoke: venv ## Smoke-check a deployed app with the example that ships with the model (URL=...)
	python deploy/smoke.py $(URL)

test: lint ## Lint, then every test (unit and end-to-end), one process per core
	pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: venv ## Unit tests only (skips the slow end-to-end runs)
	pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"

lint: venv ## ruff check and ruff format --check
	ruff check .
	ruff format --check .

docs: venv ## Write docs/params.md from the params dataclasses (src/image_classifier/params.py)
	python -m image_classifier.params > docs/params.md

format: venv ## Apply ruff's fixes and formatting
	ruff check --fix .
	ruff format .

bench: venv ## Time a new project's `dvc repro` on the digits and a no-op one; print test accuracy
	python bench/pipeline.py

bench-scale: venv ## Photo-sized data vs the Keras guide's pattern (IMAGES=5000)
	python bench/scale.py --images $(or $(IMAGES),5000)

bench-serve: venv ## Latency, throughput and memory of gunicorn serving the exported model
	python bench/serve.py

clean: ## Remove the virtual environment and caches (DVC outputs are kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache

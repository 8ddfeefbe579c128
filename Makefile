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

$(VENV)/.installed: requirements.txt requirements-pipeline.txt requirements-dev.txt \
		requirements-gpu.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
ifdef GPU
	# Same TensorFlow release with CUDA: both packages provide the `tensorflow` module.
	$(BIN)/python -m pip uninstall -q -y tensorflow-cpu
	$(BIN)/python -m pip install -q -r requirements-gpu.txt
endif
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed ## Create .venv (pipeline, serving, tests); GPU=1 for CUDA TensorFlow

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

bench: venv ## Time a fresh-clone `dvc repro` and a no-op one; print test accuracy
	python bench/pipeline.py

bench-scale: venv ## Photo-sized data vs the Keras guide's pattern (IMAGES=5000)
	python bench/scale.py --images $(or $(IMAGES),5000)

bench-serve: venv ## Latency, throughput and memory of gunicorn serving the exported model
	python bench/serve.py

clean: ## Remove the virtual environment and caches (DVC outputs are kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache

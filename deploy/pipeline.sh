#!/usr/bin/env bash
# The pipeline as CI and the deploy run it (`make pipeline`): fetch what DVC tracks from the
# remote (deploy/fetch.py says what is missing and why), then reproduce. Arguments go to
# `dvc exp run` (CI's quick run: -S train.epochs=5); without any, `dvc repro`.
set -euo pipefail
cd "$(dirname "$0")/.."
python deploy/fetch.py
if [ $# -gt 0 ]; then
  dvc exp run "$@"
else
  dvc repro
fi
dvc status

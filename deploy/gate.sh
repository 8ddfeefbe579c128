#!/usr/bin/env bash
# The quality gate as the deploy runs it and as you run it before a push (`make gate`): the
# model in the workspace against the last deployed one. The baseline is $BEFORE (the deploy
# workflow's main before the push), else HEAD when the workspace's model is not committed
# yet (a local retrain), else HEAD~1 (a CI run started by hand). gate.py compares the two only
# when they were trained for the same classes, and says which comparison it made.
set -euo pipefail
cd "$(dirname "$0")/.."
metrics=reports/metrics.json
baseline="${BEFORE:-}"
if [ "$baseline" = "0000000000000000000000000000000000000000" ]; then
  baseline=""  # the branch's first push: there was no main before it
fi
if [ -n "$baseline" ] && ! git cat-file -e "${baseline}^{commit}" 2>/dev/null; then
  echo "warning: baseline ${baseline} is not in this clone (force-push?); using HEAD~1"
  baseline=HEAD~1
fi
if [ -z "$baseline" ]; then
  if git diff --quiet HEAD -- dvc.lock "$metrics" 2>/dev/null; then baseline=HEAD~1; else baseline=HEAD; fi
fi
if ! git rev-parse --verify --quiet "${baseline}^{commit}" >/dev/null; then
  echo "note: no earlier commit to compare with; the model is judged alone"
  exec python -m image_classifier.gate "$@"
fi
exec python -m image_classifier.gate --baseline-rev "$baseline" "$@"

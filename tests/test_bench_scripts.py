"""Every benchmark script under bench/ at least starts: its imports resolve and `--help` works.

The benchmarks run by hand, not in CI, so a renamed helper can break one unnoticed
(bench/slow_clients.py imported a function bench/serve.py no longer had).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
# tutorial_app.py is the peer's WSGI app for gunicorn, not a command.
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name != "tutorial_app.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_starts(script):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout

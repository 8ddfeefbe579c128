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
# Not commands: the peer's WSGI app for gunicorn, and the log reader bench/scale.py imports.
LIBRARIES = {"tutorial_app.py", "stage_log.py"}
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name not in LIBRARIES)


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


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s != "machine.py"])
def test_bench_script_prints_the_machine_header(script):
    """Every figure the docs quote comes with the machine it was measured on (bench/machine.py)."""
    source = (BENCH / script).read_text()
    assert "from machine import print_header" in source
    assert "print_header(" in source.split("from machine import print_header", 1)[1]


def test_machine_header_names_the_cpu_and_its_count():
    result = subprocess.run(
        [sys.executable, str(BENCH / "machine.py"), "--packages", "NumPy"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    machine, versions = result.stdout.splitlines()
    assert machine.startswith("machine: ")
    assert f"os.cpu_count() {os.cpu_count()}" in machine
    assert f"usable (sched_getaffinity) {len(os.sched_getaffinity(0))}" in machine
    assert versions.startswith("versions: Python ") and "NumPy " in versions

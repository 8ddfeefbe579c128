"""timing.py: phases logged by a stage, read back from a `dvc repro` log by
bench/stage_log.py (bench/scale.py's breakdown)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from image_classifier import timing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import stage_log


def test_a_phase_is_logged_and_read_back_under_its_stage(caplog):
    with caplog.at_level(logging.INFO, logger="image_classifier.timing"):
        with timing.phase("convert"):
            pass
        with timing.phase("convert"):
            pass
    lines = [f"INFO image_classifier.timing: {r.getMessage()}" for r in caplog.records]
    log = "\n".join(
        [
            "Running stage 'split':",
            "INFO x: phase-like but not a phase 3 s",
            "Running stage 'export':",
            *lines,
            "Running stage 'audit':",
            "INFO image_classifier.timing: phase outliers 2.50 s",
        ]
    )
    found = stage_log.stage_phases(log)
    assert set(found) == {"split", "export", "audit"}
    assert found["split"] == {}
    assert set(found["export"]) == {"convert"} and 0 <= found["export"]["convert"] < 1
    assert found["audit"] == {"outliers": 2.5}


def resident_mb() -> float:
    status = Path("/proc/self/status").read_text(encoding="ascii")
    return int(next(x.split()[1] for x in status.splitlines() if x.startswith("VmRSS"))) / 1024


def test_a_stage_logs_its_own_peak_memory_read_back_under_its_stage(caplog):
    held = b"\x01" * (256 * 2**20)  # written, so resident
    now = resident_mb()
    with caplog.at_level(logging.INFO, logger="image_classifier.timing"):
        timing.log_peak()
    del held
    (line,) = [f"INFO image_classifier.timing: {r.getMessage()}" for r in caplog.records]
    log = f"Running stage 'split':\nRunning stage 'audit':\n{line}\n"
    peaks = stage_log.stage_peaks(log)
    assert set(peaks) == {"audit"}
    # The kernel batches its RSS counters per thread: equal to within a few hundred pages.
    assert 256 < now - 1 <= peaks["audit"] <= timing.own_peak_mb() + 1

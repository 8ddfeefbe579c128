"""timing.py: phases logged by a stage, read back from a `dvc repro` log by bench/scale.py."""

from __future__ import annotations

import logging

from image_classifier import timing


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
    found = timing.stage_phases(log)
    assert set(found) == {"split", "export", "audit"}
    assert found["split"] == {}
    assert set(found["export"]) == {"convert"} and 0 <= found["export"]["convert"] < 1
    assert found["audit"] == {"outliers": 2.5}

"""A stage's phases and peak memory, read back from a `dvc repro` log: the lines that
image_classifier.timing logs, under DVC's "Running stage" line that says whose they are."""

from __future__ import annotations

import re

from image_classifier.timing import MARK, PEAK_MARK


def stage_phases(log_text: str) -> dict[str, dict[str, float]]:
    """Each stage's phases, in seconds, from a `dvc repro` log (DVC's "Running stage" lines
    say whose they are)."""
    out: dict[str, dict[str, float]] = {}
    stage = None
    for line in log_text.splitlines():
        if started := re.match(r"Running stage '([^']+)'", line):
            stage = out.setdefault(started.group(1), {})
        elif stage is not None and (found := re.search(rf"{MARK} (\S+) ([\d.]+) s$", line)):
            stage[found.group(1)] = stage.get(found.group(1), 0.0) + float(found.group(2))
    return out


def stage_peaks(log_text: str) -> dict[str, float]:
    """Each stage process's own peak memory in MB, from a `dvc repro` log."""
    out: dict[str, float] = {}
    stage = None
    for line in log_text.splitlines():
        if started := re.match(r"Running stage '([^']+)'", line):
            stage = started.group(1)
        elif stage is not None and (found := re.search(rf"{PEAK_MARK} ([\d.]+) MB$", line)):
            out[stage] = float(found.group(1))
    return out

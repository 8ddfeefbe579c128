"""Where a stage's time goes: `with phase("convert"):` logs the seconds the block took.

bench/scale.py gathers these lines from `dvc repro`'s log into the per-stage breakdown of
docs/benchmarks.md; what a stage spends outside its phases is interpreter and library
start-up."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)

# The log line's first word: bench/scale.py finds the phases by it.
MARK = "phase"


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        log.info("%s %s %.2f s", MARK, name, time.perf_counter() - start)


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

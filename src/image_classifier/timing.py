"""Where a stage's time goes: `with phase("convert"):` logs the seconds the block took; and
its memory: `log_peak()` logs the process's own peak resident memory as it ends.

A phase also ends by handing the heap its block freed back to the kernel (glibc's
malloc_trim): glibc keeps freed memory for reuse, and what a phase frees (a conversion's
graphs, a sample of pixels) would otherwise count in the stage's memory until it exits
(docs/benchmarks.md, train's memory).

bench/stage_log.py reads these lines back from `dvc repro`'s log for bench/scale.py's
per-stage breakdown in docs/benchmarks.md; what a stage spends outside its phases is
interpreter and library start-up."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# The log line's first word: bench/stage_log.py finds the lines by it.
MARK = "phase"
PEAK_MARK = "peak_rss"


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        log.info("%s %s %.2f s", MARK, name, time.perf_counter() - start)
        release_freed_memory()


def release_freed_memory() -> None:
    """Return the free heap to the kernel where the C library is glibc (no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def own_peak_mb() -> float | None:
    """This process's peak resident memory (the kernel's VmHWM, Linux), None elsewhere. Not
    ru_maxrss: Linux carries that over exec from the spawning process (DVC, for a stage)."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    kib = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")), None)
    return int(kib) / 1024 if kib else None


def log_peak() -> None:
    """Log this process's peak memory; its worker processes, if any, are not counted."""
    peak = own_peak_mb()
    if peak is not None:
        log.info("%s %.1f MB", PEAK_MARK, peak)

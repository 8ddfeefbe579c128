"""One function over many files, in order, on every core: the split scan and prepare's decoding.

A forkserver process pool, because workers then start clean whatever threads the parent runs
(tqdm's monitor, TensorFlow's pools in a test process). Small jobs run in this process: starting
a pool costs more than it saves below PARALLEL_MIN_JOBS (docs/benchmarks.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, TypeVar

from tqdm import tqdm

J = TypeVar("J")
R = TypeVar("R")

PARALLEL_MIN_JOBS = 512


def default_workers() -> int:
    """The CPUs this process may run on (sched_getaffinity is Linux-only)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ordered_map(
    fn: Callable[[J], R],
    jobs: Sequence[J],
    *,
    workers: int | None = None,
    chunksize: int = 32,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
    desc: str = "",
    unit: str = "file",
    progress: bool = True,
) -> Iterator[R]:
    """fn(job) for every job, yielded in the order of jobs, with a progress bar.

    workers=None: every CPU, or this process alone for fewer than PARALLEL_MIN_JOBS jobs.
    initializer(*initargs) runs once in each worker (in this process when it runs alone)."""
    if workers is None:
        workers = 1 if len(jobs) < PARALLEL_MIN_JOBS else default_workers()
    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress)
    try:
        if workers == 1 or len(jobs) < 2 * workers:
            if initializer is not None:
                initializer(*initargs)
            for job in jobs:
                yield fn(job)
                bar.update()
        else:
            context = get_context("forkserver")
            with ProcessPoolExecutor(workers, context, initializer, initargs) as pool:
                for result in pool.map(fn, jobs, chunksize=chunksize):
                    yield result
                    bar.update()
    finally:
        bar.close()

"""Decode a split's images into a store file, in parallel over all cores.

Each worker process decodes with the shared decode_pixels and writes the pixels straight into
its image's slot of the output file (os.pwrite): no pixel data crosses a pipe and nothing
accumulates in memory. Unreadable files are reported by path; the survivors are then packed
together and the header gets the final count.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from image_classifier.errors import DataError
from image_classifier.manifests import Row
from image_classifier.preprocessing import ImageError, decode_pixels
from image_classifier.scan import Skipped
from image_classifier.store import HEADER_BYTES, npy_header


class DiskFullError(OSError):
    """The store did not fit on the disk; the message says how much space it needs."""


@dataclass(frozen=True)
class DecodeSettings:
    size: int
    color_mode: str
    max_pixels: int

    @property
    def record_shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, 3 if self.color_mode == "rgb" else 1)

    @property
    def record_bytes(self) -> int:
        return int(np.prod(self.record_shape))


@dataclass(frozen=True)
class DecodeResult:
    kept: list[Row]
    skipped: list[Skipped]


# Starting a process pool costs about a second (forkserver, imports); below this many images
# decoding in-process is faster (~450 JPEGs/s on one core of this machine).
PARALLEL_MIN_ROWS = 512


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# Per-worker state, set once by _init_worker (a file descriptor cannot be pickled per task).
_worker: dict = {}


def _init_worker(target: str, settings: DecodeSettings) -> None:
    _worker["fd"] = os.open(target, os.O_WRONLY)
    _worker["settings"] = settings


def decode_one(slot: int, row: Row, settings: DecodeSettings, fd: int) -> str | None:
    """Decode row into slot `slot` of the open store file; None, or why the image was skipped.

    Raises DataError when the file changed since the split (its hash no longer matches) and
    DiskFullError when the disk is full: neither is fixed by skipping one image.
    """
    try:
        data = Path(row.path).read_bytes()
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if hashlib.sha256(data).hexdigest() != row.sha256:
        raise DataError(f"{row.path} changed since the split stage ran: run `dvc repro`")
    try:
        pixels = decode_pixels(data, settings.size, settings.color_mode, settings.max_pixels)
    except ImageError as exc:
        return str(exc)
    try:
        os.pwrite(fd, pixels.tobytes(), HEADER_BYTES + slot * settings.record_bytes)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(exc.errno, "no space left on device") from None
        raise
    return None


def _decode_job(job: tuple[int, Row]) -> str | None:
    return decode_one(job[0], job[1], _worker["settings"], _worker["fd"])


def _compact(fd: int, ok: Sequence[bool], record_bytes: int) -> int:
    """Move the kept records down over the holes left by skipped ones; returns the count."""
    write = 0
    for read, keep in enumerate(ok):
        if not keep:
            continue
        if read != write:
            buf = os.pread(fd, record_bytes, HEADER_BYTES + read * record_bytes)
            os.pwrite(fd, buf, HEADER_BYTES + write * record_bytes)
        write += 1
    return write


def decode_rows(
    rows: Sequence[Row],
    target: Path,
    settings: DecodeSettings,
    workers: int | None = None,
    desc: str = "",
    progress: bool = True,
) -> DecodeResult:
    """Write a .npy of every readable image in rows (in order) to target; report the others.

    workers=None: all cores, except for small splits, which start no pool at all."""
    if workers is None:
        workers = 1 if len(rows) < PARALLEL_MIN_ROWS else default_workers()
    size = HEADER_BYTES + len(rows) * settings.record_bytes
    with target.open("wb") as fh:
        fh.write(npy_header((len(rows), *settings.record_shape)))
    try:
        # Reserve the blocks now: a full disk fails here, at once, not half-way through.
        os.truncate(target, size)
        fd = os.open(target, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(exc.errno, "no space left on device") from None
        raise
    bar = tqdm(total=len(rows), desc=f"decoding {desc}", unit="img", disable=not progress)
    jobs = list(enumerate(rows))
    reasons: list[str | None] = []
    if workers == 1 or len(rows) < 2 * workers:
        _init_worker(str(target), settings)
        try:
            for job in jobs:
                reasons.append(_decode_job(job))
                bar.update()
        finally:
            os.close(_worker.pop("fd"))
    else:
        # forkserver: workers start clean, whatever threads the parent process runs.
        with ProcessPoolExecutor(
            workers, get_context("forkserver"), _init_worker, (str(target), settings)
        ) as pool:
            for reason in pool.map(_decode_job, jobs, chunksize=32):
                reasons.append(reason)
                bar.update()
    bar.close()
    ok = [reason is None for reason in reasons]
    skipped = [Skipped(row.path, r) for row, r in zip(rows, reasons, strict=True) if r is not None]
    fd = os.open(target, os.O_RDWR)
    try:
        kept = _compact(fd, ok, settings.record_bytes) if skipped else len(rows)
        os.ftruncate(fd, HEADER_BYTES + kept * settings.record_bytes)
        os.pwrite(fd, npy_header((kept, *settings.record_shape)), 0)
    finally:
        os.close(fd)
    return DecodeResult([row for row, keep in zip(rows, ok, strict=True) if keep], skipped)

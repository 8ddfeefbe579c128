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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from image_classifier.data import archives
from image_classifier.data.manifests import Row
from image_classifier.data.parallel import ordered_map
from image_classifier.data.scan import Skipped
from image_classifier.data.store import HEADER_BYTES, npy_header
from image_classifier.errors import DataError
from image_classifier.preprocessing import ImageError, channels, decode_pixels


class DiskFullError(OSError):
    """The store did not fit on the disk; the message says how much space it needs."""


@dataclass(frozen=True)
class DecodeSettings:
    size: int
    color_mode: str
    max_pixels: int

    @property
    def record_shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, channels(self.color_mode))

    @property
    def record_bytes(self) -> int:
        return int(np.prod(self.record_shape))


@dataclass(frozen=True)
class DecodeResult:
    kept: list[Row]
    skipped: list[Skipped]


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
        data = archives.read_bytes(row.path)
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
    try:
        reasons = list(
            ordered_map(
                _decode_job,
                list(enumerate(rows)),
                workers=workers,
                initializer=_init_worker,
                initargs=(str(target), settings),
                desc=f"decoding {desc}",
                unit="img",
                progress=progress,
            )
        )
    finally:
        if "fd" in _worker:  # decoded in this process: the descriptor is this one's to close
            os.close(_worker.pop("fd"))
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

"""Find the usable images in a folder of class sub-folders (and of zip shards of them).

Real folders are messy: hidden files (.DS_Store, ._x.jpg) are ignored silently; anything whose
header Pillow cannot read (or that is over image.max_pixels) is skipped with a warning that
names the file. Only headers and a thumbnail for the near-duplicate hash are read here:
decoding every image at full size is `prepare`'s job, done once, in parallel, and it reports
the files whose pixel data turns out to be corrupt.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

from image_classifier.data import archives
from image_classifier.data.near_duplicates import DETAIL_BYTES, image_fingerprint
from image_classifier.data.parallel import ordered_map
from image_classifier.errors import DataError
from image_classifier.preprocessing import ImageError, check_header

log = logging.getLogger(__name__)


# slots: a scan of 20,000 images holds 20,000 of these; memory must not grow with the dataset
# faster than the few bytes each really needs.
@dataclass(frozen=True, slots=True)
class ImageFile:
    path: str  # POSIX form, as the manifests store it
    label: str
    sha256: str
    phash: int | None = None  # perceptual hash (near_duplicates.py); None: none
    detail: bytes | None = None  # its confirming detail band (near_duplicates.py)


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class ScanResult:
    files: tuple[ImageFile, ...]
    skipped: tuple[Skipped, ...]
    classes: tuple[str, ...]  # every class folder, including ones left with no usable image


def list_candidates(root: Path) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """Class names, (path, class) candidates, and stray files lying outside any class folder.

    Zip shards directly in root (data/archives.py) count as class folders of their members."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist (set data.raw_dir in params.yaml)")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    folders = [p.name for p in entries if p.is_dir()]
    shards = [p for p in entries if archives.is_shard(p)]
    candidates: list[tuple[str, str]] = []
    for name in folders:
        found = []
        for folder, dirs, files in os.walk(root / name):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [Path(folder, f).as_posix() for f in files if not f.startswith(".")]
        candidates += [(path, name) for path in sorted(found)]
    strays = [p.as_posix() for p in entries if p.is_file() and p not in shards]
    for shard in shards:
        members, outside = archives.list_shard(shard)
        candidates += members
        strays += outside
    classes = sorted(set(folders) | {label for _, label in candidates})
    if not classes:
        raise DataError(
            f"image folder {root} has no class sub-folders (expected {root}/<class>/* or zip "
            "shards of <class>/* members)"
        )
    return classes, candidates, strays


class Checked(NamedTuple):
    sha256: str | None  # None: not usable, see reason
    phash: int | None
    detail: bytes | None
    reason: str | None


def check_file(path: str | Path, max_pixels: int, perceptual: bool = False) -> Checked:
    """Content hash (and near-duplicate fingerprint) of a usable image, or why it is not one.

    The fingerprint decodes a small thumbnail (1/8 scale for JPEGs); a file whose pixels
    cannot be decoded gets none here and is reported by `prepare`, which decodes it for real."""
    try:
        data = archives.read_bytes(str(path))
        size = check_header(data, max_pixels)
    except (ImageError, OSError) as exc:
        return Checked(None, None, None, str(exc))
    found = None
    if perceptual:
        with contextlib.suppress(ImageError):
            found = image_fingerprint(data, size, max_pixels)
    if found is None:
        return Checked(hashlib.sha256(data).hexdigest(), None, None, None)
    return Checked(hashlib.sha256(data).hexdigest(), found.phash, found.detail, None)


class _Results:
    """Each image's check while the worker pool runs, in arrays: a third of the memory of an
    ImageFile (its strings, int and bytes objects), which is built once the pool is gone."""

    def __init__(self, n: int) -> None:
        self.usable = np.zeros(n, dtype=bool)
        self.digests = np.zeros((n, 32), dtype=np.uint8)
        self.has_fingerprint = np.zeros(n, dtype=bool)
        self.phashes = np.zeros(n, dtype=np.uint64)
        self.details = np.zeros((n, DETAIL_BYTES), dtype=np.int8)

    def put(self, i: int, checked: Checked) -> None:
        if checked.sha256 is None:
            return
        self.usable[i] = True
        self.digests[i] = np.frombuffer(bytes.fromhex(checked.sha256), dtype=np.uint8)
        if checked.phash is not None and checked.detail is not None:
            self.has_fingerprint[i] = True
            self.phashes[i] = checked.phash
            self.details[i] = np.frombuffer(checked.detail, dtype=np.int8)

    def file(self, i: int, path: str, label: str) -> ImageFile:
        if not self.has_fingerprint[i]:
            return ImageFile(path, label, self.digests[i].tobytes().hex())
        phash, detail = int(self.phashes[i]), self.details[i].tobytes()
        return ImageFile(path, label, self.digests[i].tobytes().hex(), phash, detail)


def scan_folder(
    root: Path, max_pixels: int, progress: bool = True, perceptual: bool = False
) -> ScanResult:
    """Every usable image under root; `perceptual` also computes near-duplicate hashes."""
    classes, candidates, strays = list_candidates(root)
    # Two lists of shared strings instead of a tuple per image (docs/benchmarks.md, memory).
    paths = [path for path, _ in candidates]
    labels = [label for _, label in candidates]
    del candidates
    skipped = [Skipped(p, "not inside a class folder") for p in strays]
    results = _Results(len(paths))
    checked = ordered_map(
        partial(check_file, max_pixels=max_pixels, perceptual=perceptual),
        paths,
        chunksize=64,
        desc=f"scanning {root}",
        progress=progress,
    )
    for i, result in enumerate(checked):
        results.put(i, result)
        if result.sha256 is None:
            skipped.append(Skipped(paths[i], result.reason or "unreadable"))
    files = tuple(results.file(i, p, labels[i]) for i, p in enumerate(paths) if results.usable[i])
    for item in skipped:
        log.warning("skipped %s: %s", item.path, item.reason)
    return ScanResult(files, tuple(skipped), tuple(classes))

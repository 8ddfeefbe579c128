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
from pathlib import Path
from typing import NamedTuple

from image_classifier.data import archives
from image_classifier.data.near_duplicates import image_fingerprint
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


def _check_job(job: tuple[str, int, bool]) -> Checked:
    return check_file(*job)


def scan_folder(
    root: Path, max_pixels: int, progress: bool = True, perceptual: bool = False
) -> ScanResult:
    """Every usable image under root; `perceptual` also computes near-duplicate hashes."""
    classes, candidates, strays = list_candidates(root)
    files: list[ImageFile] = []
    skipped = [Skipped(p, "not inside a class folder") for p in strays]
    checked = ordered_map(
        _check_job,
        [(path, max_pixels, perceptual) for path, _ in candidates],
        chunksize=64,
        desc=f"scanning {root}",
        progress=progress,
    )
    for (path, label), result in zip(candidates, checked, strict=True):
        if result.sha256 is None:
            skipped.append(Skipped(path, result.reason or "unreadable"))
        else:
            files.append(ImageFile(path, label, result.sha256, result.phash, result.detail))
    for item in skipped:
        log.warning("skipped %s: %s", item.path, item.reason)
    return ScanResult(tuple(files), tuple(skipped), tuple(classes))

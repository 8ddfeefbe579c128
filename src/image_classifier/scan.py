"""Find the usable images in a folder of class sub-folders.

Real folders are messy: hidden files (.DS_Store, ._x.jpg) are ignored silently; anything whose
header Pillow cannot read (or that is over image.max_pixels) is skipped with a warning that
names the file. Only headers are read here: decoding every image is `prepare`'s job, done once,
in parallel, and it reports the files whose pixel data turns out to be corrupt.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from image_classifier.preprocessing import ImageError, check_header

log = logging.getLogger(__name__)


# slots: a scan of 20,000 images holds 20,000 of these; memory must not grow with the dataset
# faster than the few bytes each really needs.
@dataclass(frozen=True, slots=True)
class ImageFile:
    path: str  # POSIX form, as the manifests store it
    label: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class ScanResult:
    files: tuple[ImageFile, ...]
    skipped: tuple[Skipped, ...]
    classes: tuple[str, ...]  # every class folder, including ones left with no usable image


class DataError(ValueError):
    """The image folder cannot give a usable dataset; the message names the folder or class."""


def list_candidates(root: Path) -> tuple[list[str], list[tuple[str, str]], list[Path]]:
    """Class names, (file, class) candidates, and stray files lying outside any class folder."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist (set data.raw_dir in params.yaml)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"image folder {root} has no class sub-folders (expected {root}/<class>/*)")
    candidates = []
    for name in classes:
        found = []
        for folder, dirs, files in os.walk(root / name):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [Path(folder, f).as_posix() for f in files if not f.startswith(".")]
        candidates += [(path, name) for path in sorted(found)]
    strays = [p for p in sorted(root.iterdir()) if p.is_file() and not p.name.startswith(".")]
    return classes, candidates, strays


def check_file(path: str | Path, max_pixels: int) -> tuple[str | None, str | None]:
    """(sha256, None) for a usable image, (None, reason) otherwise."""
    try:
        data = Path(path).read_bytes()
        check_header(data, max_pixels)
    except (ImageError, OSError) as exc:
        return None, str(exc)
    return hashlib.sha256(data).hexdigest(), None


def scan_folder(root: Path, max_pixels: int, progress: bool = True) -> ScanResult:
    classes, candidates, strays = list_candidates(root)
    files: list[ImageFile] = []
    skipped = [Skipped(p.as_posix(), "not inside a class folder") for p in strays]
    for path, label in tqdm(candidates, desc=f"scanning {root}", unit="file", disable=not progress):
        digest, reason = check_file(path, max_pixels)
        if digest is None:
            skipped.append(Skipped(path, reason or "unreadable"))
        else:
            files.append(ImageFile(path, label, digest))
    for item in skipped:
        log.warning("skipped %s: %s", item.path, item.reason)
    return ScanResult(tuple(files), tuple(skipped), tuple(classes))

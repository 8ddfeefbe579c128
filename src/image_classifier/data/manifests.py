"""Split manifests: one `path,label,sha256` CSV per split, UTF-8, paths in POSIX form.

The content hash makes a manifest an exact stand-in for the files it names: DVC re-runs the
stages after `split` only when an image that is used actually changed, never because a stray
file appeared or an identical image was saved again.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from image_classifier import atomic, config
from image_classifier.errors import DataError, MissingFileError


class Row(NamedTuple):
    path: str
    label: str
    sha256: str


FIELDS = Row._fields


def write_manifest(path: Path, rows: Iterable[Row]) -> None:
    # Row by row into the temp file: a 100,000-row manifest built as one string, then encoded,
    # would hold three copies of it at once.
    with atomic.atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(FIELDS)
        writer.writerows(rows)


def read_manifest(path: Path) -> list[Row]:
    if not path.is_file():
        raise MissingFileError(f"{path} not found: run the split stage first (dvc repro)")
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != FIELDS:
                raise DataError(
                    f"{path}: expected columns {FIELDS}, found {reader.fieldnames}: re-run the "
                    "split stage (dvc repro -f -s split)"
                )
            # One string per class, not per row: 100,000 rows hold ten labels.
            return [Row(row["path"], sys.intern(row["label"]), row["sha256"]) for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(
            f"{path} is damaged ({exc}): re-run the split stage (dvc repro -f -s split)"
        ) from None


def read_classes(path: Path = config.CLASSES_FILE) -> list[str]:
    """The trained model's classes, in output order (written by the train stage)."""
    return json.loads(path.read_text(encoding="utf-8"))


def class_names(rows: Iterable[Row]) -> list[str]:
    """Classes in model-output order: sorted, so the order never depends on file order."""
    return sorted({row.label for row in rows})

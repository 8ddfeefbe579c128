"""Split manifests: one `path,label` CSV per split, UTF-8, paths in POSIX form."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path

from image_classifier import atomic, config

FIELDS = ("path", "label")


def format_manifest(rows: Iterable[tuple[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FIELDS)
    writer.writerows(rows)
    return buf.getvalue()


def write_manifest(path: Path, rows: Iterable[tuple[str, str]]) -> None:
    atomic.write_text(path, format_manifest(rows))


def read_manifest(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the split stage first (dvc repro)")
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise ValueError(f"{path}: expected columns {FIELDS}, found {reader.fieldnames}")
        return [(row["path"], row["label"]) for row in reader]


def read_classes(path: Path = config.CLASSES_FILE) -> list[str]:
    """The trained model's classes, in output order (written by the train stage)."""
    return json.loads(path.read_text(encoding="utf-8"))


def class_names(rows: Iterable[tuple[str, str]]) -> list[str]:
    """Classes in model-output order: sorted, so the order never depends on file order."""
    return sorted({label for _, label in rows})

"""Fixing labels without moving files: a CSV of `path,label` rows over the folders' labels.

A row's label replaces the label its class folder gives; the label `drop` leaves the image
out. Paths are written as the manifests write them (`data/raw/<class>/<file>`). Every mistake
is reported with the file and line, before anything is written.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from image_classifier.data.scan import ImageFile
from image_classifier.errors import DataError

DROP = "drop"
HEADER = ["path", "label"]


@dataclass(frozen=True)
class Relabels:
    labels: dict[str, str]  # path -> new label, or DROP
    lines: dict[str, int]  # path -> its line in the CSV, for messages


def read_relabels(path: Path) -> Relabels:
    """Parse the CSV; a missing file means no relabels. DataError names file and line."""
    if not path.is_file():
        return Relabels({}, {})
    labels: dict[str, str] = {}
    lines: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != HEADER:
            raise DataError(f"{path}:1: expected the header 'path,label', got {header}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise DataError(f"{where}: expected 'path,label', got {row}")
            image, label = row[0].strip(), row[1].strip()
            if image in labels:
                raise DataError(f"{where}: {image} is already relabelled on line {lines[image]}")
            labels[image], lines[image] = label, reader.line_num
    return Relabels(labels, lines)


def apply_relabels(
    files: Sequence[ImageFile], classes: Sequence[str], relabels: Relabels, source: Path
) -> tuple[list[ImageFile], dict[str, int]]:
    """The scanned files with the relabels applied, and counts of what changed."""
    by_path = {f.path: f for f in files}
    for image, label in relabels.labels.items():
        where = f"{source}:{relabels.lines[image]}"
        if image not in by_path:
            raise DataError(f"{where}: no usable image {image} (paths as in reports/split.json)")
        if label != DROP and label not in classes:
            raise DataError(
                f"{where}: unknown class {label!r} for {image} "
                f"(classes: {', '.join(classes)}; or '{DROP}')"
            )
    out: list[ImageFile] = []
    changed = dropped = 0
    for f in files:
        label = relabels.labels.get(f.path, f.label)
        if label == DROP:
            dropped += 1
            continue
        if label != f.label:
            changed += 1
            f = replace(f, label=label)
        out.append(f)
    left = Counter(f.label for f in out)
    for c in classes:
        if left[c] == 0:
            moved = sorted(relabels.lines[f.path] for f in files if f.label == c)
            raise DataError(
                f"{source}:{','.join(map(str, moved))}: the relabels leave no image in class "
                f"{c!r} (each of its images is relabelled or dropped on those lines)"
            )
    return out, {"relabelled": changed, "dropped": dropped}

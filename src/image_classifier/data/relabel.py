"""Fixing labels without moving files: a CSV of `path,label[,sha256]` rows over the folders'
labels.

A row's label replaces the label its class folder gives; the label `drop` leaves the image
out. Paths are written as the manifests write them (`data/raw/<class>/<file>`). The optional
`sha256` column (what `python -m image_classifier.audit accept` writes) names the image by its
content, so a row follows its image through a rename or into a zip shard; the path is then
the readable part. A row without it matches by path, as files written before it did. A row
whose image is gone is reported and kept, never fatal: the image may come back. Every other
mistake is reported with the file and line, before anything is written.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from image_classifier.data.scan import ImageFile
from image_classifier.errors import DataError

DROP = "drop"
HEADER = ["path", "label", "sha256"]
PATH_ONLY_HEADER = ["path", "label"]  # files written before the sha256 column; still read
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Relabel:
    path: str
    label: str
    sha256: str | None  # None: match by path only
    line: int  # in the CSV, for messages


@dataclass(frozen=True)
class Relabels:
    rows: tuple[Relabel, ...]

    @property
    def labels(self) -> dict[str, str]:
        """path -> new label (or DROP), as the rows name them."""
        return {r.path: r.label for r in self.rows}


@dataclass(frozen=True)
class Applied:
    files: list[ImageFile]
    relabelled: int
    dropped: int
    moved: int  # rows matched by content at another path (renamed, packed)
    missing: list[Relabel]  # rows whose image is gone: kept in the file, reported


def _parse_row(row: list[str], header: list[str], where: str, line: int) -> Relabel | None:
    if not row or all(not cell.strip() for cell in row):
        return None
    cells = [cell.strip() for cell in row]
    if not 2 <= len(cells) <= len(header) or not cells[0] or not cells[1]:
        raise DataError(f"{where}: expected '{','.join(header)}', got {row}")
    sha256 = cells[2] if len(cells) == 3 and cells[2] else None
    if sha256 is not None and not SHA256.fullmatch(sha256):
        raise DataError(f"{where}: sha256 must be 64 lowercase hex digits, got {sha256!r}")
    return Relabel(cells[0], cells[1], sha256, line)


def read_relabels(path: Path) -> Relabels:
    """Parse the CSV; a missing file means no relabels. DataError names file and line."""
    if not path.is_file():
        return Relabels(())
    rows: list[Relabel] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header not in (HEADER, PATH_ONLY_HEADER):
            raise DataError(f"{path}:1: expected the header 'path,label[,sha256]', got {header}")
        by_path: dict[str, int] = {}
        by_sha: dict[str, int] = {}
        for row in reader:
            where = f"{path}:{reader.line_num}"
            parsed = _parse_row(row, header, where, reader.line_num)
            if parsed is None:
                continue
            if parsed.path in by_path:
                raise DataError(
                    f"{where}: {parsed.path} is already relabelled on line {by_path[parsed.path]}"
                )
            if parsed.sha256 in by_sha:
                raise DataError(
                    f"{where}: content {parsed.sha256} is already relabelled on line "
                    f"{by_sha[parsed.sha256]}"
                )
            by_path[parsed.path] = parsed.line
            if parsed.sha256 is not None:
                by_sha[parsed.sha256] = parsed.line
            rows.append(parsed)
    return Relabels(tuple(rows))


def format_relabels(rows: Iterable[tuple[str, str, str | None]]) -> str:
    """The CSV text of (path, label, sha256 or None) rows, with the current header."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows((path, label, sha256 or "") for path, label, sha256 in rows)
    return buf.getvalue()


def match_rows(
    files: Sequence[ImageFile], relabels: Relabels
) -> tuple[dict[int, Relabel], list[Relabel], int]:
    """Which row relabels each file index, the rows whose image is gone, and how many rows
    matched by content at another path. A row matches every file with its content, else the
    file at its path; two rows giving one file different labels is a DataError."""
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(files):
        by_sha[f.sha256].append(i)
    by_path = {f.path: i for i, f in enumerate(files)}
    matched: dict[int, Relabel] = {}
    missing: list[Relabel] = []
    moved = 0
    for row in relabels.rows:
        targets = by_sha.get(row.sha256, []) if row.sha256 else []
        if targets and all(files[i].path != row.path for i in targets):
            moved += 1
        if not targets and row.path in by_path:
            targets = [by_path[row.path]]
        if not targets:
            missing.append(row)
        for i in targets:
            other = matched.setdefault(i, row)
            if other.label != row.label:
                raise DataError(
                    f"line {row.line} relabels {files[i].path} {row.label!r} but line "
                    f"{other.line} relabels it {other.label!r}"
                )
    return matched, missing, moved


def apply_relabels(
    files: Sequence[ImageFile], classes: Sequence[str], relabels: Relabels, source: Path
) -> Applied:
    """The scanned files with the relabels applied, what changed, and the rows left unmatched."""
    try:
        matched, missing, moved = match_rows(files, relabels)
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from None
    for row in sorted(set(matched.values()), key=lambda r: r.line):
        if row.label != DROP and row.label not in classes:
            raise DataError(
                f"{source}:{row.line}: unknown class {row.label!r} for {row.path} "
                f"(classes: {', '.join(classes)}; or '{DROP}')"
            )
    out: list[ImageFile] = []
    changed = dropped = 0
    for i, f in enumerate(files):
        label = matched[i].label if i in matched else f.label
        if label == DROP:
            dropped += 1
            continue
        if label != f.label:
            changed += 1
            f = replace(f, label=label)
        out.append(f)
    left, before = Counter(f.label for f in out), Counter(f.label for f in files)
    for c in classes:
        if left[c] == 0 and before[c] > 0:
            lines = sorted({matched[i].line for i, f in enumerate(files) if f.label == c})
            raise DataError(
                f"{source}:{','.join(map(str, lines))}: the relabels leave no image in class "
                f"{c!r} (each of its images is relabelled or dropped on those lines)"
            )
    return Applied(out, changed, dropped, moved, missing)

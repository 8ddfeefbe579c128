"""Stage `split`: scan the image folder and write seeded, stratified train/val/test manifests.

python -m image_classifier.split

Writes data/splits/{train,val,test}.csv (path, label, content hash) and data/splits/scan.json
(what was skipped, duplicates and near-duplicates); `prepare` turns the latter into
reports/split.json once it knows which images really decode. The data.relabel CSV overrides
folder labels or drops images (data/relabel.py); its rows whose image is gone are reported,
not fatal. With train.init_from, the images that model trained on (its trained_on.csv) are
kept in train. Near-duplicate groups too large for any split are placed whole and reported.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path

from image_classifier import atomic, config
from image_classifier.cli import run_stage
from image_classifier.data.assignment import (
    Assignment,
    Duplicate,
    assign_splits,
    find_duplicates,
)
from image_classifier.data.manifests import Row, read_manifest, write_manifest
from image_classifier.data.relabel import Applied, apply_relabels, read_relabels
from image_classifier.data.scan import ScanResult, scan_folder
from image_classifier.errors import DataError
from image_classifier.params import Params
from image_classifier.timing import phase

log = logging.getLogger(__name__)


def relabel_report(applied: Applied) -> dict:
    return {
        "relabelled": applied.relabelled,
        "dropped": applied.dropped,
        "relabel_moved": applied.moved,
        "relabel_missing_count": len(applied.missing),
        "relabel_missing": [
            {"line": r.line, "path": r.path, "label": r.label, "sha256": r.sha256}
            for r in applied.missing
        ],
    }


def scan_report(
    scan: ScanResult,
    assignment: Assignment,
    duplicates: list[Duplicate],
    pinned: int,
    applied: Applied,
) -> dict:
    splits, groups = assignment.splits, assignment.groups
    across = [d for d in duplicates if len(d.splits) > 1]
    split_of = {f.path: name for name, files in splits.items() for f in files}
    near = [
        {
            "paths": [groups.files[i].path for i in g],
            "labels": sorted({groups.files[i].label for i in g}),
            "split": split_of[groups.files[g[0]].path],
        }
        for g in groups.near_duplicates()
    ]
    return {
        "counts": {
            name: dict(sorted(Counter(f.label for f in files).items()))
            for name, files in splits.items()
        },
        "totals": {name: len(files) for name, files in splits.items()},
        "classes": sorted({f.label for f in scan.files}),
        "skipped_count": len(scan.skipped),
        "skipped": [dataclasses.asdict(s) for s in scan.skipped],
        "duplicate_groups": len(duplicates),
        "duplicates_across_splits": len(across),
        "duplicates": [dataclasses.asdict(d) for d in duplicates],
        "near_duplicate_groups": len(near),
        "near_duplicates": near,
        "largest_group": max((len(g) for g in groups.groups), default=0),
        "groups_too_large_count": len(assignment.too_large),
        "groups_too_large": [dataclasses.asdict(t) for t in assignment.too_large],
        "pinned_to_train": pinned,
        **relabel_report(applied),
    }


def pinned_hashes(init_from: str | None) -> frozenset[str]:
    """Content hashes the init_from model trained on: they must stay out of val and test."""
    if not init_from:
        return frozenset()
    path = config.trained_on_path(Path(init_from))
    if not path.is_file():
        raise DataError(
            f"train.init_from: {path} not found. The train stage writes it beside model.keras "
            "(copy it with the model); without it the split cannot keep the images that model "
            "trained on out of val and test"
        )
    return frozenset(row.sha256 for row in read_manifest(path))


def run(params: Params) -> dict:
    perceptual = params.split.near_duplicate_bits is not None
    with phase("scan_and_hash"):
        scan = scan_folder(
            Path(params.data.raw_dir), params.image.max_pixels, perceptual=perceptual
        )
    relabel_file = Path(params.data.relabel)
    applied = apply_relabels(scan.files, scan.classes, read_relabels(relabel_file), relabel_file)
    for row in applied.missing:
        log.warning(
            "%s:%d: no image %s%s: row kept, not applied",
            relabel_file,
            row.line,
            row.path,
            f" nor any with its content {row.sha256}" if row.sha256 else "",
        )
    pinned = pinned_hashes(params.train.init_from)
    with phase("assign"):
        assignment = assign_splits(applied.files, scan.classes, params.split, pinned)
    for big in assignment.too_large:
        log.warning(
            "a group of %d identical or near-duplicate images of %s fits no split's share; "
            "placed whole in %s (ratios drift): %s, ...",
            big.size,
            ", ".join(big.labels),
            big.split,
            ", ".join(big.paths),
        )
    splits = assignment.splits
    duplicates = find_duplicates(splits)
    for dup in duplicates:
        if len(dup.labels) > 1:
            log.warning(
                "same image in classes %s (kept in one split, %s): %s",
                dup.labels,
                dup.splits[0],
                ", ".join(dup.paths),
            )
    for name, files in splits.items():
        write_manifest(config.manifest_path(name), (Row(f.path, f.label, f.sha256) for f in files))
    n_pinned = sum(f.sha256 in pinned for f in splits["train"])
    report = scan_report(scan, assignment, duplicates, n_pinned, applied)
    atomic.write_json(config.SCAN_REPORT, report)
    log.info(
        "split %s; skipped %d files; %d relabelled and %d dropped by %s (%d rows without an "
        "image); %d duplicate groups, %d near-duplicate groups (largest group: %d images); %d "
        "images the init_from model trained on kept in train",
        report["totals"],
        report["skipped_count"],
        report["relabelled"],
        report["dropped"],
        relabel_file,
        report["relabel_missing_count"],
        report["duplicate_groups"],
        report["near_duplicate_groups"],
        report["largest_group"],
        n_pinned,
    )
    return report


if __name__ == "__main__":
    run_stage(run)

"""Stage `split`: scan the image folder and write seeded, stratified train/val/test manifests.

python -m image_classifier.split

Writes data/splits/{train,val,test}.csv (path, label, content hash) and data/splits/scan.json
(what was skipped, duplicates); `prepare` turns the latter into reports/split.json once it
knows which images really decode.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path

from image_classifier import atomic, config
from image_classifier.cli import run_stage
from image_classifier.manifests import Row, write_manifest
from image_classifier.params import Params
from image_classifier.scan import ImageFile, ScanResult, scan_folder
from image_classifier.splitting import Duplicate, assign_splits, find_duplicates

log = logging.getLogger(__name__)


def split_report(
    scan: ScanResult, splits: dict[str, list[ImageFile]], duplicates: list[Duplicate]
) -> dict:
    across = [d for d in duplicates if len(d.splits) > 1]
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
    }


def run(params: Params) -> dict:
    scan = scan_folder(Path(params.data.raw_dir), params.image.max_pixels)
    splits = assign_splits(scan.files, scan.classes, params.split)
    duplicates = find_duplicates(splits)
    for dup in duplicates:
        if len(dup.splits) > 1:
            log.warning(
                "same image in classes %s across splits %s: %s",
                dup.labels,
                dup.splits,
                ", ".join(dup.paths),
            )
    for name, files in splits.items():
        write_manifest(config.manifest_path(name), (Row(f.path, f.label, f.sha256) for f in files))
    report = split_report(scan, splits, duplicates)
    atomic.write_json(config.SCAN_REPORT, report)
    log.info(
        "split %s; skipped %d files; %d duplicate groups (%d across splits)",
        report["totals"],
        report["skipped_count"],
        report["duplicate_groups"],
        report["duplicates_across_splits"],
    )
    return report


if __name__ == "__main__":
    run_stage(run)

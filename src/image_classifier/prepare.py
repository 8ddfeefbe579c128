"""Stage `prepare`: decode every image of every split once, in parallel, into data/prepared.

    python -m image_classifier.prepare

Runs again only when the manifests or `image.*` change: the manifests carry each image's
content hash, so they stand in for the raw folder it reads. Train, evaluate and export read the
uint8 pixels from here in batches (data/store.py), so no later stage decodes an image or holds a
split in memory. Files whose pixels turn out to be corrupt are skipped and listed in
reports/split.json.
"""

from __future__ import annotations

import json
import logging
import shutil
import time

from image_classifier import atomic, config
from image_classifier.cli import StageError, run_stage
from image_classifier.data.manifests import Row, class_names, read_manifest, write_manifest
from image_classifier.data.store import HEADER_BYTES, StoreMeta
from image_classifier.data.store_writer import (
    DecodeResult,
    DecodeSettings,
    DiskFullError,
    decode_rows,
)
from image_classifier.errors import DataError
from image_classifier.params import Params
from image_classifier.preprocessing import PREPROCESSING_VERSION
from image_classifier.timing import phase

log = logging.getLogger(__name__)


def store_bytes(manifests: dict[str, list[Row]], settings: DecodeSettings) -> int:
    n = sum(len(rows) for rows in manifests.values())
    return n * settings.record_bytes + len(manifests) * HEADER_BYTES


def disk_full_message(needed: int, settings: DecodeSettings, free: int | None = None) -> str:
    have = f" ({free / 1e9:.2f} GB free)" if free is not None else ""
    return (
        f"not enough disk space for {config.PREPARED_DIR}: it needs {needed / 1e9:.2f} GB"
        f"{have} for {settings.record_shape} uint8 images; free space on that disk, or lower "
        "image.size (or use image.color_mode: grayscale). Nothing was written."
    )


def check_classes(results: dict[str, DecodeResult], classes: list[str]) -> None:
    trained = {row.label for row in results["train"].kept}
    lost = [c for c in classes if c not in trained]
    if lost:
        raise DataError(
            f"class {lost[0]!r} has no readable training image left after decoding "
            f"(classes without one: {lost}); see the skipped files in {config.SPLIT_REPORT}"
        )
    for name in ("val", "test"):
        if not results[name].kept:
            raise DataError(
                f"the {name} split has no readable image left after decoding; see the skipped "
                f"files in {config.SPLIT_REPORT}, or add images"
            )
        missing = sorted(set(classes) - {row.label for row in results[name].kept})
        if missing:
            log.warning("the %s split has no image of classes %s", name, missing)


def split_report(scan: dict, results: dict[str, DecodeResult]) -> dict:
    """The scan's report with the counts of images actually stored and every skipped file."""
    decode_skipped = [
        {"path": s.path, "reason": s.reason} for r in results.values() for s in r.skipped
    ]
    counts = {}
    for name, result in results.items():
        per_class: dict[str, int] = {}
        for row in result.kept:
            per_class[row.label] = per_class.get(row.label, 0) + 1
        counts[name] = dict(sorted(per_class.items()))
    skipped = scan["skipped"] + decode_skipped
    return {
        **scan,
        "counts": counts,
        "totals": {name: len(r.kept) for name, r in results.items()},
        "skipped_count": len(skipped),
        "skipped": skipped,
    }


def run(params: Params, workers: int | None = None) -> dict:
    manifests = {name: read_manifest(config.manifest_path(name)) for name in config.SPLIT_NAMES}
    scan = json.loads(config.SCAN_REPORT.read_text(encoding="utf-8"))
    classes = class_names(manifests["train"])
    image = params.image
    settings = DecodeSettings(image.size, image.color_mode, image.max_pixels)
    needed = store_bytes(manifests, settings)
    config.PREPARED_DIR.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(config.PREPARED_DIR.parent).free
    if needed > free:
        raise StageError(disk_full_message(needed, settings, free))
    start = time.perf_counter()
    try:
        with phase("decode_and_store"), atomic.atomic_dir(config.PREPARED_DIR) as tmp:
            results = {}
            for name, rows in manifests.items():
                results[name] = decode_rows(rows, tmp / f"{name}.npy", settings, workers, name)
                write_manifest(tmp / f"{name}.csv", results[name].kept)
            check_classes(results, classes)
            counts = {name: len(r.kept) for name, r in results.items()}
            meta = StoreMeta(
                tuple(classes),
                image.size,
                image.color_mode,
                image.channels,
                PREPROCESSING_VERSION,
                counts,
            )
            atomic.write_json(tmp / "meta.json", meta.to_dict())
    except DiskFullError:
        raise StageError(disk_full_message(needed, settings)) from None
    elapsed = time.perf_counter() - start
    for result in results.values():
        for item in result.skipped:
            log.warning("skipped %s: %s", item.path, item.reason)
    report = split_report(scan, results)
    atomic.write_json(config.SPLIT_REPORT, report)
    total = sum(len(rows) for rows in manifests.values())
    log.info(
        "decoded %d images in %.1f s (%.0f images/s); stored %s; skipped %d",
        total,
        elapsed,
        total / max(elapsed, 1e-9),
        report["totals"],
        len(report["skipped"]) - len(scan["skipped"]),
    )
    return report


if __name__ == "__main__":
    run_stage(run)

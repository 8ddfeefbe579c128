"""Batch prediction at scale: images per second and peak memory of the predict CLI.

    python bench/predict.py [--count 100000] [--batch-size 256] [--workspace DIR]

Writes --count PNG copies of the bundled sample digits (varied, so nothing is cached) into a
temp folder, runs `python -m image_classifier.predict FOLDER --csv ... --quiet` on it, and
prints wall time, images/s, the CSV's row count and the CLI's peak resident memory. Run it at
two counts to see that memory does not grow with the number of images. The digits are drawn
by the package's sample code, as the `sample` stage writes them, not read from a data/raw:
a fork's holds its own images. --workspace is the folder holding saved_models, the model
predicted with (default: this repository; `bench/pipeline.py --keep DIR` makes one).
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_header

ROOT = Path(__file__).resolve().parents[1]


def write_images(folder: Path, count: int) -> None:
    from image_classifier.preprocessing import encode_png
    from image_classifier.sample_data import digit_images

    blobs = [encode_png(img) for _, img in sorted(digit_images(), key=lambda item: item[0])]
    for i in range(count):
        sub = folder / f"{i // 1000:04d}"  # 1000 files per folder, like real dumps
        if i % 1000 == 0:
            sub.mkdir()
        (sub / f"img_{i:06d}.png").write_bytes(blobs[i % len(blobs)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workspace", type=Path, default=ROOT)
    args = parser.parse_args()
    workspace = args.workspace.resolve()
    if not (workspace / "saved_models/model.tflite").is_file():
        raise SystemExit(f"no model in {workspace}/saved_models: run `dvc repro` there first")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        start = time.perf_counter()
        write_images(folder, args.count)
        print(f"wrote {args.count} images in {time.perf_counter() - start:.1f} s")
        out = Path(tmp) / "predictions.csv"
        cmd = [
            sys.executable,
            "-m",
            "image_classifier.predict",
            str(folder),
            "--csv",
            str(out),
            "--quiet",
            "--no-progress",
            "--batch-size",
            str(args.batch_size),
        ]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=workspace, check=True, env={**os.environ})
        elapsed = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        with out.open() as fh:
            rows = sum(1 for _ in csv.reader(fh)) - 1
    print_header("LiteRT", "Pillow", "NumPy")
    print(
        f"predicted {rows} images in {elapsed:.1f} s: {rows / elapsed:.0f} images/s, "
        f"peak resident memory {peak_mb:.0f} MB (batch size {args.batch_size})"
    )


if __name__ == "__main__":
    main()

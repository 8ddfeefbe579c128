"""Batch prediction at scale: images per second and peak memory of the predict CLI.

    python bench/predict.py [--count 100000] [--batch-size 256] [--workspace DIR]
    python bench/predict.py --workspace DIR --baseline-rev REV [--rounds 2]
    python bench/predict.py --make mobilenet_v2 --quantization int8 --count 2000 --baseline-rev REV

Writes --count image files into a temp folder, runs `python -m image_classifier.predict FOLDER
--csv ... --quiet` on it, and prints wall time, images/s, the CSV's row count and the CLI's
peak resident memory. Run it at two counts to see that memory does not grow with the number
of images. The images are PNG copies of the bundled sample digits (varied, so nothing is
cached), drawn by the package's sample code, as the `sample` stage writes them, not read
from a data/raw (a fork's holds its own images); for a model of at least 64 px RGB, 500x375
photo-like JPEGs (image_classifier.synthetic, 100 different ones). --workspace is the folder
holding saved_models, the model predicted with (default: this repository;
`bench/pipeline.py --keep DIR` makes one); --make ARCH exports one at 224 px RGB into a temp
folder instead, as bench/serve.py --make does.

--baseline-rev REV also runs git revision REV's predict CLI (its code in a temporary git
worktree, its src/ on PYTHONPATH) on the same files, with its own export of the same Keras
model: with --make, REV's code exports --make's model; otherwise REV's export stage runs on
the workspace's model.keras and data/prepared (bench/serve.py's Baseline), unless
--baseline-workspace names a folder with REV's saved_models. Each side runs --rounds times,
alternating which goes first, and the script prints every run, the medians and new / old.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_header

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = 100  # different photo-like images, cycled


def digit_blobs() -> list[bytes]:
    from image_classifier.preprocessing import encode_png
    from image_classifier.sample_data import digit_images

    return [encode_png(img) for _, img in sorted(digit_images(), key=lambda item: item[0])]


def photo_blobs() -> list[bytes]:
    from image_classifier import synthetic

    spec = synthetic.Spec((PHOTOS,), seed=0)
    blobs = []
    for i in range(PHOTOS):
        buf = io.BytesIO()
        synthetic.render(0, i, spec).resize((500, 375)).save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
    return blobs


def write_images(folder: Path, count: int, blobs: list[bytes], suffix: str = ".png") -> None:
    for i in range(count):
        sub = folder / f"{i // 1000:04d}"  # 1000 files per folder, like real dumps
        if i % 1000 == 0:
            sub.mkdir()
        (sub / f"img_{i:06d}{suffix}").write_bytes(blobs[i % len(blobs)])


# Runs the command in argv[2:] and writes its wall time, its CPU seconds (all its threads)
# and its peak resident memory (KiB) to argv[1]. A small process of its own: a child's peak
# counts the resident memory of the process that started it (a forked child starts with its
# parent's pages), and this script's is larger than the CLI's.
TIMED = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[2:]).returncode
took = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{took} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}")
sys.exit(code)
"""


def predict_once(
    folder: Path, workspace: Path, batch_size: int, env: dict[str, str], out: Path
) -> dict:
    """One run of the predict CLI in `workspace`: wall time, CPU seconds (those of threads
    that wait for work, spinning, too), its rows, its peak memory."""
    cmd = [
        sys.executable, "-m", "image_classifier.predict", str(folder), "--csv", str(out),
        "--quiet", "--no-progress", "--batch-size", str(batch_size),
    ]  # fmt: skip
    load = round(os.getloadavg()[0], 2)
    figures = out.with_suffix(".time")
    timed = [sys.executable, "-c", TIMED, str(figures), *cmd]
    if subprocess.run(timed, cwd=workspace, env=env).returncode:
        raise SystemExit(f"the predict CLI in {workspace} failed")
    took, cpu, peak = figures.read_text().split()
    elapsed = float(took)
    with out.open() as fh:
        rows = sum(1 for _ in csv.reader(fh)) - 1
    return {
        "seconds": round(elapsed, 2),
        "images_per_s": round(rows / elapsed),
        "cpu_s": round(float(cpu), 2),
        "peak_mb": round(int(peak) / 1024),
        "rows": rows,
        "load_1min_before": load,
    }


def wait_quiet(limit: float | None, budget: list[float]) -> None:
    """--wait-load: wait until the 1-minute load average is below `limit`, looking every
    15 s, while budget[0] seconds of waiting are left for the run."""
    if limit is None:
        return
    while os.getloadavg()[0] >= limit and budget[0] > 0:
        time.sleep(15)
        budget[0] -= 15
    if os.getloadavg()[0] >= limit:
        print(f"load average {os.getloadavg()[0]:.2f}, no waiting left: measuring anyway")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workspace", type=Path, default=ROOT)
    parser.add_argument("--make", choices=["mobilenet_v2", "efficientnet_b0", "resnet50"])
    parser.add_argument("--quantization", default="none", help="with --make")
    parser.add_argument(
        "--baseline-rev", metavar="REV", help="also run REV's code (see the module docstring)"
    )
    parser.add_argument(
        "--baseline-workspace", type=Path, help="with --baseline-rev: REV's saved_models' folder"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="with --baseline-rev: runs of each, alternating"
    )
    parser.add_argument(
        "--wait-load",
        type=float,
        metavar="L",
        help="before each run, wait until the 1-minute load average is below L",
    )
    parser.add_argument("--wait-max", type=float, default=2400.0, help="--wait-load's limit, s")
    args = parser.parse_args()
    from serve import Baseline, env_with_venv, make_model

    budget = [args.wait_max]
    baseline = None
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            if args.baseline_rev:
                baseline = Baseline(args.baseline_rev)
            workspace, old_workspace = args.workspace.resolve(), args.baseline_workspace
            if args.make:
                workspace = tmp / "new"
                make_model(
                    args.make, args.quantization, workspace / "saved_models", tmp / "pixels.npy"
                )
                if baseline and old_workspace is None:
                    old_workspace = tmp / "old"
                    baseline.make_model(
                        args.make,
                        args.quantization,
                        workspace / "saved_models",
                        tmp / "pixels.npy",
                        old_workspace / "saved_models",
                    )
            elif baseline and old_workspace is None:
                models = baseline.export_stage(workspace / "saved_models", tmp / "old")
                old_workspace = models.parent
            if not (workspace / "saved_models/model.tflite").is_file():
                raise SystemExit(f"no model in {workspace}/saved_models: run `dvc repro` there")
            from image_classifier.litert.classifier import load_card

            card = load_card(workspace / "saved_models/model.json")
            folder = tmp / "images"
            folder.mkdir()
            start = time.perf_counter()
            if card.color_mode == "rgb" and card.image_size >= 64:
                kind = "500x375 photo-like JPEGs"
                write_images(folder, args.count, photo_blobs(), ".jpg")
            else:
                kind = "PNGs of the sample digits"
                write_images(folder, args.count, digit_blobs())
            print(f"wrote {args.count} images in {time.perf_counter() - start:.1f} s ({kind})")
            new_env = env_with_venv()
            sides = {"new": (workspace, new_env)}
            if baseline:
                sides["old"] = (old_workspace.resolve(), baseline.env())
            origin = {}
            for side, (place, env) in sides.items():
                cmd = [
                    sys.executable,
                    "-c",
                    "import image_classifier; print(image_classifier.__file__)",
                ]
                origin[side] = subprocess.run(
                    cmd, cwd=place, env=env, capture_output=True, text=True, check=True
                ).stdout.strip()
            if baseline and not Path(origin["old"]).is_relative_to(baseline.tree):
                raise SystemExit(f"{args.baseline_rev}'s CLI would import {origin['old']}")
            rounds = []
            for r in range(args.rounds if baseline else 1):
                runs = {}
                for side in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                    place, env = sides[side]
                    wait_quiet(args.wait_load, budget)
                    out = tmp / f"predictions-{side}.csv"
                    runs[side] = predict_once(folder, place, args.batch_size, env, out)
                rounds.append({side: runs[side] for side in sides})
        finally:
            if baseline is not None:
                baseline.close()
    print_header("LiteRT", "Pillow", "NumPy")
    first = rounds[0]["new"]
    print(
        f"predicted {first['rows']} images in {first['seconds']:.1f} s: "
        f"{first['images_per_s']} images/s, peak resident memory {first['peak_mb']} MB "
        f"(batch size {args.batch_size})"
    )
    if baseline:
        report_baseline(rounds, baseline, origin)


def report_baseline(rounds: list[dict], baseline, origin: dict[str, str]) -> None:
    print(
        f"this checkout vs {baseline.rev} ({baseline.commit}): the same files, one CLI after "
        f"the other, {len(rounds)} round(s), the first side alternating (new first in round 1)"
    )
    cols = [f"{side} {i + 1}" for i in range(len(rounds)) for side in ("new", "old")]
    head = f"{'':<24}" + "".join(f"{c:>9}" for c in cols)
    print(head + f"{'new med':>10}{'old med':>10}{'new/old':>9}")
    rows = [
        ("seconds", "seconds"),
        ("images/s", "images_per_s"),
        ("CPU s", "cpu_s"),
        ("peak resident MB", "peak_mb"),
        ("load average before", "load_1min_before"),
    ]
    for name, key in rows:
        values = [rnd[side][key] for rnd in rounds for side in ("new", "old")]
        new = statistics.median(rnd["new"][key] for rnd in rounds)
        old = statistics.median(rnd["old"][key] for rnd in rounds)
        line = f"{name:<24}" + "".join(f"{v:>9}" for v in values)
        line += f"{round(new, 2):>10}{round(old, 2):>10}"
        if key != "load_1min_before" and old:
            line += f"{new / old:>9.3f}"
        print(line)
    print(f"new imports {origin['new']}; old imports {origin['old']}")


if __name__ == "__main__":
    main()

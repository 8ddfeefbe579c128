"""The split on large photo-like folders: each split's share of each class, the groups, recall.

    python bench/split_ratios.py [--images 20000 100000] [--originals 500] [--data-dir DIR]

For each --images N, a folder of N distinct photo-like JPEGs (image_classifier.synthetic, the
generator bench/scale.py uses: 10 classes, ~500x375; --data-dir/photos-N is reused, and a
larger photos-M folder lends its first N/10 images of each class, which are the same files),
plus near-duplicates of --originals of them, spread over the classes: a JPEG re-encode at
quality 60, a half-size PNG and a 4-pixel crop (JPEG quality 85), each filed with its original.
Then `split` alone (image_classifier.split.run, default params: stratified, val and test 0.15,
split.near_duplicate_bits 8) in a scratch project, and prints:
- wall time of the split (scan, hashing, grouping, manifests);
- each split's share of each class, and the largest gap to its ratio, in percentage points;
- the groups: the largest, groups of distinct originals (all false, as every original is
  distinct by construction), groups too large to place;
- recall: copies grouped with their original, and copies in their original's split;
- pHash alone (the candidate pairs before the detail test confirms them): the group it would
  make of the same images, as the split grouped them before the second test;
- the second tests compared, on the copies and on the distinct candidate pairs: the detail
  band's correlation (what the split uses), a 64-bit difference hash and a 16x16 normalised
  thumbnail's distance, each with its worst value on either side; and how many copies fall
  under, and distinct candidate pairs reach, detail correlations around the split's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_header

ROOT = Path(__file__).resolve().parents[1]
COPY_KINDS = ("q60", "half", "crop4")
THRESHOLDS = (0.90, 0.92, 0.94, 0.96)  # detail correlations around the split's


def source_folder(images: int, data_dir: Path) -> tuple[Path, int]:
    """A complete photos-M folder with M >= images (its first images/10 a class are the
    photos-images dataset), generating photos-images when there is none."""
    from scale import make_dataset

    done = sorted(
        int(p.name.split("-")[1])
        for p in data_dir.glob("photos-*")
        if (p / ".complete").is_file() and p.name.split("-")[1].isdigit()
    )
    larger = [m for m in done if m >= images]
    if larger:
        return data_dir / f"photos-{larger[0]}", larger[0]
    return make_dataset(images, data_dir), images


def build_folder(images: int, data_dir: Path, originals: int, raw: Path) -> dict[str, str]:
    """raw/<class>/ with links to the N photos and real files for the copies; returns each
    copy's path -> its original's path (as the manifests write them)."""
    from PIL import Image

    source, total = source_folder(images, data_dir)
    per_class = images // 10
    classes = sorted(p.name for p in source.iterdir() if p.is_dir())
    copy_of = {}
    every = max(1, per_class // max(1, originals // len(classes)))
    for name in classes:
        (raw / name).mkdir(parents=True)
        for i in range(per_class):
            target = raw / name / f"img_{i:06d}.jpg"
            target.symlink_to(source / name / f"img_{i:06d}.jpg")
        for i in range(0, per_class, every)[: originals // len(classes)]:
            original = raw / name / f"img_{i:06d}.jpg"
            img = Image.open(original).convert("RGB")
            w, h = img.size
            made = {
                "q60": ("jpg", img, {"quality": 60}),
                "half": ("png", img.resize((w // 2, h // 2)), {}),
                "crop4": ("jpg", img.crop((4, 4, w - 4, h - 4)), {"quality": 85}),
            }
            for kind, (ext, copy, options) in made.items():
                path = raw / name / f"copy_{kind}_{i:06d}.{ext}"
                copy.save(path, **options)
                copy_of[path.as_posix()] = original.as_posix()
    print(f"{images} photos from {source} (of {total}), {len(copy_of)} copies of them")
    return copy_of


def union_sizes(n: int, pairs) -> list[int]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[find(i)] = find(j)
    return sorted(Counter(find(i) for i in range(n)).values(), reverse=True)


def thumbnails(paths: list[str]) -> dict[str, np.ndarray]:
    from image_classifier.preprocessing import decode_pixels

    return {p: decode_pixels(p, 32, "grayscale").reshape(32, 32).astype(np.float64) for p in paths}


def dhash(thumb: np.ndarray) -> int:
    from PIL import Image

    small = Image.fromarray(thumb.astype(np.float32), "F").resize((9, 8), Image.Resampling.BOX)
    grid = np.asarray(small)
    return int(np.packbits((grid[:, 1:] > grid[:, :-1]).ravel()).view(">u8")[0])


def normalised(thumb: np.ndarray) -> np.ndarray:
    small = thumb.reshape(16, 2, 16, 2).mean(axis=(1, 3)).ravel()
    small = small - small.mean()
    return small / (np.linalg.norm(small) or 1.0)


def compare_tests(pairs: dict[str, list[tuple[str, str]]]) -> list[str]:
    """The three second tests on each kind of pair: worst value towards the other side."""
    from image_classifier.data.near_duplicates import detail_correlation, fingerprint

    thumbs = thumbnails(sorted({p for kind in pairs.values() for pair in kind for p in pair}))
    prints = {p: fingerprint(t) for p, t in thumbs.items()}
    counts: dict[bool, list[float]] = {True: [], False: []}
    lines = [f"\n{'second test on':<34}{'pairs':>7}{'detail corr':>13}{'dHash bits':>12}"
          f"{'16x16 dist':>12}"]  # fmt: skip
    for kind, items in pairs.items():
        if not items:
            continue
        corr = [detail_correlation(prints[a].detail, prints[b].detail) for a, b in items]
        counts[kind.startswith("copy")] += corr
        bits = [(dhash(thumbs[a]) ^ dhash(thumbs[b])).bit_count() for a, b in items]
        dist = [1 - float(normalised(thumbs[a]) @ normalised(thumbs[b])) for a, b in items]
        # Copies: their worst is the lowest correlation / most bits / largest distance.
        copy = kind.startswith("copy")
        pick = (min, max, max) if copy else (max, min, min)
        lines.append(
            f"{kind:<34}{len(items):>7}{pick[0](corr):>13.3f}{pick[1](bits):>12}"
            f"{pick[2](dist):>12.4f}   (median {statistics.median(corr):.3f}, "
            f"{statistics.median(bits)}, {statistics.median(dist):.4f})"
        )
    copies, distinct = counts[True], counts[False]
    for threshold in THRESHOLDS:
        lines.append(
            f"detail correlation {threshold:.2f}: {sum(c < threshold for c in copies)} of "
            f"{len(copies)} copies under it, {sum(c >= threshold for c in distinct)} of "
            f"{len(distinct)} distinct candidate pairs at or over it"
        )
    return lines


def run_one(images: int, args: argparse.Namespace) -> dict:
    from image_classifier import split
    from image_classifier.data.near_duplicates import close_pairs
    from image_classifier.data.scan import scan_folder
    from image_classifier.params import parse_params

    with tempfile.TemporaryDirectory(prefix="ic-split-") as tmp:
        work = Path(tmp)
        os.chdir(work)
        raw = Path("data/raw")
        copy_of = build_folder(images, args.data_dir, args.originals, raw)
        params = parse_params({})
        scans = []  # the split's own scan, kept for the pHash-alone figures

        def keep_scan(*a, **kw):
            scans.append(scan_folder(*a, **kw))
            return scans[-1]

        split.scan_folder = keep_scan
        start = time.perf_counter()
        report = split.run(params)
        wall = time.perf_counter() - start
        split.scan_folder = scan_folder
        split_of = {
            row.split(",")[0]: name
            for name in ("train", "val", "test")
            for row in Path(f"data/splits/{name}.csv").read_text().splitlines()[1:]
        }
        groups_of: dict[str, int] = {}
        for k, group in enumerate(report["near_duplicates"]):
            for p in group["paths"]:
                groups_of[p] = k
        # pHash alone, on the hashes the split computed.
        scan = scans[0]
        candidates = list(close_pairs([f.phash for f in scan.files], 8))
        alone = union_sizes(len(scan.files), candidates)
        paths = [f.path for f in scan.files]
        originals = {p for p in paths if p not in copy_of}
        distinct_candidates = [
            (paths[i], paths[j])
            for i, j in set(candidates)
            if paths[i] in originals and paths[j] in originals
        ]
        pairs = sorted(copy_of.items())
        comparison = compare_tests(
            {
                **{
                    f"copy: {k}": [(o, c) for c, o in pairs if f"/copy_{k}_" in c]
                    for k in COPY_KINDS
                },
                "distinct candidates (pHash <= 8)": sorted(distinct_candidates),
            }
        )
    os.chdir(ROOT)
    counts, totals = report["counts"], Counter()
    for name in counts:
        for label, n in counts[name].items():
            totals[label] += n
    ratios = {"train": 1 - params.split.val_ratio - params.split.test_ratio,
              "val": params.split.val_ratio, "test": params.split.test_ratio}  # fmt: skip
    shares = {
        label: {name: counts[name].get(label, 0) / n for name in ratios}
        for label, n in sorted(totals.items())
    }
    gap = max(abs(s[name] - ratios[name]) for s in shares.values() for name in ratios) * 100
    false_groups = [
        g for g in report["near_duplicates"] if sum(p in originals for p in g["paths"]) > 1
    ]
    grouped = sum(groups_of.get(c) is not None and groups_of.get(c) == groups_of.get(o)
                  for c, o in copy_of.items())  # fmt: skip
    same_split = sum(split_of[c] == split_of[o] for c, o in copy_of.items())
    by_kind = defaultdict(int)
    for c, o in copy_of.items():
        if groups_of.get(c) is not None and groups_of.get(c) == groups_of.get(o):
            by_kind[c.rsplit("/", 1)[1].split("_")[1]] += 1
    print(f"\nsplit of {sum(totals.values())} images: {wall:.1f} s")
    print(f"{'class':<16}{'images':>8}" + "".join(f"{n:>9}" for n in ratios))
    for label, s in shares.items():
        print(f"{label:<16}{totals[label]:>8}" + "".join(f"{s[n] * 100:>8.2f}%" for n in ratios))
    print(f"largest gap to a ratio: {gap:.2f} percentage points")
    print(
        f"groups: largest {report['largest_group']} images; {report['near_duplicate_groups']} "
        f"near-duplicate groups; {len(false_groups)} join distinct originals (false); "
        f"{report['groups_too_large_count']} too large to place"
    )
    kinds = ", ".join(f"{k} {by_kind[k]}" for k in COPY_KINDS)
    print(
        f"recall: {grouped} of {len(copy_of)} copies grouped with their original ({kinds}); "
        f"{same_split} in their original's split"
    )
    in_groups = sum(s for s in alone if s > 1)
    print(
        f"pHash alone (no second test): largest group {alone[0]} images, {in_groups} images in "
        f"groups; {len(distinct_candidates)} candidate pairs of distinct originals"
    )
    print("\n".join(comparison))
    return {
        "images": sum(totals.values()),
        "split_s": round(wall, 1),
        "largest_gap_pp": round(gap, 2),
        "largest_group": report["largest_group"],
        "false_groups": len(false_groups),
        "copies": len(copy_of),
        "copies_grouped": grouped,
        "phash_alone_largest_group": alone[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--originals", type=int, default=500, help="photos given 3 copies each")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "ic-bench")
    parser.add_argument("--json", type=Path, help="also save the figures here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    print_header("Pillow", "NumPy")
    results = [run_one(n, args) for n in args.images]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

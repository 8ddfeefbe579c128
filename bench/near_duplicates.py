"""Near-duplicate detection on generated photos: hashing cost, bit distances, groups.

    python bench/near_duplicates.py [--photos 1000] [--sample 40] [--bits 8] [--data-dir DIR]

Generates (or reuses, in --data-dir, the folder bench/scale.py writes) --photos seeded
photo-like JPEGs (image_classifier.synthetic: 10 classes, ~500x375), then:
- hashing cost, ms a photo: the 64-bit pHash and its detail band
  (data/near_duplicates.image_fingerprint, through the shared decoder) in one process, timed
  around the hash alone; and on every core, a warm forkserver process pool (as
  data/parallel.py starts for the split's scan) reading, checking the header of and hashing
  each file, wall time divided by --photos;
- bit distances between the first --sample photos' hashes and those of their copies (a JPEG
  re-encode at quality 60, a half-size PNG, a 4-pixel crop, a WebP), and between distinct
  photos, of one class and of any class;
- the groups the split forms at --bits (split.near_duplicate_bits) over all --photos, each
  pair confirmed by the detail test, and the time to form them.
"""

from __future__ import annotations

import argparse
import io
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_header

ROOT = Path(__file__).resolve().parents[1]


def image_phash(data: bytes, size: tuple[int, int], max_pixels: int) -> int | None:
    from image_classifier.data.near_duplicates import image_fingerprint

    found = image_fingerprint(data, size, max_pixels)
    return None if found is None else found.phash


def hash_file(path: Path):
    """What the split's scan does for one file's fingerprint (data/scan.check_file)."""
    from image_classifier.data.near_duplicates import image_fingerprint
    from image_classifier.preprocessing import MAX_PIXELS, check_header

    data = path.read_bytes()
    return image_fingerprint(data, check_header(data, MAX_PIXELS), MAX_PIXELS)


def hash_on_every_core(files: list[Path], workers: int) -> tuple[float, list[int | None]]:
    """Seconds to hash `files` on a pool of `workers` that has already started."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(workers, get_context("forkserver")) as pool:
        list(pool.map(hash_file, files[: 2 * workers]))  # every worker up and imported
        start = time.perf_counter()
        hashes = list(pool.map(hash_file, files, chunksize=64))
        return time.perf_counter() - start, hashes


def copies(img) -> dict[str, bytes]:
    """The kinds of copy the split must keep with their original (tests/test_near_duplicates)."""
    w, h = img.size

    def encode(im, fmt: str = "JPEG", **kw) -> bytes:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return buf.getvalue()

    return {
        "re-encode (JPEG q60)": encode(img, quality=60),
        "half size (PNG)": encode(img.resize((w // 2, h // 2)), "PNG"),
        "4-px crop (JPEG q85)": encode(img.crop((4, 4, w - 4, h - 4)), quality=85),
        "RGBA WebP (q80)": encode(img.convert("RGBA"), "WEBP", quality=80),
    }


def groups(fingerprints: list, bits: int) -> list[int]:
    """Sizes of the groups (2 or more images) that confirmed pairs within `bits` chain into."""
    from image_classifier.data.near_duplicates import near_duplicate_pairs

    parent = list(range(len(fingerprints)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in near_duplicate_pairs(fingerprints, bits):
        parent[find(i)] = find(j)
    sizes: dict[int, int] = {}
    for i in range(len(fingerprints)):
        sizes[find(i)] = sizes.get(find(i), 0) + 1
    return sorted(s for s in sizes.values() if s > 1)


def row(name: str, values: list[int]) -> str:
    return (
        f"{name:<34}{statistics.mean(values):>7.1f}{statistics.median(values):>8.1f}"
        f"{min(values):>6}{max(values):>6}{len(values):>8}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=40, help="photos whose copies are made")
    parser.add_argument("--bits", type=int, default=8, help="split.near_duplicate_bits")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "ic-bench")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from PIL import Image
    from scale import make_dataset

    from image_classifier import synthetic
    from image_classifier.data.near_duplicates import image_fingerprint
    from image_classifier.data.parallel import default_workers
    from image_classifier.preprocessing import MAX_PIXELS, check_header

    folder = make_dataset(args.photos, args.data_dir)

    # Hashing alone, one process (files read first, outside the timing).
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    blobs = [p.read_bytes() for p in files]
    sizes = [check_header(b) for b in blobs]
    start, cpu = time.perf_counter(), time.process_time()
    prints = [image_fingerprint(b, s, MAX_PIXELS) for b, s in zip(blobs, sizes, strict=True)]
    one_process_ms = (time.perf_counter() - start) / len(files) * 1000
    one_process_cpu_ms = (time.process_time() - cpu) / len(files) * 1000
    hashes = [None if f is None else f.phash for f in prints]

    workers = default_workers()
    pool_s, pool_hashes = hash_on_every_core(files, workers)
    if pool_hashes != prints:
        raise SystemExit("the pool's hashes differ from this process's")

    # Distances: copies of the first --sample photos of each class, and distinct photos.
    spec = synthetic.Spec(synthetic.balanced(args.photos, 10), seed=0, fmt="JPEG")
    by_name = {p.relative_to(folder).as_posix(): h for p, h in zip(files, hashes, strict=True)}
    per_class = max(1, args.sample // 10)
    sample = []  # (label, hash of the dataset's file, rendered image)
    for label, name in enumerate(spec.classes):
        for index in range(min(per_class, spec.counts[label])):
            key = next(k for k in by_name if k.startswith(f"{name}/img_{index:06d}."))
            sample.append((label, by_name[key], synthetic.render(label, index, spec)))
    copy_bits: dict[str, list[int]] = {}
    for _, h, img in sample:
        for kind, data in copies(img).items():
            copy = image_phash(data, Image.open(io.BytesIO(data)).size, MAX_PIXELS)
            copy_bits.setdefault(kind, []).append((h ^ copy).bit_count())
    same_class, any_class = [], []
    for (la, ha, _), (lb, hb, _) in itertools.combinations(sample, 2):
        (same_class if la == lb else any_class).append((ha ^ hb).bit_count())
    any_class += same_class
    all_copies = [b for bits in copy_bits.values() for b in bits]
    start = time.perf_counter()
    found = groups(prints, args.bits)
    grouping_s = time.perf_counter() - start

    print()
    print_header("Pillow", "NumPy")
    print(
        f"{len(files)} generated photo-like JPEGs ({folder}); 64-bit pHash of a 32x32 "
        f"thumbnail and its detail band (JPEG draft mode)"
    )
    print(
        f"hashing, one process, hash alone: {one_process_ms:.2f} ms a photo "
        f"({one_process_cpu_ms:.2f} ms of CPU)"
    )
    print(
        f"hashing, {workers} worker processes (read, header, hash): "
        f"{pool_s / len(files) * 1000:.2f} ms a photo ({pool_s:.1f} s)"
    )
    print(f"\nbit distances (of 64), {len(sample)} photos ({per_class} a class)")
    print(f"{'pair':<34}{'mean':>7}{'median':>8}{'min':>6}{'max':>6}{'pairs':>8}")
    for kind, bits in copy_bits.items():
        print(row(f"copy: {kind}", bits))
    print(row("copy: any of the four", all_copies))
    if same_class:
        print(row("distinct photos, same class", same_class))
    print(row("distinct photos, any class", any_class))
    grouped = sum(found)
    span = f" of {found[0]}-{found[-1]} images" if found else ""
    print(
        f"\ngroups at {args.bits} bits over {len(files)} photos: {len(found)}{span} "
        f"({grouped} photos grouped); candidate pairs, confirmation and grouping "
        f"{grouping_s:.2f} s"
    )


if __name__ == "__main__":
    main()

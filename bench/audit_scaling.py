"""The audit's cost as the image count grows: out-of-sample probabilities and outlier search.

    python bench/audit_scaling.py [--images 20000,50000,100000] [--exact-up-to 50000]

For each count, seeded synthetic features shaped like a frozen MobileNetV2's (1,280 non-negative
values, 10 classes, 1 % of images far from every class) are saved as the train stage keeps
them (float16 .npy). A fresh process then runs the audit's parts on that file as the stage
does: `principal_components` (read from the file in chunks), `out_of_sample_probs` (5-fold
logistic regression) and `outliers` (neighbour search), all on the components. Past
OUTLIER_REFERENCE images the search compares each image with a seeded sample of that many; up
to --exact-up-to images it is also run against all images (every image is the reference), and
the table gives how many of the images it flags the sampled search flags too. Prints each part's
wall time and that process's peak RSS before the exact search.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_header

from image_classifier.evaluation import label_issues
from image_classifier.timing import own_peak_mb

CLASSES = 10
DIMS = 1280


def features(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.gamma(1.0, 1.0, (CLASSES, DIMS)).astype(np.float32)
    labels = rng.integers(0, CLASSES, n)
    x = centres[labels]
    for i in range(0, n, 10_000):  # float32 as the stage holds them, without a float64 copy
        x[i : i + 10_000] += rng.gamma(1.0, 0.6, (len(x[i : i + 10_000]), DIMS))
    odd = rng.choice(n, n // 100, replace=False)
    x[odd] = rng.gamma(1.0, 2.0, (len(odd), DIMS)).astype(np.float32)
    return x, labels


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def audit_file(path: Path, exact_up_to: int) -> dict:
    """The audit's parts on the features in `path` (labels beside it), as the stage runs them."""
    from image_classifier.data.npy import Rows as NpyRows

    rows, y = NpyRows(path), np.load(path.with_suffix(".labels.npy"))
    n = len(y)
    paths, names = [str(i) for i in range(n)], [str(c) for c in range(CLASSES)]
    points, pca_s = timed(label_issues.principal_components, rows)
    _, probs_s = timed(label_issues.out_of_sample_probs, points, y, 5, 0)
    found, outliers_s = timed(label_issues.outliers, points, y, paths, names)
    out = {"pca_s": pca_s, "probs_s": probs_s, "outliers_s": outliers_s, "flagged": len(found)}
    out["peak_mb"] = own_peak_mb()  # VmHWM: ru_maxrss would carry over the parent's
    reference = label_issues.OUTLIER_REFERENCE
    if reference < n <= exact_up_to:
        label_issues.OUTLIER_REFERENCE = n  # every image is the reference
        exact, out["exact_s"] = timed(label_issues.outliers, points, y, paths, names)
        common = {i.path for i in found} & {i.path for i in exact}
        out["both"] = f"{len(common)} of {len(exact)}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default="20000,50000,100000")
    parser.add_argument("--exact-up-to", type=int, default=50000)
    parser.add_argument("--features-file", type=Path, help=argparse.SUPPRESS)  # the child's
    args = parser.parse_args()
    if args.features_file:
        print(json.dumps(audit_file(args.features_file, args.exact_up_to)))
        return
    print_header("scikit-learn", "cleanlab", "NumPy")
    print(f"reference sample: {label_issues.OUTLIER_REFERENCE} images, k = "
          f"{label_issues.OUTLIER_NEIGHBOURS}, {DIMS} features -> "
          f"{label_issues.PCA_COMPONENTS} components")  # fmt: skip
    print("   images  components s  probs s  outliers s  flagged  exact s  flagged by both  "
          "peak RSS MB")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.images.split(",")):
            x, y = features(n)
            path = Path(tmp) / f"features-{n}.npy"
            np.save(path, x.astype(np.float16))
            np.save(path.with_suffix(".labels.npy"), y)
            del x
            cmd = [sys.executable, __file__, "--features-file", str(path),
                   "--exact-up-to", str(args.exact_up_to)]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.splitlines()[-1])  # cleanlab prints progress first
            exact_s = f"{r['exact_s']:.1f}" if "exact_s" in r else "-"
            print(f"{n:9d}  {r['pca_s']:12.1f}  {r['probs_s']:7.1f}  {r['outliers_s']:10.1f}  "
                  f"{r['flagged']:7d}  {exact_s:>7}  {r.get('both', '-'):>15}  "
                  f"{r['peak_mb']:11.0f}")  # fmt: skip


if __name__ == "__main__":
    main()

"""The audit's cost as the image count grows: out-of-sample probabilities and outlier search.

    python bench/audit_scaling.py [--images 20000,50000,100000] [--exact-up-to 50000]

For each count, seeded synthetic features shaped like a frozen MobileNetV2's (1,280 non-negative
values, 10 classes, 1 % of images far from every class) go through the audit's two parts as
the stage runs them: `out_of_sample_probs` (principal components, 5-fold logistic regression)
and `outliers` (neighbour search on the same components). Past OUTLIER_REFERENCE images the
search compares each image with a seeded sample of that many; up to --exact-up-to images it
is also run against all images (cleanlab's own search), and the table gives how many of the
images it flags the sampled search flags too. Prints each part's wall time and the
process's peak RSS so far (features included).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_header

from image_classifier.evaluation import label_issues

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


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default="20000,50000,100000")
    parser.add_argument("--exact-up-to", type=int, default=50000)
    args = parser.parse_args()
    print_header("scikit-learn", "cleanlab", "NumPy")
    print(f"reference sample: {label_issues.OUTLIER_REFERENCE} images, k = "
          f"{label_issues.OUTLIER_NEIGHBOURS}, {DIMS} features -> "
          f"{label_issues.PCA_COMPONENTS} components")  # fmt: skip
    print("   images  probs s  outliers s  flagged  exact s  flagged by both  peak RSS MB")
    reference = label_issues.OUTLIER_REFERENCE
    for n in (int(x) for x in args.images.split(",")):
        x, y = features(n)
        paths, names = [str(i) for i in range(n)], [str(c) for c in range(CLASSES)]
        _, probs_s = timed(label_issues.out_of_sample_probs, x, y, 5, 0)
        found, outliers_s = timed(label_issues.outliers, x, y, paths, names)
        exact_s, both = "-", "-"
        if n > reference and n <= args.exact_up_to:
            label_issues.OUTLIER_REFERENCE = n  # every image is the reference: cleanlab's search
            exact, seconds = timed(label_issues.outliers, x, y, paths, names)
            label_issues.OUTLIER_REFERENCE = reference
            common = {i.path for i in found} & {i.path for i in exact}
            exact_s, both = f"{seconds:.1f}", f"{len(common)} of {len(exact)}"
        print(f"{n:9d}  {probs_s:7.1f}  {outliers_s:10.1f}  {len(found):7d}  {exact_s:>7}  "
              f"{both:>15}  {peak_mb():11.0f}")  # fmt: skip


if __name__ == "__main__":
    main()

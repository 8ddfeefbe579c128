"""Pure split logic: stratified, seeded, duplicate-aware assignment of images to train/val/test.

Files are ordered by a seeded hash of their content, never by name or directory order, so the
same images and seed give the same split on any machine. Identical files in one class form one
group and always land in the same split, so a duplicate cannot leak from train into test.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from image_classifier.config import SPLIT_NAMES
from image_classifier.params import SplitParams
from image_classifier.scan import DataError, ImageFile


@dataclass(frozen=True)
class Duplicate:
    sha256: str
    paths: tuple[str, ...]
    labels: tuple[str, ...]
    splits: tuple[str, ...]


def seeded_key(sha256: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()


def _unit_interval(sha256: str, seed: int) -> float:
    return int(seeded_key(sha256, seed)[:16], 16) / 2**64


def split_counts(n: int, params: SplitParams) -> tuple[int, int, int]:
    """(train, val, test) sizes for n groups; val and test get at least one each."""
    n_test = max(1, round(n * params.test_ratio))
    n_val = max(1, round(n * params.val_ratio))
    return n - n_val - n_test, n_val, n_test


def min_class_size(params: SplitParams) -> int:
    n = 1
    while split_counts(n, params)[0] < 1:
        n += 1
    return n


def _groups_by_content(files: Sequence[ImageFile]) -> dict[str, list[ImageFile]]:
    groups: dict[str, list[ImageFile]] = defaultdict(list)
    for f in files:
        groups[f.sha256].append(f)
    return groups


def _assign_class(label: str, files: list[ImageFile], params: SplitParams) -> dict[str, str]:
    """Map sha256 -> split name for one class."""
    groups = sorted(_groups_by_content(files), key=lambda sha: seeded_key(sha, params.seed))
    if params.method == "hash":
        edges = (params.test_ratio, params.test_ratio + params.val_ratio)
        out = {}
        for sha in groups:
            u = _unit_interval(sha, params.seed)
            out[sha] = "test" if u < edges[0] else "val" if u < edges[1] else "train"
        missing = [s for s in SPLIT_NAMES if s not in out.values()]
        if missing:
            raise DataError(
                f"class {label!r}: {len(groups)} distinct images leave no {missing[0]} image with "
                "split.method: hash; add images or use split.method: stratified"
            )
        return out
    n_train, n_val, n_test = split_counts(len(groups), params)
    if n_train < 1:
        raise DataError(
            f"class {label!r} has {len(groups)} distinct images; split ratios "
            f"val={params.val_ratio}, test={params.test_ratio} need at least "
            f"{min_class_size(params)} (one per split)"
        )
    order = ["test"] * n_test + ["val"] * n_val + ["train"] * n_train
    return dict(zip(groups, order, strict=True))


def assign_splits(
    files: Sequence[ImageFile], classes: Sequence[str], params: SplitParams
) -> dict[str, list[ImageFile]]:
    """Assign every file to train, val or test; each list sorted by path."""
    by_class: dict[str, list[ImageFile]] = {c: [] for c in classes}
    for f in files:
        by_class.setdefault(f.label, []).append(f)
    empty = [c for c, fs in by_class.items() if not fs]
    if empty:
        raise DataError(f"class {empty[0]!r} has no usable images (empty classes: {empty})")
    if len(by_class) < 2:
        raise DataError(f"need at least 2 classes, found {sorted(by_class)}")
    splits: dict[str, list[ImageFile]] = {name: [] for name in SPLIT_NAMES}
    for label, class_files in by_class.items():
        assignment = _assign_class(label, class_files, params)
        for f in class_files:
            splits[assignment[f.sha256]].append(f)
    return {name: sorted(fs, key=lambda f: f.path) for name, fs in splits.items()}


def find_duplicates(splits: dict[str, list[ImageFile]]) -> list[Duplicate]:
    """Byte-identical files; any spanning splits carry conflicting labels (one image, 2 classes)."""
    counts = Counter(f.sha256 for files in splits.values() for f in files)
    where: dict[str, list[tuple[ImageFile, str]]] = defaultdict(list)
    for split, files in splits.items():
        for f in files:
            if counts[f.sha256] > 1:  # only duplicates are kept: memory stays small
                where[f.sha256].append((f, split))
    return [
        Duplicate(
            sha,
            tuple(f.path for f, _ in items),
            tuple(sorted({f.label for f, _ in items})),
            tuple(sorted({s for _, s in items})),
        )
        for sha, items in sorted(where.items())
        if len(items) > 1
    ]

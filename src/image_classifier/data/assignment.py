"""Pure split logic: stratified, seeded, duplicate-aware assignment of images to train/val/test.

Files are ordered by a seeded hash of their content, never by name or directory order, so the
same images and seed give the same split on any machine. Identical files (in any class) and
near-duplicates (close perceptual hashes) form one group and always land in the same split, so
a copy cannot leak from train into test.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from image_classifier.config import SPLIT_NAMES
from image_classifier.data.near_duplicates import close_pairs
from image_classifier.data.scan import ImageFile
from image_classifier.errors import DataError
from image_classifier.params import SplitParams


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


class Groups:
    """Images that must share a split: identical files (in any class) and near-duplicates.

    Union-find over file indices. A group's key is its smallest seeded content key, so groups
    are ordered by content, never by path; its home class (where stratification counts it) is
    the class of the file with that key."""

    def __init__(self, files: Sequence[ImageFile], seed: int, near_bits: int | None) -> None:
        self.files = files
        self._parent = list(range(len(files)))
        first: dict[str, int] = {}
        for i, f in enumerate(files):
            self._union(i, first.setdefault(f.sha256, i))
        if near_bits is not None:
            for i, j in close_pairs([f.phash for f in files], near_bits):
                self._union(i, j)
        members: dict[int, list[int]] = defaultdict(list)
        for i in range(len(files)):
            members[self._find(i)].append(i)
        keys = {i: seeded_key(f.sha256, seed) for i, f in enumerate(files)}
        self.groups = sorted(
            (sorted(m, key=keys.__getitem__) for m in members.values()),
            key=lambda m: keys[m[0]],
        )

    def _find(self, i: int) -> int:
        while self._parent[i] != i:
            self._parent[i] = self._parent[self._parent[i]]
            i = self._parent[i]
        return i

    def _union(self, i: int, j: int) -> None:
        a, b = self._find(i), self._find(j)
        if a != b:
            self._parent[max(a, b)] = min(a, b)

    def home(self, group: list[int]) -> str:
        return self.files[group[0]].label

    def near_duplicates(self) -> list[list[int]]:
        """Groups holding more than one distinct file content (not just byte-identical)."""
        return [g for g in self.groups if len({self.files[i].sha256 for i in g}) > 1]


def _assign_class(
    label: str,
    groups: list[list[int]],
    files: Sequence[ImageFile],
    pinned: frozenset[str],
    params: SplitParams,
) -> list[str]:
    """Split name for each of one class's groups (in key order).

    Groups holding an image in `pinned` (what the init_from model trained on) go to train:
    a test image the model has seen measures nothing."""
    is_pinned = [any(files[i].sha256 in pinned for i in g) for g in groups]
    if params.method == "hash":
        edges = (params.test_ratio, params.test_ratio + params.val_ratio)
        out = []
        for g, pin in zip(groups, is_pinned, strict=True):
            u = _unit_interval(files[g[0]].sha256, params.seed)
            out.append(
                "train" if pin else "test" if u < edges[0] else "val" if u < edges[1] else "train"
            )
        missing = [s for s in SPLIT_NAMES if s not in out]
        if missing and not any(is_pinned):
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
    free = iter(["test"] * n_test + ["val"] * n_val)
    return ["train" if pin else next(free, "train") for pin in is_pinned]


def assign_splits(
    files: Sequence[ImageFile],
    classes: Sequence[str],
    params: SplitParams,
    pinned: frozenset[str] = frozenset(),
) -> tuple[dict[str, list[ImageFile]], Groups]:
    """Assign every file to train, val or test (each list sorted by path); `pinned` content
    hashes go to train. Also returns the groups, for the report."""
    labels = {f.label for f in files}
    empty = [c for c in classes if c not in labels]
    if empty:
        raise DataError(f"class {empty[0]!r} has no usable images (empty classes: {empty})")
    if len(labels | set(classes)) < 2:
        raise DataError(f"need at least 2 classes, found {sorted(labels | set(classes))}")
    groups = Groups(files, params.seed, params.near_duplicate_bits)
    by_home: dict[str, list[list[int]]] = defaultdict(list)
    for g in groups.groups:
        by_home[groups.home(g)].append(g)
    splits: dict[str, list[ImageFile]] = {name: [] for name in SPLIT_NAMES}
    for label in sorted(labels):
        class_groups = by_home.get(label, [])
        if not class_groups:
            raise DataError(
                f"class {label!r}: every image is a duplicate of an image of another class"
            )
        names = _assign_class(label, class_groups, files, pinned, params)
        for g, name in zip(class_groups, names, strict=True):
            splits[name] += [files[i] for i in g]
    return {name: sorted(fs, key=lambda f: f.path) for name, fs in splits.items()}, groups


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

"""Pure split logic: stratified, seeded, duplicate-aware assignment of images to train/val/test.

Files are ordered by a seeded hash of their content, never by name or directory order, so the
same images and seed give the same split on any machine. Identical files (in any class) and
confirmed near-duplicates (data/near_duplicates.py) form one group and always land in the same
split, so a copy cannot leak from train into test. Stratified splits count images, not groups:
each split's share of each class is its ratio, whatever the groups' sizes.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from image_classifier.config import SPLIT_NAMES
from image_classifier.data.near_duplicates import close_pairs, confirmed
from image_classifier.data.scan import ImageFile
from image_classifier.errors import DataError
from image_classifier.params import SplitParams

# Paths listed for a group too large to place: enough to find it, not the whole group.
SAMPLE_PATHS = 10
# Where singletons go first: held-out splits fill exactly, train takes the rest.
FILL_ORDER = ("test", "val", "train")


@dataclass(frozen=True)
class Duplicate:
    sha256: str
    paths: tuple[str, ...]
    labels: tuple[str, ...]
    splits: tuple[str, ...]


@dataclass(frozen=True)
class TooLarge:
    """A group no split had room for: placed whole where the most room was left."""

    size: int
    labels: tuple[str, ...]
    split: str
    paths: tuple[str, ...]  # a sample, sorted


def _order_key(sha256: str, seed: int) -> bytes:
    """A file's seeded content key as a digest: ordered as its hex, in half the memory."""
    return hashlib.sha256(f"{seed}:{sha256}".encode()).digest()


def seeded_key(sha256: str, seed: int) -> str:
    return _order_key(sha256, seed).hex()


def _unit_interval(sha256: str, seed: int) -> float:
    return int(seeded_key(sha256, seed)[:16], 16) / 2**64


def split_counts(n: int, params: SplitParams) -> tuple[int, int, int]:
    """(train, val, test) sizes for n images; val and test get at least one each."""
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

    Union-find over the indices of the files that have a copy or a near-duplicate (most have
    neither, and need no entry). A group's key is its smallest seeded content key, so groups
    are ordered by content, never by path; its home class is the class of the file with that
    key."""

    def __init__(self, files: Sequence[ImageFile], seed: int, near_bits: int | None) -> None:
        self.files = files
        self._parent: dict[int, int] = {}
        by_content = sorted(range(len(files)), key=lambda i: files[i].sha256)
        for i, j in itertools.pairwise(by_content):
            if files[i].sha256 == files[j].sha256:
                self._union(i, j)
        del by_content
        if near_bits is not None:
            hashes = [None if f.detail is None else f.phash for f in files]
            details = [None if f.phash is None else f.detail for f in files]
            for i, j in confirmed(close_pairs(hashes, near_bits), details):
                self._union(i, j)
        keys = [_order_key(f.sha256, seed) for f in files]
        members: dict[int, list[int]] = defaultdict(list)
        for i in sorted(self._parent):
            members[self._find(i)].append(i)
        joined = [sorted(m, key=keys.__getitem__) for m in members.values()]
        singles = ([i] for i in range(len(files)) if i not in self._parent)
        self.groups = sorted([*joined, *singles], key=lambda m: keys[m[0]])

    def _find(self, i: int) -> int:
        parent = self._parent
        while parent.get(i, i) != i:
            parent[i] = parent.get(parent[i], parent[i])
            i = parent[i]
        return i

    def _union(self, i: int, j: int) -> None:
        a, b = self._find(i), self._find(j)
        if a != b:
            low, high = min(a, b), max(a, b)
            self._parent[high] = low
            self._parent.setdefault(low, low)

    def home(self, group: list[int]) -> str:
        return self.files[group[0]].label

    def near_duplicates(self) -> list[list[int]]:
        """Groups holding more than one distinct file content (not just byte-identical)."""
        return [g for g in self.groups if len(g) > 1 and len({self.files[i].sha256 for i in g}) > 1]


class Assignment(NamedTuple):
    splits: dict[str, list[ImageFile]]  # each sorted by path
    groups: Groups
    too_large: list[TooLarge]


def class_targets(counts: Counter[str], params: SplitParams) -> dict[str, dict[str, int]]:
    """Images each split should hold of each class; DataError names a class too small."""
    targets = {}
    for label, n in sorted(counts.items()):
        n_train, n_val, n_test = split_counts(n, params)
        if n_train < 1:
            raise DataError(
                f"class {label!r} has {n} images; split ratios val={params.val_ratio}, "
                f"test={params.test_ratio} need at least {min_class_size(params)} (one per split)"
            )
        targets[label] = {"train": n_train, "val": n_val, "test": n_test}
    return targets


def pick_split(
    room: dict[str, dict[str, int]], need: Mapping[str, int], home: str, u: float
) -> str | None:
    """A split with room for every class of a group, drawn with odds proportional to the room
    left in its home class (u uniform in [0, 1)); None when no split has room."""
    fits = [s for s in SPLIT_NAMES if all(room[c][s] >= k for c, k in need.items())]
    total = sum(room[home][s] for s in fits)
    if total <= 0:
        return None
    threshold, acc = u * total, 0
    for s in fits:
        acc += room[home][s]
        if threshold < acc:
            return s
    return fits[-1]


def place_stratified(
    groups: Groups, pinned: frozenset[str], params: SplitParams
) -> tuple[list[str], list[int]]:
    """Split name of each group, and the indices of groups too large for any split.

    Pinned groups go to train first. Then groups of several images, largest first, each into a
    split where all its images fit (a seeded draw weighted by room, so groups reach val and
    test too). Single images fill what is left, so each class hits its targets exactly unless
    a group was too large to fit."""
    files, all_groups = groups.files, groups.groups
    room = class_targets(Counter(f.label for f in files), params)
    is_pinned = [bool(pinned) and any(files[i].sha256 in pinned for i in g) for g in all_groups]
    # Pinned groups, then groups of several images largest first, then single images, each
    # in group order; no sort key per group: most groups are single images.
    several = sorted(
        (k for k, g in enumerate(all_groups) if len(g) > 1 or is_pinned[k]),
        key=lambda k: (not is_pinned[k], len(all_groups[k]) == 1, -len(all_groups[k]), k),
    )
    singles = (k for k, g in enumerate(all_groups) if len(g) == 1 and not is_pinned[k])
    names = [""] * len(all_groups)
    too_large = []
    for k in itertools.chain(several, singles):
        group = all_groups[k]
        home = groups.home(group)
        need = Counter(files[i].label for i in group) if len(group) > 1 else {home: 1}
        if is_pinned[k]:
            name = "train"
        elif len(group) == 1:
            name = next((s for s in FILL_ORDER if room[home][s] > 0), "train")
        else:
            u = _unit_interval(files[group[0]].sha256, params.seed)
            picked = pick_split(room, need, home, u)
            if picked is None:
                too_large.append(k)
            name = picked or max(SPLIT_NAMES, key=lambda s: room[home][s])
        names[k] = name
        for label, n in need.items():
            room[label][name] -= n
    return names, sorted(too_large)


def place_by_hash(groups: Groups, pinned: frozenset[str], params: SplitParams) -> list[str]:
    """Split name of each group from its key alone, so it keeps its split as images are added;
    DataError when a class is left without a split."""
    files = groups.files
    edges = (params.test_ratio, params.test_ratio + params.val_ratio)
    names = []
    for g in groups.groups:
        u = _unit_interval(files[g[0]].sha256, params.seed)
        pin = any(files[i].sha256 in pinned for i in g)
        names.append(
            "train" if pin else "test" if u < edges[0] else "val" if u < edges[1] else "train"
        )
    by_home: dict[str, list[int]] = defaultdict(list)
    for k, g in enumerate(groups.groups):
        by_home[groups.home(g)].append(k)
    for label, ks in sorted(by_home.items()):
        missing = [s for s in SPLIT_NAMES if s not in {names[k] for k in ks}]
        pinned_here = any(files[i].sha256 in pinned for k in ks for i in groups.groups[k])
        if missing and not pinned_here:
            raise DataError(
                f"class {label!r}: {len(ks)} distinct images leave no {missing[0]} image with "
                "split.method: hash; add images or use split.method: stratified"
            )
    return names


def _check_held_out(splits: dict[str, list[ImageFile]], pinned: frozenset[str]) -> None:
    """A class without val or test images cannot be scored: say which and why."""
    sizes = Counter(f.label for fs in splits.values() for f in fs)
    present = {(name, f.label) for name, fs in splits.items() for f in fs}
    with_pinned = {f.label for fs in splits.values() for f in fs if f.sha256 in pinned}
    for label in sorted(sizes.keys() - with_pinned):
        missing = [s for s in SPLIT_NAMES if (s, label) not in present]
        if missing:
            raise DataError(
                f"class {label!r}: its {sizes[label]} images are in identical or near-duplicate "
                f"groups too large to leave any for {missing[0]} (see near_duplicates in "
                "reports/split.json)"
            )


def assign_splits(
    files: Sequence[ImageFile],
    classes: Sequence[str],
    params: SplitParams,
    pinned: frozenset[str] = frozenset(),
) -> Assignment:
    """Assign every file to train, val or test; `pinned` content hashes go to train. Also
    returns the groups, and those too large to place, for the report."""
    labels = {f.label for f in files}
    empty = [c for c in classes if c not in labels]
    if empty:
        raise DataError(f"class {empty[0]!r} has no usable images (empty classes: {empty})")
    if len(labels | set(classes)) < 2:
        raise DataError(f"need at least 2 classes, found {sorted(labels | set(classes))}")
    groups = Groups(files, params.seed, params.near_duplicate_bits)
    too_large: list[int] = []
    if params.method == "hash":
        names = place_by_hash(groups, pinned, params)
    else:
        names, too_large = place_stratified(groups, pinned, params)
    splits: dict[str, list[ImageFile]] = {name: [] for name in SPLIT_NAMES}
    for g, name in zip(groups.groups, names, strict=True):
        splits[name] += [files[i] for i in g]
    splits = {name: sorted(fs, key=lambda f: f.path) for name, fs in splits.items()}
    if params.method != "hash":
        _check_held_out(splits, pinned)
    reported = [
        TooLarge(
            len(groups.groups[k]),
            tuple(sorted({files[i].label for i in groups.groups[k]})),
            names[k],
            tuple(sorted(files[i].path for i in groups.groups[k])[:SAMPLE_PATHS]),
        )
        for k in too_large
    ]
    return Assignment(splits, groups, reported)


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

import hashlib
from collections import Counter

import pytest

from image_classifier.data.assignment import assign_splits as assign_with_groups
from image_classifier.data.assignment import find_duplicates, pick_split, split_counts
from image_classifier.data.scan import ImageFile
from image_classifier.errors import DataError
from image_classifier.params import SplitParams


def detail(name: str) -> bytes:
    """A random detail band: unrelated to any other name's (correlation near zero)."""
    return hashlib.sha256(name.encode()).digest() * 6


def files(n_per_class: dict[str, int]) -> list[ImageFile]:
    """Distinct images with random perceptual hashes (far apart: P(<= 4 bits) ~ 1e-13)."""
    return [
        ImageFile(
            f"raw/{label}/{i}.png",
            label,
            f"{label}-{i}".encode().hex(),
            int(hashlib.sha256(f"{label}/{i}".encode()).hexdigest()[:16], 16),
            detail(f"{label}/{i}"),
        )
        for label, n in n_per_class.items()
        for i in range(n)
    ]


def copies(original: ImageFile, n: int, name: str) -> list[ImageFile]:
    """n near-duplicates of original: other files, same hash and detail."""
    return [
        ImageFile(f"raw/{original.label}/{name}{k}.jpg", original.label,
                  f"{name}-{k}".encode().hex(), original.phash, original.detail)
        for k in range(n)
    ]  # fmt: skip


def assign_splits(data, classes, params, pinned=frozenset()):
    return assign_with_groups(data, classes, params, pinned).splits


def class_counts(splits, label: str) -> list[int]:
    return [sum(f.label == label for f in splits[s]) for s in ("train", "val", "test")]


def split_of(splits, path: str) -> str:
    return next(name for name, fs in splits.items() if any(f.path == path for f in fs))


def paths(splits):
    return {name: [f.path for f in fs] for name, fs in splits.items()}


def test_disjoint_complete_and_stratified():
    data = files({"a": 40, "b": 20, "c": 100})
    splits = assign_splits(data, ["a", "b", "c"], SplitParams(val_ratio=0.2, test_ratio=0.1))
    sets = [set(p) for p in paths(splits).values()]
    assert sets[0].isdisjoint(sets[1]) and sets[0].isdisjoint(sets[2])
    assert sets[1].isdisjoint(sets[2])
    assert set().union(*sets) == {f.path for f in data}
    for label, n in {"a": 40, "b": 20, "c": 100}.items():
        counts = [sum(f.label == label for f in splits[s]) for s in ("train", "val", "test")]
        assert counts == list(split_counts(n, SplitParams(val_ratio=0.2, test_ratio=0.1)))


def test_same_seed_same_split_regardless_of_input_order():
    data = files({"a": 30, "b": 30})
    one = assign_splits(data, ["a", "b"], SplitParams(seed=1))
    two = assign_splits(list(reversed(data)), ["a", "b"], SplitParams(seed=1))
    other = assign_splits(data, ["a", "b"], SplitParams(seed=2))
    assert paths(one) == paths(two)
    assert paths(one) != paths(other)


def test_identical_files_in_a_class_stay_together():
    data = files({"a": 30, "b": 30})
    dup = ImageFile("raw/a/copy.png", "a", data[0].sha256)
    splits = assign_splits([*data, dup], ["a", "b"], SplitParams())
    home = [name for name, fs in splits.items() if data[0] in fs]
    assert dup in splits[home[0]]
    dups = find_duplicates(splits)
    assert len(dups) == 1 and dups[0].splits == (home[0],)


def test_same_image_in_two_classes_is_reported():
    data = files({"a": 30, "b": 30})
    clash = ImageFile("raw/b/clash.png", "b", data[0].sha256)
    dups = find_duplicates(assign_splits([*data, clash], ["a", "b"], SplitParams()))
    assert dups[0].labels == ("a", "b")


def test_too_few_images_names_the_class():
    with pytest.raises(DataError, match=r"class 'tiny' has 2 images.*at least 3"):
        assign_splits(files({"big": 30, "tiny": 2}), ["big", "tiny"], SplitParams())


def test_empty_class_names_the_class():
    with pytest.raises(DataError, match="class 'empty' has no usable images"):
        assign_splits(files({"big": 30}), ["big", "empty"], SplitParams())


def test_hash_split_keeps_old_images_in_place_when_data_grows():
    params = SplitParams(method="hash")
    before = assign_splits(files({"a": 60, "b": 60}), ["a", "b"], params)
    after = assign_splits(files({"a": 90, "b": 80, "c": 60}), ["a", "b", "c"], params)
    where_after = {f.path: name for name, fs in after.items() for f in fs}
    for name, fs in before.items():
        assert all(where_after[f.path] == name for f in fs)


@pytest.mark.parametrize("method", ["stratified", "hash"])
def test_same_image_in_two_classes_lands_in_one_split(method):
    data = files({"a": 40, "b": 40})
    for k in range(10):  # ten images also filed under the other class
        original = data[k]
        data.append(ImageFile(f"raw/b/clash{k}.png", "b", original.sha256, original.phash))
    splits = assign_splits(data, ["a", "b"], SplitParams(method=method))
    for k in range(10):
        assert split_of(splits, data[k].path) == split_of(splits, f"raw/b/clash{k}.png")


@pytest.mark.parametrize("method", ["stratified", "hash"])
def test_near_duplicates_share_a_split_and_are_listed(method):
    data = files({"a": 40, "b": 40})
    near = [
        ImageFile(f"raw/a/reencoded{k}.jpg", "a", f"re-{k}".encode().hex(), data[k].phash ^ 0b101,
                  data[k].detail)
        for k in range(10)
    ]  # fmt: skip
    splits, groups, _ = assign_with_groups(
        [*data, *near], ["a", "b"], SplitParams(method=method, near_duplicate_bits=2)
    )
    for k in range(10):
        assert split_of(splits, data[k].path) == split_of(splits, near[k].path)
    listed = sorted(sorted(groups.files[i].path for i in g) for g in groups.near_duplicates())
    assert listed == sorted(sorted([data[k].path, near[k].path]) for k in range(10))
    # 3 differing bits is over the limit of 2: not grouped
    far = ImageFile("raw/a/far.jpg", "a", b"far".hex(), data[20].phash ^ 0b111, data[20].detail)
    _, groups, _ = assign_with_groups([*data, far], ["a", "b"], SplitParams(near_duplicate_bits=2))
    assert not groups.near_duplicates()


def test_close_hashes_with_unrelated_detail_do_not_chain_into_a_group():
    """Hash distance alone percolates: a, b, c each within the bits of the next."""
    data = files({"a": 40, "b": 40})
    a = data[0]
    b = ImageFile("raw/a/b.jpg", "a", b"b".hex(), a.phash ^ 0b11, a.detail)
    c = ImageFile("raw/a/c.jpg", "a", b"c".hex(), a.phash ^ 0b1111, detail("unrelated"))
    _, groups, _ = assign_with_groups([*data, b, c], ["a", "b"], SplitParams(near_duplicate_bits=2))
    listed = [sorted(groups.files[i].path for i in g) for g in groups.near_duplicates()]
    assert listed == [sorted([a.path, b.path])]


def test_groups_are_placed_by_their_image_count():
    """Stratification counts images: groups of many copies leave each class at its ratios."""
    data = files({"a": 60, "b": 100})
    for k in range(8):  # groups of an original and its copies, all in class a
        data += copies(data[k], 4, f"copy{k}-")
    params = SplitParams(val_ratio=0.15, test_ratio=0.15)
    splits, groups, too_large = assign_with_groups(data, ["a", "b"], params)
    assert class_counts(splits, "a") == list(split_counts(92, params))
    assert class_counts(splits, "b") == list(split_counts(100, params))
    where = {f.path: name for name, fs in splits.items() for f in fs}
    for g in groups.groups:
        assert len({where[groups.files[i].path] for i in g}) == 1
    assert not too_large


def test_a_group_too_large_for_any_split_is_placed_whole_and_reported():
    data = files({"a": 20, "b": 40})
    data += copies(data[0], 40, "burst")  # a group that takes most of train's share
    data += copies(data[1], 10, "more")  # then fits neither train's rest nor val nor test
    splits, _, too_large = assign_with_groups(data, ["a", "b"], SplitParams())
    assert [(t.size, t.labels) for t in too_large] == [(11, ("a",))]
    big = too_large[0]
    assert len(big.paths) == 10 and list(big.paths) == sorted(big.paths)
    assert all(any(f.path == p for f in splits[big.split]) for p in big.paths)
    assert class_counts(splits, "b") == list(split_counts(40, SplitParams()))


def test_a_class_in_one_group_has_nothing_to_hold_out():
    data = files({"a": 1, "b": 40})
    data += copies(data[0], 9, "burst")
    with pytest.raises(DataError, match=r"class 'a': its 10 images .* too large .* for val"):
        assign_splits(data, ["a", "b"], SplitParams())


def test_pick_split_draws_by_room_among_the_splits_that_fit():
    room = {"a": {"train": 6, "val": 0, "test": 2}, "b": {"train": 1, "val": 5, "test": 5}}
    assert pick_split(room, Counter(a=2), "a", 0.0) == "train"
    assert pick_split(room, Counter(a=2), "a", 0.9) == "test"
    assert pick_split(room, Counter(a=2, b=2), "a", 0.0) == "test"
    assert pick_split(room, Counter(a=7), "a", 0.5) is None


@pytest.mark.parametrize("method", ["stratified", "hash"])
def test_images_the_starting_model_trained_on_stay_in_train(method):
    params = SplitParams(method=method)
    before = assign_splits(files({"a": 60, "b": 60}), ["a", "b"], params)
    trained = frozenset(f.sha256 for f in before["train"])
    grown = files({"a": 90, "b": 90})  # new images shift the stratified boundaries
    unpinned = assign_splits(grown, ["a", "b"], params)
    held_out = {f.sha256 for f in [*unpinned["val"], *unpinned["test"]]}
    if method == "stratified":
        assert held_out & trained  # the leak this guards against
    after = assign_splits(grown, ["a", "b"], params, pinned=trained)
    assert not {f.sha256 for f in [*after["val"], *after["test"]]} & trained
    assert after["val"] and after["test"]

import pytest

from image_classifier.params import SplitParams
from image_classifier.scan import DataError, ImageFile
from image_classifier.splitting import assign_splits, find_duplicates, split_counts


def files(n_per_class: dict[str, int]) -> list[ImageFile]:
    return [
        ImageFile(f"raw/{label}/{i}.png", label, f"{label}-{i}".encode().hex())
        for label, n in n_per_class.items()
        for i in range(n)
    ]


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
    with pytest.raises(DataError, match=r"class 'tiny' has 2 distinct images.*at least 3"):
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

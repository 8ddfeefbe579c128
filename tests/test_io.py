import pytest

from image_classifier import atomic
from image_classifier.data.manifests import Row, class_names, read_manifest, write_manifest


def test_manifest_round_trip_with_awkward_names(tmp_path):
    rows = [
        Row("data/raw/crème brûlée/a, b.png", "crème brûlée", "ab" * 32),
        Row('data/raw/x/"q".png', "x", "cd" * 32),
    ]
    write_manifest(tmp_path / "m.csv", rows)
    assert read_manifest(tmp_path / "m.csv") == rows
    assert class_names(rows) == ["crème brûlée", "x"]


def test_manifest_with_wrong_columns_is_refused(tmp_path):
    (tmp_path / "m.csv").write_text("file,class\na,b\n")
    with pytest.raises(ValueError, match="expected columns"):
        read_manifest(tmp_path / "m.csv")


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path):
    target = tmp_path / "model.bin"
    atomic.write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"half-writ")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]

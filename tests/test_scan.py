import io
import logging

import numpy as np
import pytest
from PIL import Image

from image_classifier.data.scan import check_file, scan_folder
from image_classifier.errors import DataError

from conftest import pattern, png


def test_finds_images_with_unicode_and_space_class_names(image_tree):
    result = scan_folder(image_tree, max_pixels=10**6, progress=False)
    assert result.classes == ("cat", "crème brûlée", "dog")
    assert len(result.files) == 36
    assert not result.skipped
    assert {f.label for f in result.files} == set(result.classes)


def test_hidden_files_ignored_bad_files_skipped_with_names(image_tree, caplog):
    (image_tree / "cat" / ".DS_Store").write_bytes(b"junk")
    (image_tree / ".hidden_class").mkdir()
    (image_tree / ".hidden_class" / "a.png").write_bytes(png(pattern(0, 0)))
    (image_tree / "cat" / "notes.txt").write_text("not an image")
    # Cut inside the header: the scan reads headers only (pixel-level damage is prepare's job).
    (image_tree / "dog" / "broken.png").write_bytes(png(pattern(1, 99))[:20])
    (image_tree / "stray.png").write_bytes(png(pattern(0, 1)))
    with caplog.at_level(logging.WARNING):
        result = scan_folder(image_tree, max_pixels=10**6, progress=False)
    skipped = {s.path.rsplit("/", 1)[-1]: s.reason for s in result.skipped}
    assert set(skipped) == {"notes.txt", "broken.png", "stray.png"}
    assert "not an image" in skipped["notes.txt"]
    assert "not an image" in skipped["broken.png"]
    assert "notes.txt" in caplog.text and "broken.png" in caplog.text
    assert len(result.files) == 36


def test_missing_or_flat_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_folder(tmp_path / "nope", 10**6, progress=False)
    (tmp_path / "a.png").write_bytes(png(pattern(0, 0)))
    with pytest.raises(DataError, match="no class sub-folders"):
        scan_folder(tmp_path, 10**6, progress=False)


def test_each_file_carries_its_own_hash_and_fingerprint(tmp_path):
    """The scan holds its results in arrays while the pool runs; every ImageFile built from
    them has exactly what check_file found for its path, fingerprint or none."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(5):
            out = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(out, "PNG")
            (tmp_path / label / f"{i}.png").write_bytes(out.getvalue())
    Image.new("RGB", (64, 48), (9, 9, 9)).save(tmp_path / "a" / "flat.png")  # no fingerprint
    (tmp_path / "b" / "cut.png").write_bytes((tmp_path / "b" / "0.png").read_bytes()[:20])
    result = scan_folder(tmp_path, 10**6, progress=False, perceptual=True)
    assert [s.path.rsplit("/", 1)[-1] for s in result.skipped] == ["cut.png"]
    assert len(result.files) == 11
    for f in result.files:
        expected = check_file(f.path, 10**6, perceptual=True)
        assert (f.sha256, f.phash, f.detail) == expected[:3], f.path
    assert sum(f.phash is None for f in result.files) == 1

"""synthetic_sets.py: the family of small folders bench/small_data.py trains on."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from image_classifier import synthetic_sets
from image_classifier.synthetic_sets import DATASETS


def test_the_family_spans_the_sizes_and_balances_small_data_has():
    sizes = [sum(d.counts) for d in DATASETS.values()]
    assert len(DATASETS) >= 6
    assert min(sizes) == 60 and max(sizes) == 400
    assert {len(d.counts) for d in DATASETS.values()} >= {2, 10}
    imbalanced = [name for name, d in DATASETS.items() if len(set(d.counts)) > 1]
    assert len(imbalanced) >= 3, imbalanced
    for d in DATASETS.values():
        assert len(d.classes) == len(d.counts) == len(set(d.classes))


@pytest.mark.parametrize("name", list(DATASETS))
def test_an_image_depends_only_on_dataset_seed_class_and_index(name):
    a = synthetic_sets.image_bytes(name, 3, 1, 7)
    assert a == synthetic_sets.image_bytes(name, 3, 1, 7)
    assert a != synthetic_sets.image_bytes(name, 4, 1, 7)
    suffix, payload = a
    img = Image.open(io.BytesIO(payload))
    assert suffix in (".png", ".jpg") and 96 <= img.width <= 160 and img.width == img.height
    # The grayscale dataset writes 8-bit grayscale files; the others colour.
    assert img.mode == ("L" if name == "grayscale" else "RGB")


def test_write_makes_the_class_folders(tmp_path):
    n = synthetic_sets.write("two_class", tmp_path, seed=0)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*"))
    assert n == len(files) == 60
    assert {f.split("/")[0] for f in files} == set(DATASETS["two_class"].classes)


def test_missing_fonts_name_the_debian_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(synthetic_sets, "FONT_DIRS", (tmp_path,))
    with pytest.raises(FileNotFoundError, match="fonts-dejavu-core and fonts-liberation"):
        synthetic_sets.image_bytes("glyphs", 0, 0, 0)

import numpy as np
import pytest
from PIL import Image

from image_classifier import sample_data


def test_writes_all_digits_as_png_class_folders(tmp_path):
    root = tmp_path / "raw"
    assert sample_data.write_sample(root) == 1797
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [str(d) for d in range(10)]
    assert sum(1 for _ in root.rglob("*.png")) == 1797
    img = Image.open(root / "0" / "digit_0000.png")
    assert img.mode == "L" and img.size == (8, 8)
    assert np.asarray(img).max() == 255  # white paper, dark ink
    assert sample_data.write_sample(root) == 1797  # re-running over its own output is fine


def test_refuses_to_touch_foreign_files(tmp_path):
    root = tmp_path / "raw"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "tom.jpg").write_bytes(b"mine")
    with pytest.raises(sample_data.ForeignFilesError, match="dvc remove sample"):
        sample_data.write_sample(root)
    assert (root / "cats" / "tom.jpg").read_bytes() == b"mine"
    assert not (root / "0").exists()

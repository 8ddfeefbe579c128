"""A damaged pixel store (data/prepared/, data/store.py): what can be told from the files gives a
StoreError naming the damaged file and what to run, which the stages print as one line; never
pixels read from the wrong place."""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from image_classifier import cli, config, prepare, split, train
from image_classifier.data.store import HEADER_BYTES, StoreError, open_split
from image_classifier.params import parse_params

from conftest import pattern, png
from fork import params_dict

PARAMS = parse_params(params_dict({"image": {"size": 12, "color_mode": "grayscale"}}))
RECORD = 12 * 12  # bytes an image: 12 x 12 grayscale uint8
RERUN = r"re-run the prepare stage \(dvc repro -f -s prepare\)"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A prepared store of 3 classes x 10 images, to copy from."""
    root = tmp_path_factory.mktemp("store")
    for label, name in enumerate("abc"):
        (root / "data" / "raw" / name).mkdir(parents=True)
        for i in range(10):
            (root / "data" / "raw" / name / f"{i}.png").write_bytes(png(pattern(label, i)))
    with contextlib.chdir(root):
        split.run(PARAMS)
        prepare.run(PARAMS, workers=1)
    return root / config.PREPARED_DIR


@pytest.fixture
def store(pristine, tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(pristine, config.PREPARED_DIR)
    return config.PREPARED_DIR


def train_file(store: Path) -> Path:
    return store / "train.npy"


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: HEADER_BYTES + 3 * RECORD + 7],  # cut off mid-image
        lambda data: data[:-1],  # one byte short
        lambda data: data[:HEADER_BYTES],  # the header alone
        lambda data: data + b"\0" * RECORD,  # an image too many: not this manifest's file
        lambda data: b"\0" * 6 + data[6:],  # the right size, not a .npy file
    ],
    ids=["mid_image", "one_byte_short", "header_only", "one_record_long", "no_magic"],
)
def test_a_damaged_split_file_is_named_when_opened(store, damage):
    path = train_file(store)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(StoreError, match=rf"^{path} does not hold \d+ images of .*{RERUN}$"):
        open_split("train", 12, "grayscale")


def test_a_file_cut_short_while_open_stops_the_read_naming_it(store):
    path = train_file(store)
    with open_split("train", 12, "grayscale") as opened:
        whole = opened.read([0, 1, 2, 5])
        with path.open("r+b") as fh:  # damaged under the reader: only 3 images left
            fh.truncate(HEADER_BYTES + 3 * RECORD)
        np.testing.assert_array_equal(opened.read([0, 1, 2]), whole[:3])
        with pytest.raises(
            StoreError, match=rf"^{path}: short read at image 5; the file is damaged$"
        ):
            opened.read([0, 5])


def test_a_stage_on_a_truncated_store_says_so_in_one_line(store, monkeypatch, caplog):
    path = train_file(store)
    path.write_bytes(path.read_bytes()[: HEADER_BYTES + RECORD])
    monkeypatch.setattr(cli, "load_params", lambda: PARAMS)
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as stopped:
        cli.run_stage(train.run)
    assert stopped.value.code == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert str(path) in errors[0].getMessage() and "dvc repro" in errors[0].getMessage()


def test_a_damaged_meta_json_is_named(store):
    meta = store / "meta.json"
    meta.write_text(meta.read_text(encoding="utf-8")[:40], encoding="utf-8")
    with pytest.raises(StoreError, match=r"meta\.json"):
        open_split("train", 12, "grayscale")


def test_a_missing_split_file_is_a_store_error(store):
    train_file(store).unlink()
    with pytest.raises(StoreError, match=r"train\.npy"):
        open_split("train", 12, "grayscale")

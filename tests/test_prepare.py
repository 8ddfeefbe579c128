"""Stage `prepare` and the pixel store: decode once, exactly as load_image, atomically."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from image_classifier import config, prepare, split
from image_classifier.cli import StageError
from image_classifier.data import store
from image_classifier.data.manifests import read_manifest
from image_classifier.data.store import StoreError, open_split
from image_classifier.data.store_writer import DecodeSettings, decode_rows
from image_classifier.errors import DataError
from image_classifier.params import parse_params
from image_classifier.preprocessing import load_image

from helpers import messy_tree

ROOT = Path(__file__).resolve().parents[1]
PARAMS = parse_params({"image": {"size": 48, "color_mode": "rgb"}})


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    messy_tree(tmp_path / "data" / "raw")
    split.run(PARAMS)
    return tmp_path


def test_store_matches_load_image_for_every_image(workspace):
    report = prepare.run(PARAMS, workers=2)
    for name in config.SPLIT_NAMES:
        with open_split(name, 48, "rgb") as store:
            assert len(store) == report["totals"][name]
            pixels = store.read(np.arange(len(store)))
            for row, stored in zip(store.rows, pixels, strict=True):
                expected = load_image(row.path, 48, "rgb", PARAMS.image.max_pixels)
                np.testing.assert_array_equal(stored.astype(np.float32), expected, row.path)
            # A plain NumPy file: np.load reads it without this project's code.
            loaded = np.load(config.PREPARED_DIR / f"{name}.npy", mmap_mode="r")
            np.testing.assert_array_equal(loaded, pixels)
    stored = [read_manifest(config.PREPARED_DIR / f"{n}.csv") for n in config.SPLIT_NAMES]
    assert any(row.path.endswith("big.jpg") for rows in stored for row in rows)


def test_corrupt_pixels_are_skipped_by_path_and_counted(workspace, caplog):
    report = prepare.run(PARAMS, workers=2)
    on_disk = json.loads(config.SPLIT_REPORT.read_text())
    assert on_disk == report
    bad = [s for s in report["skipped"] if s["path"].endswith("truncated.jpg")]
    assert len(bad) == 1 and "corrupt or truncated" in bad[0]["reason"]
    assert report["skipped_count"] == len(report["skipped"]) >= 1
    listed = sum(len(read_manifest(config.manifest_path(n))) for n in config.SPLIT_NAMES)
    assert sum(report["totals"].values()) == listed - 1
    assert "truncated.jpg" in caplog.text


def test_a_bug_while_decoding_fails_the_stage_instead_of_skipping_the_image(
    workspace, tmp_path, monkeypatch
):
    from image_classifier import preprocessing

    def broken(img, color_mode):
        raise TypeError("a bug in _normalise_mode")

    monkeypatch.setattr(preprocessing, "_normalise_mode", broken)
    rows = read_manifest(config.manifest_path("val"))[:2]
    settings = DecodeSettings(32, "rgb", 10**8)
    with pytest.raises(TypeError, match="a bug"):
        decode_rows(rows, tmp_path / "val.npy", settings, workers=1, progress=False)


def test_one_worker_and_two_write_identical_stores(workspace, tmp_path):
    rows = read_manifest(config.manifest_path("train"))
    settings = DecodeSettings(32, "rgb", 10**8)
    one = decode_rows(rows, tmp_path / "one.npy", settings, workers=1, progress=False)
    two = decode_rows(rows, tmp_path / "two.npy", settings, workers=2, progress=False)
    assert one == two
    assert (tmp_path / "one.npy").read_bytes() == (tmp_path / "two.npy").read_bytes()


def test_readers_refuse_a_store_made_for_other_settings(workspace):
    prepare.run(PARAMS, workers=1)
    with pytest.raises(StoreError, match=r"run `dvc repro`"):
        open_split("train", 64, "rgb")
    with pytest.raises(StoreError, match="grayscale"):
        open_split("train", 48, "grayscale")


def test_a_file_changed_since_the_split_is_an_error(workspace):
    path = Path(read_manifest(config.manifest_path("val"))[0].path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match=f"{path.name} changed since the split"):
        prepare.run(PARAMS, workers=1)
    assert not config.PREPARED_DIR.exists()


def test_full_disk_says_what_to_free_and_leaves_nothing(workspace, monkeypatch):
    def no_space(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(StageError, match=r"needs 0\.\d+ GB.*free space.*image\.size"):
        prepare.run(PARAMS, workers=1)
    assert not config.PREPARED_DIR.exists()
    assert not list(Path("data").glob(".prepared-*"))


def test_a_disk_that_fills_mid_store_keeps_the_previous_store(workspace, monkeypatch):
    """A new store (here for another image.size) that meets a full disk part-way leaves the
    previous store as it was, byte for byte, and no hidden work folder."""
    prepare.run(PARAMS, workers=1)
    before = {p.name: p.read_bytes() for p in config.PREPARED_DIR.iterdir()}
    allocate = os.posix_fallocate
    calls = []

    def fills_after_one(*args):
        calls.append(args)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return allocate(*args)

    monkeypatch.setattr(os, "posix_fallocate", fills_after_one)
    bigger = parse_params({"image": {"size": 64, "color_mode": "rgb"}})
    with pytest.raises(StageError, match="free space"):
        prepare.run(bigger, workers=1)
    assert len(calls) > 1  # the first split's array was written: the disk filled mid-store
    assert {p.name: p.read_bytes() for p in config.PREPARED_DIR.iterdir()} == before
    assert not list(Path("data").glob(".prepared-*"))


def test_too_little_free_space_is_refused_before_decoding(workspace, monkeypatch):
    import shutil

    usage = shutil.disk_usage(".")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=1000))
    with pytest.raises(StageError, match=r"\(0\.00 GB free\)"):
        prepare.run(PARAMS, workers=1)


# The stage as `python -m image_classifier.prepare` runs it, except that it stops for good
# once the first image is in the new store: the kill then lands mid-run, at a known point,
# however fast or loaded the machine. (Splits this small decode in-process: the patch holds.)
STOP_AFTER_ONE_IMAGE = """
import sys, time
from pathlib import Path
from image_classifier import prepare
from image_classifier.cli import run_stage
from image_classifier.data import store_writer

decode_one = store_writer.decode_one

def decode_then_stop(*args):
    reason = decode_one(*args)
    Path(sys.argv[1]).touch()
    time.sleep(3600)
    return reason

store_writer.decode_one = decode_then_stop
run_stage(prepare.run)
"""


@pytest.mark.slow
def test_killed_prepare_leaves_the_previous_store(workspace):
    prepare.run(PARAMS, workers=1)
    before = {p.name: p.read_bytes() for p in config.PREPARED_DIR.iterdir()}
    report = config.SPLIT_REPORT.read_bytes()
    # Other settings: a store that got into place would differ from the previous one.
    Path("params.yaml").write_text(json.dumps({"image": {"size": 64, "color_mode": "rgb"}}))
    decoded = workspace / "decoded-one"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", STOP_AFTER_ONE_IMAGE, str(decoded)],
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not decoded.exists():
            if proc.poll() is not None:
                pytest.fail(f"prepare exited ({proc.returncode}) before its first image")
            if time.monotonic() > deadline:
                pytest.fail("prepare wrote no image in 120 s")
            time.sleep(0.02)
        halves = list(Path("data").glob(".prepared-*"))
        assert len(halves) == 1, f"expected the stage's one temporary folder: {halves}"
        assert (halves[0] / "train.npy").is_file() and not (halves[0] / "meta.json").exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert {p.name: p.read_bytes() for p in config.PREPARED_DIR.iterdir()} == before
    assert config.SPLIT_REPORT.read_bytes() == report
    with open_split("train", 48, "rgb") as store:
        assert len(store) > 0
    prepare.run(PARAMS, workers=1)  # the next run cleans up what the killed one left
    assert not list(Path("data").glob(".prepared-*"))


@pytest.mark.parametrize(("n", "limit"), [(10, 20), (100, 20)])
def test_seeded_sample_is_seeded_sorted_and_bounded(n, limit):
    picked = store.seeded_sample(n, limit, seed=1)
    assert len(picked) == min(n, limit) and (np.diff(picked) > 0).all()
    np.testing.assert_array_equal(picked, store.seeded_sample(n, limit, seed=1))


def test_seeded_sample_of_all_or_of_some():
    """export's Keras check and int8 calibration: None or a limit >= n takes every image."""
    assert store.seeded_sample(5, None, 0).tolist() == [0, 1, 2, 3, 4]
    assert store.seeded_sample(5, 9, 0).tolist() == [0, 1, 2, 3, 4]
    picked = store.seeded_sample(1000, 10, 42)
    assert len(set(picked.tolist())) == 10 and (np.diff(picked) > 0).all()
    assert picked.tolist() == store.seeded_sample(1000, 10, 42).tolist()
    assert picked.tolist() != store.seeded_sample(1000, 10, 43).tolist()

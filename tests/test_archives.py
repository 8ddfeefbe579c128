"""Zip shards in data.raw_dir: packing, scanning and decoding give what the folders give."""

from __future__ import annotations

import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from image_classifier import config, pack, prepare, split
from image_classifier.data import archives
from image_classifier.data.scan import scan_folder
from image_classifier.data.store import open_split
from image_classifier.errors import DataError
from image_classifier.params import parse_params

from conftest import pattern, png
from helpers import messy_tree


def by_hash(scan):
    return {f.sha256: (f.label, f.phash) for f in scan.files}


def test_plan_shards_is_sorted_and_bounded():
    assert pack.plan_shards(["c", "a", "b", "e", "d"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError, match="at least 1"):
        pack.plan_shards(["a"], 0)


def test_pack_is_byte_reproducible_and_never_overwrites(image_tree, tmp_path):
    first = pack.pack(image_tree, tmp_path / "one", per_shard=10)
    again = pack.pack(image_tree, tmp_path / "two", per_shard=10)
    assert [p.name for p in first] == [f"part-{i:05d}.zip" for i in range(4)]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    with zipfile.ZipFile(first[0]) as zf:
        assert zf.namelist()[0] == "cat/00.png"
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    with pytest.raises(DataError, match="already exists"):
        pack.pack(image_tree, tmp_path / "one", per_shard=10)
    assert pack.pack(image_tree, tmp_path / "one", per_shard=10, prefix="more")
    with pytest.raises(DataError, match="inside"):
        pack.pack(image_tree, image_tree / "shards")


SAMPLE_DVC_YAML = """stages:
  sample:
    cmd: python -m image_classifier.sample_data
    outs:
      - data/raw:
          persist: true
  split:
    cmd: python -m image_classifier.split
"""


def test_pack_into_the_sample_stage_folder_is_refused_with_the_commands(image_tree, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "dvc.yaml").write_text(SAMPLE_DVC_YAML)
    with pytest.raises(DataError, match=r"`dvc remove sample`.*then `dvc add .*data/raw`"):
        pack.pack(image_tree, project / "data" / "raw")
    assert not (project / "data" / "raw").exists()


def test_pack_elsewhere_while_the_sample_stage_remains_warns(image_tree, tmp_path, caplog):
    project = tmp_path / "project"
    project.mkdir()
    (project / "dvc.yaml").write_text(SAMPLE_DVC_YAML)
    with caplog.at_level(logging.WARNING):
        assert pack.pack(image_tree, project / "data" / "photos")
    assert "`dvc remove sample`, set data.raw_dir:" in caplog.text
    (project / "dvc.yaml").write_text(SAMPLE_DVC_YAML.split("  split:")[0].replace("sample", "x"))
    assert pack.sample_stage_problem(project / "data" / "raw") is None
    (project / "data" / "raw" / "0").mkdir(parents=True)  # the digits `dvc remove sample` left
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert pack.pack(image_tree, project / "data" / "raw")
    assert "also holds class folders (0)" in caplog.text


def test_scanning_shards_finds_what_the_folders_hold(image_tree, tmp_path):
    shards = tmp_path / "shards"
    pack.pack(image_tree, shards, per_shard=5)
    folders = scan_folder(image_tree, 10**6, progress=False, perceptual=True)
    packed = scan_folder(shards, 10**6, progress=False, perceptual=True)
    assert packed.classes == folders.classes
    assert by_hash(packed) == by_hash(folders)
    path = next(f.path for f in packed.files if f.label == "crème brûlée")
    assert path.startswith(f"{shards.as_posix()}/part-") and ".zip!/crème brûlée/" in path
    assert archives.read_bytes(path) == (image_tree / path.split("!/")[1]).read_bytes()


def test_folders_and_shards_mix_and_messy_members_are_named(image_tree, tmp_path):
    raw = tmp_path / "mixed"
    (raw / "cat").mkdir(parents=True)
    (raw / "cat" / "extra.png").write_bytes(png(pattern(0, 40)))
    pack.pack(image_tree, raw, per_shard=100)
    with zipfile.ZipFile(raw / "Messy.ZIP", "w") as zf:
        zf.writestr("bird/ok.png", png(pattern(3, 1)))
        zf.writestr("bird/broken.png", png(pattern(3, 2))[:20])
        zf.writestr("top.png", png(pattern(3, 3)))
        zf.writestr("__MACOSX/bird/._ok.png", b"resource fork")
        zf.writestr("bird/.DS_Store", b"junk")
        zf.writestr("../escape/x.png", png(pattern(3, 4)))
    result = scan_folder(raw, 10**6, progress=False)
    assert result.classes == ("bird", "cat", "crème brûlée", "dog")
    assert len(result.files) == 36 + 1 + 1
    skipped = {s.path.split("!/")[-1]: s.reason for s in result.skipped}
    assert set(skipped) == {"bird/broken.png", "top.png", "../escape/x.png"}
    assert "not an image" in skipped["bird/broken.png"]
    assert skipped["top.png"] == "not inside a class folder"


def test_a_damaged_shard_is_named_not_skipped(image_tree, tmp_path):
    raw = tmp_path / "shards"
    pack.pack(image_tree, raw, per_shard=100)
    (raw / "bad.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"bad\.zip is not a readable zip archive"):
        scan_folder(raw, 10**6, progress=False)


def test_read_bytes_sees_a_shard_replaced_at_the_same_path(tmp_path):
    shard = tmp_path / "s.zip"
    for content in (b"first", b"second, longer"):
        with zipfile.ZipFile(shard, "w") as zf:
            zf.writestr("a/x.png", content)
        assert archives.read_bytes(archives.member_path(shard, "a/x.png")) == content
    with pytest.raises(FileNotFoundError, match=r"no member a/y\.png"):
        archives.read_bytes(archives.member_path(shard, "a/y.png"))


def test_split_and_prepare_from_shards_store_the_same_pixels(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    messy_tree(photos)
    stores = {}
    for name, raw in (("folders", photos), ("shards", tmp_path / "shards")):
        if name == "shards":
            pack.pack(photos, raw, per_shard=7)
        work = tmp_path / f"work-{name}"
        work.mkdir()
        monkeypatch.chdir(work)
        image = {"size": 48, "color_mode": "rgb"}
        params = parse_params({"data": {"raw_dir": str(raw)}, "image": image})
        split.run(params)
        report = prepare.run(params, workers=2)
        assert [s["path"].split("/")[-1] for s in report["skipped"]] == ["truncated.jpg"]
        stores[name] = {}
        for split_name in config.SPLIT_NAMES:
            with open_split(split_name, 48, "rgb") as store:
                pixels = store.read(np.arange(len(store)))
                for row, image in zip(store.rows, pixels, strict=True):
                    stores[name][row.sha256] = (split_name, row.label, image.tobytes())
    assert stores["shards"] == stores["folders"]


def test_pack_cli_reports_errors_in_one_line(image_tree, tmp_path):
    cmd = [sys.executable, "-m", "image_classifier.pack", str(image_tree), str(tmp_path / "s")]
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 1
    assert "already exists" in again.stderr and "Traceback" not in again.stderr
    assert Path(tmp_path / "s" / "part-00000.zip").is_file()

"""The split stage on disk: manifests, report, and the flow for adding images and classes."""

from __future__ import annotations

import json

from image_classifier import config, split
from image_classifier.manifests import read_manifest
from image_classifier.params import parse_params

from conftest import pattern, png


def add_images(root, label, name, start, count):
    (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        (root / name / f"{i:03d}.png").write_bytes(png(pattern(label, i)))


def where(split_name_rows):
    return {row.path: name for name, rows in split_name_rows.items() for row in rows}


def read_all():
    return {name: read_manifest(config.manifest_path(name)) for name in config.SPLIT_NAMES}


def test_stage_writes_manifests_and_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    add_images(tmp_path / "data/raw", 0, "a", 0, 20)
    add_images(tmp_path / "data/raw", 1, "b", 0, 20)
    (tmp_path / "data/raw/b/019.png").write_bytes((tmp_path / "data/raw/a/000.png").read_bytes())
    report = split.run(parse_params({}))
    assert sum(report["totals"].values()) == 40
    assert report["duplicates_across_splits"] <= report["duplicate_groups"] == 1
    on_disk = json.loads(config.SCAN_REPORT.read_text())
    assert on_disk["counts"] == report["counts"]
    first = {n: config.manifest_path(n).read_bytes() for n in config.SPLIT_NAMES}
    split.run(parse_params({}))
    assert {n: config.manifest_path(n).read_bytes() for n in config.SPLIT_NAMES} == first


def test_adding_images_and_a_class_keeps_old_images_in_their_split(tmp_path, monkeypatch):
    """The README's flow: drop new images or a new class folder in, re-run (dvc repro)."""
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "data/raw"
    params = parse_params({"split": {"method": "hash"}})
    add_images(raw, 0, "a", 0, 60)
    add_images(raw, 1, "b", 0, 60)
    split.run(params)
    before = where(read_all())
    add_images(raw, 0, "a", 60, 30)
    add_images(raw, 2, "c", 0, 60)
    report = split.run(params)
    after = where(read_all())
    assert all(after[path] == name for path, name in before.items())
    assert len(after) == 210 and "c" in report["classes"]

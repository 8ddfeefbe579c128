"""The split stage on disk: manifests, report, and the flow for adding images and classes."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from image_classifier import config, split, synthetic
from image_classifier.data.manifests import read_manifest, write_manifest
from image_classifier.errors import DataError
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


def test_near_duplicates_on_disk_share_a_split_and_are_reported(tmp_path, monkeypatch):
    """A photo-sized JPEG, its re-encode at another quality and a half-size copy."""
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "data/raw"
    spec = synthetic.Spec((12, 12), seed=3)
    synthetic.write_dataset(raw, spec, workers=1)
    photo = Image.open(raw / spec.classes[0] / "img_000000.jpg")
    photo.save(raw / spec.classes[0] / "copy_q60.jpg", quality=60)
    photo.resize((photo.width // 2, photo.height // 2)).save(raw / spec.classes[0] / "half.png")
    report = split.run(parse_params({}))
    groups = [sorted(p.rsplit("/", 1)[1] for p in g["paths"]) for g in report["near_duplicates"]]
    assert ["copy_q60.jpg", "half.png", "img_000000.jpg"] in groups
    placed = where(read_all())
    assert len({placed[f"data/raw/{spec.classes[0]}/{n}"] for n in groups[0]}) == 1
    off = split.run(parse_params({"split": {"near_duplicate_bits": None}}))
    assert off["near_duplicate_groups"] == 0


def test_init_from_keeps_what_the_model_trained_on_in_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "data/raw"
    add_images(raw, 0, "a", 0, 60)
    add_images(raw, 1, "b", 0, 60)
    split.run(parse_params({}))
    first = read_all()
    model_dir = tmp_path / "models/v1"
    model_dir.mkdir(parents=True)
    write_manifest(model_dir / "trained_on.csv", first["train"])
    add_images(raw, 0, "a", 60, 40)  # new images move the stratified boundaries
    add_images(raw, 1, "b", 60, 40)
    params = parse_params({"train": {"init_from": str(model_dir / "model.keras")}})
    report = split.run(params)
    trained = {row.sha256 for row in first["train"]}
    now = read_all()
    assert not trained & {row.sha256 for row in [*now["val"], *now["test"]]}
    assert report["pinned_to_train"] == len(trained)
    assert now["val"] and now["test"]
    (model_dir / "trained_on.csv").unlink()
    with pytest.raises(DataError, match=r"models/v1/trained_on.csv not found.*copy it"):
        split.run(params)


def test_a_group_too_large_to_place_is_reported_with_its_size_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "data/raw"
    add_images(raw, 0, "a", 0, 20)
    add_images(raw, 1, "b", 0, 20)
    for k in range(60):  # one photo saved again and again: more than train's share of class a
        (raw / "a" / f"copy{k:02d}.png").write_bytes((raw / "a/000.png").read_bytes())
    report = json.loads(json.dumps(split.run(parse_params({}))))
    assert report["largest_group"] == 61
    [big] = report["groups_too_large"]
    assert (big["size"], big["labels"], big["split"]) == (61, ["a"], "train")
    assert big["paths"][0] == "data/raw/a/000.png" and len(big["paths"]) == 10
    assert json.loads(config.SCAN_REPORT.read_text())["groups_too_large"] == [big]

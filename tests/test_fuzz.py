"""The shared preprocessing function's contract on hostile bytes, and the pipeline's handling
of a folder of damaged files and of damaged zip shards. (Uploads to the real server:
test_webapp_server.py.)"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from image_classifier import config, prepare, split
from image_classifier.data import archives
from image_classifier.data.manifests import read_manifest
from image_classifier.data.scan import scan_folder
from image_classifier.errors import DataError
from image_classifier.params import parse_params
from image_classifier.preprocessing import ImageError, check_header, decode_pixels

import fuzzing
from conftest import pattern, png

SEEDS = fuzzing.seed_files()


@st.composite
def damaged_images(draw) -> bytes:
    """A valid file of some format with 1-3 random corruptions (seeded through hypothesis)."""
    data = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(1, 3))):
        data = fuzzing.mutate(data, rng) or data[:1]
    return data


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=2048), damaged_images()))
def test_any_bytes_give_pixels_or_an_image_error(data):
    """Any bytes in: an array of the asked shape, or ImageError with a reason. Nothing else."""
    try:
        pixels = decode_pixels(data, 16, "rgb")
    except ImageError as exc:
        assert str(exc)
    else:
        assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8
    try:
        width, height = check_header(data)
    except ImageError as exc:
        assert str(exc)
    else:
        assert width > 0 and height > 0


@pytest.mark.slow
def test_a_folder_of_damaged_files_is_split_and_prepared_with_reasons(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "data/raw"
    damaged = fuzzing.mutated(SEEDS, 300, seed=11)
    for label, name in enumerate(["a", "b"]):
        (raw / name).mkdir(parents=True)
        for i in range(12):
            (raw / name / f"good{i}.png").write_bytes(png(pattern(label, i)))
        for i in range(150):
            fmt, data = next(damaged)
            (raw / name / f"bad{i}.{fmt.lower()}").write_bytes(data)
    params = parse_params({"image": {"size": 12}})
    split.run(params)
    prepare.run(params)
    report = json.loads(config.SPLIT_REPORT.read_text())
    stored = {
        row.path
        for name in config.SPLIT_NAMES
        for row in read_manifest(config.PREPARED_DIR / f"{name}.csv")
    }
    skipped = {item["path"]: item["reason"] for item in report["skipped"]}
    every = {p.relative_to(tmp_path).as_posix() for p in raw.rglob("*") if p.is_file()}
    assert stored | set(skipped) == every and not stored & set(skipped)
    assert all(reason for reason in skipped.values())
    assert report["skipped_count"] == len(skipped) > 150  # most damaged files are unusable
    assert {f"data/raw/a/good{i}.png" for i in range(12)} <= stored


def shard_bytes() -> bytes:
    """A small zip shard: stored and deflated members in two class folders."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(6):
            method = zipfile.ZIP_DEFLATED if i % 3 == 0 else zipfile.ZIP_STORED
            zf.writestr(f"c{i % 2}/img{i}.png", png(pattern(i % 2, i)), method)
    return buf.getvalue()


SHARD = shard_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_a_damaged_shard_gives_images_skipped_members_or_a_data_error(seed, hits):
    """Any corruption of a zip shard: a scan whose skipped members have reasons, or one
    DataError naming the shard. zipfile raises many exception types on damaged archives."""
    rng = np.random.default_rng(seed)
    data = SHARD
    for _ in range(hits):
        data = fuzzing.mutate(data, rng) or data[:1]
    with tempfile.TemporaryDirectory() as tmp:
        shard = Path(tmp, "part-00000.zip")
        shard.write_bytes(data)
        try:
            result = scan_folder(Path(tmp), 10**6, progress=False, perceptual=True)
        except DataError as exc:
            assert "part-00000.zip" in str(exc)
        else:
            assert all(s.reason and s.path.startswith(str(shard)) for s in result.skipped)
            for f in result.files:
                assert hashlib.sha256(archives.read_bytes(f.path)).hexdigest() == f.sha256

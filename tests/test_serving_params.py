"""Serving reads what serving needs: a deployment's params.yaml names training-only files
(train.weights, train.init_from) that the deployment does not ship. The web app, the gate and
the drift and feedback commands start with it; the train stage names the missing file before
any work."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from image_classifier import config, drift, gate
from image_classifier import feedback as feedback_cli
from image_classifier.monitoring.counts import DriftStore
from image_classifier.monitoring.database import Database
from image_classifier.monitoring.feedback_store import FeedbackStore
from image_classifier.params import ParamsError, TrainParams, load_params, parse_params
from webapp import create_app

from conftest import pattern, png

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = "weights/mobilenet_v2.weights.h5"
BASE = "models/base/model.keras"


def absent_files_params(folder: Path, **sections: dict) -> Path:
    """params.yaml of a fork that trains a transfer base from a local weights file, continuing
    from an earlier model: neither file exists here, as on the web app's host."""
    raw = {
        "image": {"size": 224, "color_mode": "rgb"},
        "train": {
            "model": "mobilenet_v2",
            "weights": WEIGHTS,
            "fine_tune_layers": 20,
            "init_from": BASE,
        },
        "serve": {"database": str(folder / "app.sqlite")},
        **sections,
    }
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def params_file(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the relative paths above resolve here, where they are absent
    assert not Path(WEIGHTS).exists() and not Path(BASE).exists()
    return absent_files_params(tmp_path)


def test_params_naming_absent_training_files_load(params_file):
    params = load_params(params_file)
    assert params.train.weights == WEIGHTS and params.train.init_from == BASE


def test_the_web_app_boots_and_serves(params_file, model_dir, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DRIFT_DB", raising=False)
    client = create_app(model_dir=model_dir, params_file=params_file).test_client()
    assert client.get("/readyz").status_code == 200
    body = {"image": (io.BytesIO(png(pattern(0, 3))), "cat.png")}
    response = client.post("/api/v1/predict", data=body, content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()


def test_the_gate_runs(params_file, tmp_path, capsys):
    metrics = tmp_path / "reports" / "metrics.json"
    metrics.parent.mkdir()
    metrics.write_text(json.dumps({"accuracy": 0.9, "n_test": 200}))
    assert gate.main(["--params", str(params_file), "--metrics", str(metrics)]) == 0
    assert "quality gate passed" in capsys.readouterr().out


def test_drift_reads_its_params(params_file, tmp_path, capsys):
    reference = tmp_path / "predictions.csv"
    with reference.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "actual", "predicted", "confidence"])
        writer.writerows((f"{i}.png", "a", "ab"[i % 2], 0.9) for i in range(40))
    store = DriftStore(Database(str(tmp_path / "app.sqlite")))  # serve.database
    store.record("v1", [("a", 0.9)] * 150 + [("b", 0.9)] * 150)
    store.close()
    args = ["--params", str(params_file), "--reference", str(reference), "--version", "v1"]
    assert drift.main(args) == 0
    assert "no drift" in capsys.readouterr().out


def test_feedback_export_reads_its_params(params_file, tmp_path, capsys):
    db = Database(str(tmp_path / "app.sqlite"))  # serve.database
    store = FeedbackStore(db, max_items=10, retention_days=30)
    item, _ = store.add(png(pattern(1, 1)), "dog", "cat", 0.7, "v1")
    store.review(item.id, "accepted")
    db.close()
    out = tmp_path / "raw"
    assert feedback_cli.main(["export", "--to", str(out), "--params", str(params_file)]) == 0
    assert "1 new file(s)" in capsys.readouterr().out
    assert [p.parent.name for p in out.rglob("*.png")] == ["dog"]


# ---- the train stage: the same files are checked there, first ----------------------------


def test_a_missing_weights_file_is_named_by_the_check_training_runs():
    train = TrainParams(model="mobilenet_v2", weights="nowhere/base.weights.h5")
    with pytest.raises(ParamsError) as err:
        train.check_files()
    assert str(err.value) == (
        "train.weights: must be imagenet, null or the path of an existing weights file "
        "(got 'nowhere/base.weights.h5')"
    )
    TrainParams(model="mobilenet_v2", weights="imagenet").check_files()  # no file to check
    TrainParams().check_files()


def test_every_file_init_from_needs_is_named(tmp_path):
    model = tmp_path / "base" / "model.keras"
    train = TrainParams(init_from=str(model))
    needed = [model, model.with_name("classes.json"), model.with_name("trained_on.csv")]
    model.parent.mkdir()
    for missing in needed:
        with pytest.raises(ParamsError, match=r"^train\.init_from: ") as err:
            train.check_files()
        assert f"{missing} not found" in str(err.value)
        missing.write_text("x")
    train.check_files()


def test_the_train_stage_stops_on_a_missing_weights_file_before_any_work(params_file):
    """No pixel store, no model: the weights file is what the stage must name, not a missing
    split, and it writes nothing."""
    from image_classifier import train

    params = load_params(params_file)
    with pytest.raises(ParamsError, match=r"train\.weights: .* existing weights file"):
        train.run(params)
    Path(WEIGHTS).parent.mkdir()
    Path(WEIGHTS).write_bytes(b"")
    with pytest.raises(ParamsError, match=re.escape(f"train.init_from: {BASE} not found")):
        train.run(params)
    assert not config.MODELS_DIR.exists() and not config.REPORTS_DIR.exists()


def test_python_m_train_says_so_in_one_line(params_file, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "image_classifier.train"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stderr
    errors = [line.split(": ", 1)[1] for line in done.stderr.splitlines() if "ERROR" in line]
    assert errors == [
        "train.weights: must be imagenet, null or the path of an existing weights file "
        f"(got '{WEIGHTS}')"
    ]
    assert "Traceback" not in done.stderr


def test_parse_params_reads_no_file(tmp_path, monkeypatch):
    """Loading is pure: the keys' checks that need no file still apply."""
    monkeypatch.chdir(tmp_path)
    image = {"size": 32, "color_mode": "rgb"}
    parse_params({"train": {"model": "vgg19", "weights": "missing.h5"}, "image": image})
    with pytest.raises(ParamsError, match=r"copy it and its classes\.json"):
        parse_params({"train": {"init_from": str(config.KERAS_MODEL)}})

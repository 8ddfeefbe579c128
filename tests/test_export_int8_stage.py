"""The export stage with export.quantization: int8 (export.run): the ranges are calibrated on a
seeded sample of export.calibration_images training images, drawn from the store's train
split, and the model written is int8 through and through, with its card and summary saying
so."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from image_classifier import atomic, config, export, prepare, split
from image_classifier.data.store import open_split, seeded_sample
from image_classifier.litert import quantize
from image_classifier.litert.classifier import Classifier
from image_classifier.params import parse_params
from image_classifier.training import fit_loop

from conftest import pattern, png
from fork import params_dict

CLASSES = ["a", "b", "c"]
PER_CLASS = 24
CALIBRATION_IMAGES = 10  # fewer than the train split holds: a sample, not all of it


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A project whose train stage has run: the store of 3 learnable pattern classes at
    12 px and a small trained model (saved_models/model.keras, classes.json)."""
    root = tmp_path_factory.mktemp("int8")
    for label, name in enumerate(CLASSES):
        folder = root / "data" / "raw" / name
        folder.mkdir(parents=True)
        for i in range(PER_CLASS):
            (folder / f"{i:02d}.png").write_bytes(png(pattern(label, i)))
    params = stage_params()
    with contextlib.chdir(root):
        split.run(params)
        prepare.run(params, workers=1)
        with (
            open_split("train", 12, "grayscale") as train,
            open_split("val", 12, "grayscale") as val,
        ):
            model = fit_loop.fit(params, train, val, list(train.meta.classes))
        with atomic.atomic_path(config.KERAS_MODEL) as tmp:
            model.save(tmp)
        atomic.write_json(config.CLASSES_FILE, CLASSES)
    return root


def stage_params(**export_settings):
    raw = params_dict(
        {
            "image": {"size": 12, "color_mode": "grayscale"},
            "train": {"epochs": 8, "batch_size": 8, "min_steps": 0, "learning_rate": 0.003},
            "export": {"calibration_images": CALIBRATION_IMAGES, **export_settings},
            "ood": {"fit_images": 20},
        }
    )
    return parse_params(raw)


def test_int8_export_calibrates_on_a_seeded_train_sample_and_writes_an_int8_model(
    workspace, monkeypatch
):
    monkeypatch.chdir(workspace)
    params = stage_params(quantization="int8", min_top1_agreement=0.8)
    seen: list[np.ndarray] = []
    real_quantize = quantize.quantize

    def spy(model, mode, calibration=()):
        batches = list(calibration)
        seen.extend(batches)
        return real_quantize(model, mode, batches)

    monkeypatch.setattr(export, "quantize", spy)
    card = export.run(params)

    # The calibration images: export.calibration_images of the train split, the seeded sample,
    # as float32 pixels in store order.
    with open_split("train", 12, "grayscale") as train:
        assert len(train) > CALIBRATION_IMAGES
        picked = seeded_sample(len(train), CALIBRATION_IMAGES, params.train.seed)
        expected = train.read(picked).astype(np.float32)
    drawn = np.concatenate(seen)
    assert all(batch.dtype == np.float32 for batch in seen)
    np.testing.assert_array_equal(drawn, expected)

    # The model written is int8: its input and output, and its weights.
    tflite = config.TFLITE_MODEL.read_bytes()
    interpreter = Interpreter(model_content=tflite)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    assert interpreter.get_input_details()[0]["quantization"] == (1.0, -128)  # every pixel value
    dtypes = {t["dtype"] for t in interpreter.get_tensor_details()}
    assert np.int8 in dtypes and np.float32 not in dtypes - {np.int32}
    # It is the file the card describes, and the card and the summary say int8.
    assert card["quantization"] == "int8"
    assert json.loads(config.MODEL_CARD.read_text())["tflite_sha256"] == card["tflite_sha256"]
    summary = json.loads(config.EXPORT_METRICS.read_text())
    assert summary["quantization"] == "int8"
    assert summary["size_kb"] < summary["float32_size_kb"]
    assert summary["keras_top1_agreement"] >= 0.8
    # The served model runs it and gets the test split's images right.
    clf = Classifier.from_dir(config.MODELS_DIR)
    with open_split("test", 12, "grayscale") as test:
        probs = clf.predict(test.read(np.arange(len(test))).astype(np.float32))
        assert (probs.argmax(axis=1) == test.labels).mean() >= 0.8


def test_a_float_export_draws_no_calibration_images(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    drawn = []
    monkeypatch.setattr(export, "calibration_batches", lambda p: drawn.append(1) or iter(()))
    card = export.run(stage_params(quantization="float16", min_top1_agreement=0.8))
    assert not drawn, "a float16 export read calibration images"
    assert card["quantization"] == "float16"
    interpreter = Interpreter(model_content=config.TFLITE_MODEL.read_bytes())
    assert interpreter.get_input_details()[0]["dtype"] == np.float32


def test_a_split_run_without_features_gives_the_same_answers_in_fewer_columns(
    workspace, monkeypatch
):
    """export.run_split(features=False), as export runs the test split: every answer the
    stage keeps is the whole run's, bit for bit, and no feature column is kept."""
    monkeypatch.chdir(workspace)
    export.run(stage_params(min_top1_agreement=0.8))
    clf = Classifier.from_dir(config.MODELS_DIR)
    assert clf.detector is not None
    with open_split("test", 12, "grayscale") as test:
        whole = export.run_split(clf, test)
        lean = export.run_split(clf, test, features=False)
    assert whole.features.shape[1] > 0
    assert lean.features.shape == lean.early.shape == (len(test.labels), 0)
    for name in ("probabilities", "logits", "scores", "known"):
        np.testing.assert_array_equal(getattr(lean, name), getattr(whole, name))
    # model.json's layout is the served row's, though the test split kept no features
    card = json.loads(config.MODEL_CARD.read_text())
    assert card["outputs"] == export.output_widths(whole)

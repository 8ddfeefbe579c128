"""The hand-off of saved_models/features.npy from the train stage to the audit, on the frozen-base
path (a pretrained base whose phase 1 runs on LiteRT): train writes the base's features of every
train and val image in store order, with an index naming the store; the audit takes them as
they are, without running a model, and its report follows the file's rows.
(tests/test_audit.py checks the audit on a features file it writes itself; tests/
test_frozen_base.py the features phase 1 computes; here the real train stage writes it.)

The other hand-off on that path: train keeps the served graph it converted for phase 1, and
export writes the trained head into it instead of converting the model a second time."""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from image_classifier import audit, config, export, prepare, split, train
from image_classifier.data.store import fingerprint, open_split
from image_classifier.evaluation import label_issues
from image_classifier.params import Params, parse_params
from image_classifier.training import frozen_base, models, served_graph

from conftest import png
from fork import params_dict
from helpers import HUES

PER_CLASS = 16
SIZE = 32


def write_images(raw: Path) -> list[str]:
    """Noisy colour squares (the class is the hue), as PNG files in class folders."""
    rng = np.random.default_rng(3)
    names = ["blue", "green", "red"]
    hues = {"red": HUES[0], "green": HUES[1], "blue": HUES[2]}
    for name in names:
        (raw / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            pixels = np.clip(hues[name] + rng.normal(0, 40, (SIZE, SIZE, 3)), 0, 255)
            (raw / name / f"{i:02d}.png").write_bytes(png(Image.fromarray(pixels.astype(np.uint8))))
    return names


def base_weights(path: Path) -> Path:
    """A MobileNetV2 base with usable feature scales (random weights alone make them
    vanish): each BatchNormalization takes its statistics from one batch."""
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(SIZE, SIZE, 3)
    )
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    x = np.random.default_rng(9).uniform(-1, 1, (8, SIZE, SIZE, 3)).astype(np.float32)
    base(x, training=True)
    base.save_weights(path)
    return path


def stage_params(weights: Path) -> Params:
    raw = params_dict(
        {
            "image": {"size": SIZE, "color_mode": "rgb"},
            "train": {
                "model": "mobilenet_v2",
                "weights": str(weights),
                "frozen_base_runtime": "litert",
                "epochs": 2,
                "min_steps": 0,
                "batch_size": 8,
                "learning_rate": 0.003,
                # Off: a training image's kept row is then the base's features of its pixels.
                "augment": {"rotation": 0.0, "zoom": 0.0, "translation": 0.0},
            },
        }
    )
    return parse_params(raw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Params]:
    """A workspace after split, prepare and the train stage on the frozen-base path."""
    root = tmp_path_factory.mktemp("frozen")
    write_images(root / "data" / "raw")
    params = stage_params(base_weights(root / "base.weights.h5"))
    with contextlib.chdir(root):
        split.run(params)
        prepare.run(params, workers=1)
        train.run(params)
    return root, params


def splits(params: Params):
    return [open_split(s, params.image.size, params.image.color_mode) for s in ("train", "val")]


def test_train_keeps_the_bases_features_of_every_train_and_val_image_in_store_order(
    trained, monkeypatch
):
    root, params = trained
    monkeypatch.chdir(root)
    kept = np.load(config.POOLED_FEATURES)
    opened = splits(params)
    try:
        n_train, n_val = len(opened[0]), len(opened[1])
        index = json.loads(config.POOLED_FEATURES_INDEX.read_text())
        assert index == {"images": n_train + n_val, "store": fingerprint(opened)}
        assert kept.dtype == np.float16 and kept.shape[0] == n_train + n_val
        # Row i is image i of the store (train, then val): the base's features of its pixels.
        model = keras.models.load_model(config.KERAS_MODEL)
        features, _ = frozen_base.split_at_pooling(model)
        pixels = np.concatenate([s.read(np.arange(len(s))) for s in opened]).astype(np.float32)
        expected = features.predict(pixels, verbose=0)
        assert np.abs(expected).mean() > 0.01  # features that could be told apart
        np.testing.assert_allclose(kept, expected, rtol=1e-2, atol=1e-3 * np.abs(expected).max())
        # What the audit takes for these splits is this file, row for row.
        rows = audit.kept_features(opened)
        assert rows is not None
        np.testing.assert_array_equal(rows[0 : rows.shape[0]], kept)
    finally:
        for s in opened:
            s.close()


def no_model(*_args, **_kwargs):
    raise AssertionError("the audit ran the model instead of reading the kept features")


def test_the_audit_consumes_the_kept_rows_without_running_a_model(trained, monkeypatch):
    root, params = trained
    monkeypatch.chdir(root)
    monkeypatch.setattr(audit, "model_features", no_model)
    consumed = []
    components = label_issues.principal_components

    def spy(rows, *args, **kwargs):
        consumed.append(np.asarray(rows[0 : rows.shape[0]]))
        return components(rows, *args, **kwargs)

    monkeypatch.setattr(label_issues, "principal_components", spy)
    summary = audit.run(params)
    assert len(consumed) == 1
    np.testing.assert_array_equal(consumed[0], np.load(config.POOLED_FEATURES))
    assert summary["probabilities"] == "features"
    assert summary["images"] == len(consumed[0])


def test_the_audit_report_follows_the_files_rows(trained, tmp_path, monkeypatch):
    """Rows of the file written over with clean class clusters, one image's row put in another
    class's cluster: that image, and only it, is the suspected label issue."""
    root, params = trained
    work = tmp_path / "copy"
    shutil.copytree(root, work, ignore=shutil.ignore_patterns("*.h5"))
    monkeypatch.chdir(work)
    monkeypatch.setattr(audit, "model_features", no_model)
    opened = splits(params)
    try:
        paths = [p for s in opened for p in s.paths]
        labels = np.concatenate([s.labels for s in opened])
        classes = list(opened[0].meta.classes)
    finally:
        for s in opened:
            s.close()
    shape = np.load(config.POOLED_FEATURES).shape
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 8, (len(classes), shape[1]))
    rows = centres[labels] + rng.normal(0, 1, shape)
    planted = int(np.flatnonzero(labels == 0)[3])
    wrong = 1
    rows[planted] = centres[wrong] + rng.normal(0, 1, shape[1])
    np.save(config.POOLED_FEATURES, rows.astype(np.float16))  # same shape, same index

    audit.run(params)
    with config.AUDIT_ISSUES.open(encoding="utf-8") as fh:
        issues = [r for r in csv.DictReader(fh) if r["kind"] == "label"]
    assert [(r["path"], r["given_label"], r["suggested_label"]) for r in issues] == [
        (paths[planted], classes[0], classes[wrong])
    ]


def no_conversion(*_args, **_kwargs):
    raise AssertionError("export converted the model again")


def test_export_completes_the_graph_train_converted_byte_for_byte(trained, monkeypatch):
    """Train keeps its conversion with the digest of the weights it holds; export writes the
    trained head into it without converting, and the file is the one a conversion of the
    trained model gives, byte for byte."""
    root, _ = trained
    monkeypatch.chdir(root)
    model = keras.models.load_model(config.KERAS_MODEL)
    digest = served_graph.weights_digest(model)
    assert json.loads(config.SERVED_GRAPH_INDEX.read_text()) == {"weights_sha256": digest}
    converted = served_graph.convert(model)
    monkeypatch.setattr(served_graph, "convert", no_conversion)
    assert export.float_tflite(model) == converted


def test_export_converts_a_model_whose_base_is_not_the_one_train_converted(
    trained, tmp_path, monkeypatch
):
    """A base changed after phase 1 (as fine-tuning changes it), or a kept file without the
    marks: export converts the model itself."""
    root, _ = trained
    monkeypatch.chdir(root)
    converted = []
    monkeypatch.setattr(served_graph, "convert", lambda m: converted.append(m) or b"converted")
    model = keras.models.load_model(config.KERAS_MODEL)
    monkeypatch.setattr(config, "SERVED_GRAPH", tmp_path / "no_marks.tflite")
    config.SERVED_GRAPH.write_bytes(b"a flatbuffer without the marks")
    assert export.float_tflite(model) == b"converted" and converted == [model]
    monkeypatch.undo()
    monkeypatch.chdir(root)
    monkeypatch.setattr(served_graph, "convert", lambda m: converted.append(m) or b"converted")
    kernel = models.find_base(model).weights[0]
    kernel.assign(kernel + 1e-3)
    assert export.float_tflite(model) == b"converted" and converted[-1] is model


def test_train_keeps_no_graph_for_a_base_changed_after_phase_one(trained, tmp_path, monkeypatch):
    root, _ = trained
    model = keras.models.load_model(root / config.KERAS_MODEL)
    monkeypatch.chdir(tmp_path)
    config.MODELS_DIR.mkdir()
    kept = frozen_base.Kept(graph=b"converted before phase 2", weights_sha256="0" * 64)
    train.save_served_graph(model, kept)
    assert config.SERVED_GRAPH.read_bytes() == b""
    assert json.loads(config.SERVED_GRAPH_INDEX.read_text()) == {"weights_sha256": None}

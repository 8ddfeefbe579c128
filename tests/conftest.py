"""Shared fixtures: tiny image folders made on the fly, so tests need no downloads."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fork import write_params


def png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@contextmanager
def live_server(app) -> Iterator[str]:
    """Serve a WSGI app on a free loopback port in a thread; yield its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def pattern(label: int, i: int, size: int = 12) -> Image.Image:
    """A learnable grayscale image: class k draws a bar in a class-specific place."""
    rng = np.random.default_rng(1000 * label + i)
    arr = rng.integers(200, 256, (size, size)).astype(np.uint8)
    arr[:, (label * 3) % size : (label * 3) % size + 3] = rng.integers(0, 40)
    return Image.fromarray(arr, "L")


@pytest.fixture(scope="session")
def default_params(tmp_path_factory) -> Path:
    """A params.yaml at the code's defaults, for a test that sets none: the repository's own
    params.yaml is its user's, so no test reads it."""
    return write_params(tmp_path_factory.mktemp("params") / "params.yaml")


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session (tests/postgres.py); tests take a database each."""
    from postgres import PostgresServer

    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture
def pg_url(postgres) -> str:
    """A fresh, empty PostgreSQL database of the session's server, as a DATABASE_URL."""
    return postgres.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_target(request, tmp_path) -> str:
    """Where the web app keeps its state: a SQLite file, or a PostgreSQL database (real server)."""
    if request.param == "sqlite":
        return str(tmp_path / "app.sqlite")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """raw/<class>/<n>.png for 3 classes x 12 images; a class name with a space and non-ASCII."""
    root = tmp_path / "raw"
    for label, name in enumerate(["cat", "dog", "crème brûlée"]):
        (root / name).mkdir(parents=True)
        for i in range(12):
            (root / name / f"{i:02d}.png").write_bytes(png(pattern(label, i)))
    return root


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A tiny exported model (model.tflite + model.json) for classes cat, dog, crème brûlée."""
    import dataclasses

    from image_classifier import atomic, export
    from image_classifier.evaluation import calibration
    from image_classifier.litert.classifier import Classifier, ModelCard
    from image_classifier.params import parse_params
    from image_classifier.preprocessing import PREPROCESSING_VERSION, encode_png
    from image_classifier.training import fit_loop, served_graph
    from image_classifier.training.input_pipeline import ArraySource

    params = parse_params(
        {"image": {"size": 12}, "train": {"epochs": 8, "batch_size": 8, "min_steps": 0}}
    )
    classes = ["cat", "crème brûlée", "dog"]
    x = np.stack([np.asarray(pattern(k, i))[..., None] for k in (0, 2, 1) for i in range(8)])
    data = ArraySource(x, np.repeat(np.arange(3), 8))
    model = fit_loop.fit(params, data, data, classes)
    tflite = served_graph.convert(model)
    card = ModelCard(tuple(classes), 12, "grayscale", PREPROCESSING_VERSION)
    x = data.x.astype(np.float32)
    raw = Classifier(tflite, card).run(x)
    check = export.check_export(model.predict(x, verbose=0), raw.probabilities, params.export)
    # Calibrated and given a detector as the export stage does (on the training patterns:
    # the fixture has no other split).
    temperature = calibration.fit_temperature(raw.logits, data.labels)
    detector = export.fit_detector(params.ood, raw, data.labels, raw, temperature)
    served = Classifier(
        tflite, dataclasses.replace(card, temperature=temperature), detector=detector
    )
    lite = served.run(x)
    out = tmp_path_factory.mktemp("model")
    atomic.write_bytes(out / "model.tflite", tflite)
    atomic.write_bytes(out / "ood.npz", export.npz_bytes(detector.arrays))
    card = export.model_card(classes, params, tflite, {}, check)
    widths = export.output_widths(lite)
    card.update(export.served_fields(widths, temperature, len(x), detector, params.ood))
    example = export.pick_example(lite.probabilities, data.labels)
    card["example"] = export.example_entry(lite.probabilities, data.labels, classes, example)
    atomic.write_bytes(out / card["example"]["file"], encode_png(data.x[example]))
    shown = export.pick_examples(lite, data.labels, 1, 0)
    card["examples"] = []
    for n, i in enumerate(shown):
        name = f"examples/{n:03d}.png"
        atomic.write_bytes(out / name, encode_png(data.x[i]))
        card["examples"].append({"file": name, "label": classes[int(data.labels[i])]})
    atomic.write_json(out / "model.json", card)
    return out


class PatternSplit:
    """The tiny model's patterns behind the store interface evaluate.write_reports reads."""

    def __init__(self, per_class: int) -> None:
        order = (0, 2, 1)  # model_dir's class k draws pattern order[k]
        self.x = np.stack(
            [np.asarray(pattern(k, 50 + i))[..., None] for k in order for i in range(per_class)]
        )
        self.labels = np.repeat(np.arange(3), per_class)
        self.paths = [f"data/raw/{k}/{i}.png" for k in range(3) for i in range(per_class)]
        # images per class in each split, as the model card counts them (model_dir's model
        # trained on 8 a class)
        self.counts = {"train": 8, "val": 0, "test": per_class}

    def read(self, indices) -> np.ndarray:
        return self.x[np.asarray(indices, dtype=int)]


@pytest.fixture(scope="session")
def reports_dir(model_dir, tmp_path_factory) -> Path:
    """reports/ for model_dir's model, written by the evaluate stage's own code: the served
    model's outputs on PatternSplit and on a few images of each out-of-distribution set, as
    the stage computes them, and the audit's counts written first, as its stage does."""
    import contextlib
    import json

    from image_classifier import atomic, audit, evaluate, export
    from image_classifier.evaluation import metrics, model_card
    from image_classifier.litert.classifier import Classifier
    from image_classifier.params import parse_params

    clf = Classifier.from_dir(model_dir)
    split = PatternSplit(4)
    outputs = clf.run(split.x.astype(np.float32))
    probs = outputs.probabilities.astype(np.float64)
    baseline = metrics.baseline_metrics("linear", split.labels, np.full_like(probs, 1 / 3))
    params = parse_params({"ood": {"images_per_set": 4}})
    sets = evaluate.ood_set_scores(clf, params.ood.sets, 4, params.train.seed)
    threshold = clf.detector.threshold
    served = evaluate.Served(outputs.logits, outputs.scores, clf.card.temperature, threshold, sets)
    model = json.loads((model_dir / "model.json").read_text())
    counts = {name: {c: n for c in clf.card.classes} for name, n in split.counts.items()}
    root = tmp_path_factory.mktemp("workspace")
    with contextlib.chdir(root):  # the audit's counts, as its stage writes them
        audit.write_report([], [], {"images": 24, "label_issues": 0, "outliers": 0})
        facts = model_card.CardFacts(model=model, counts=counts, audit=evaluate.read_audit())
        scores = evaluate.write_reports(
            split, probs, list(clf.card.classes), params, baseline, clf.card.version, served, facts
        )
    tflite = (model_dir / "model.tflite").read_bytes()
    check = json.loads((model_dir / "model.json").read_text())["keras_agreement"]
    summary = export.export_summary("none", tflite, tflite, scores, check)
    atomic.write_json(root / "reports" / "export.json", summary)
    return root / "reports"

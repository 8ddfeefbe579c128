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
    from image_classifier import atomic, export, train
    from image_classifier.input_pipeline import ArraySource
    from image_classifier.params import parse_params

    params = parse_params(
        {"image": {"size": 12}, "train": {"epochs": 8, "batch_size": 8, "min_steps": 0}}
    )
    classes = ["cat", "crème brûlée", "dog"]
    x = np.stack([np.asarray(pattern(k, i))[..., None] for k in (0, 2, 1) for i in range(8)])
    data = ArraySource(x, np.repeat(np.arange(3), 8))
    model = train.fit(params, data, data, classes)
    tflite = export.to_tflite(model)
    out = tmp_path_factory.mktemp("model")
    atomic.write_bytes(out / "model.tflite", tflite)
    atomic.write_json(out / "model.json", export.model_card(classes, params, tflite, {}, 0.0))
    return out

"""The model as the web app holds it: loaded once per worker, warmed up, shared by all routes."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from image_classifier import config
from image_classifier.litert.classifier import Classifier, ModelLoadError
from image_classifier.params import ServeParams
from image_classifier.preprocessing import (
    ImageError,
    ImageTooLargeError,
    channels,
    encode_png,
    load_image,
)
from webapp import saliency
from webapp.errors import ClientError

log = logging.getLogger(__name__)

DISPLAY_SIZE = 256  # side of the square preview and heat map shown on the page


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


@dataclass(frozen=True)
class Result:
    """One image's prediction. `top` is the top-k classes by calibrated probability: the
    answer and its runners-up when `known`, only the closest classes when not. `unsure` is
    for known images only (their top probability below serve.unsure_threshold)."""

    name: str
    top: list[tuple[str, float]]
    probs: np.ndarray
    unsure: bool
    pixels: np.ndarray  # the model's input (uint8), kept for the heat map
    known: bool = True
    score: float | None = None  # the out-of-distribution score; None without a detector

    @property
    def label(self) -> str | None:
        """The answer: the top class, or None when the image is none of the classes."""
        return self.top[0][0] if self.known else None


@dataclass(frozen=True)
class Example:
    """A test image export ships with the model (model.json `examples`), for the page."""

    label: str
    path: Path


# Images per LiteRT call in a web worker: bounds its memory whatever a request holds (16
# files, or an explain's occluded copies); bench/serve.py measures its memory.
SERVE_MAX_BATCH = 8
# How long an explain request waits for the worker's one explanation slot before a 503, so a
# burst of explain requests cannot hold every thread while predictions queue behind them.
EXPLAIN_WAIT_S = 5.0


def litert_threads() -> int:
    """LiteRT threads per worker ($LITERT_THREADS, default 1). With as many workers as cores,
    one thread each keeps every core busy without the workers' threads fighting (bench/serve.py
    compares); more threads only help a lone worker."""
    value = os.environ.get("LITERT_THREADS", "1")
    try:
        threads = int(value)
    except ValueError:
        raise ValueError(f"LITERT_THREADS must be a whole number, got {value!r}") from None
    if threads < 1:
        raise ValueError(f"LITERT_THREADS must be >= 1, got {threads}")
    return threads


class ModelState:
    """The classifier, or why there is none; `ready` flips only after a warm-up inference."""

    def __init__(self, model_dir: Path, settings: ServeParams, max_pixels: int) -> None:
        self.settings = settings
        self.max_pixels = max_pixels
        # One explanation at a time per worker: each runs ~50 inferences an image, and with
        # gunicorn's threads several at once would multiply its memory for no extra speed
        # (inference is serialised by the LiteRT lock anyway).
        self._explaining = threading.Lock()
        self.classifier: Classifier | None = None
        self.examples: list[Example] = []
        self.error = "not loaded"
        try:
            clf = Classifier.from_dir(
                model_dir, num_threads=litert_threads(), max_batch=SERVE_MAX_BATCH
            )
            size = clf.card.image_size
            shape = (1, size, size, channels(clf.card.color_mode))
            clf.run(np.zeros(shape, dtype=np.float32))  # warm-up, the detector included
        except (ModelLoadError, ValueError, RuntimeError) as exc:
            self.error = str(exc)
            log.error("model not loaded: %s", exc)
            return
        self.classifier = clf
        self.examples = load_examples(model_dir, clf.card.classes)
        self.error = ""

    @property
    def ready(self) -> bool:
        return self.classifier is not None

    def require(self) -> Classifier:
        if self.classifier is None:
            raise ClientError(503, f"model not loaded: {self.error}")
        return self.classifier

    def classify(self, uploads: list[Upload]) -> list[Result]:
        """Preprocess every upload (the pipeline's own function), then one batched inference,
        which gives both the probabilities and the out-of-distribution verdict. A file that
        cannot be read stops the request with its 4xx before any inference."""
        clf = self.require()
        pixels = []
        for i, upload in enumerate(uploads):
            try:
                pixels.append(clf.preprocess(upload.data, self.max_pixels))
            except ImageError as exc:
                status = 413 if isinstance(exc, ImageTooLargeError) else 422
                where = f"file {i + 1}" + (f" ({upload.name})" if upload.name else "")
                raise ClientError(status, f"{where}: {exc}") from None
        out = clf.run(np.stack(pixels))
        results = []
        for upload, x, p, score, known in zip(
            uploads, pixels, out.probabilities, out.scores, out.known, strict=True
        ):
            top = clf.top_k(p, self.settings.top_k)
            known = bool(known)
            unsure = known and top[0][1] < self.settings.unsure_threshold
            # No detector: every score is +inf, which JSON cannot carry.
            finite = float(score) if math.isfinite(score) else None
            results.append(Result(upload.name, top, p, unsure, x, known, finite))
        return results

    def example(self, index: int) -> Upload:
        """Example `index` of the page as an upload; 404 for any other index."""
        self.require()
        if not 0 <= index < len(self.examples):
            raise ClientError(404, f"no example {index}")
        example = self.examples[index]
        try:
            data = example.path.read_bytes()
        except OSError as exc:
            log.error("example %d unreadable: %s", index, exc)
            raise ClientError(404, f"example {index} is missing") from None
        return Upload(f"example: {example.label}", data)

    def explain(self, upload: Upload, result: Result) -> tuple[str, str]:
        """(preview, heat-map overlay) of an upload as PNG data: URIs, for the page."""
        clf = self.require()
        target = clf.card.classes.index(result.top[0][0])
        if not self._explaining.acquire(timeout=EXPLAIN_WAIT_S):
            raise ClientError(503, "busy explaining other images: retry, or drop explain=true")
        try:
            heat = saliency.occlusion_map(clf, result.pixels.astype(np.float32), target)
        finally:
            self._explaining.release()
        display = load_image(upload.data, DISPLAY_SIZE, "rgb", self.max_pixels).astype(np.uint8)
        preview = saliency.data_uri(encode_png(display))
        return preview, saliency.data_uri(saliency.overlay_png(display, heat))


def load_examples(model_dir: Path, classes: tuple[str, ...]) -> list[Example]:
    """model.json's `examples` that are files inside the model's examples folder and name one
    of its classes; any other entry is logged and left out (the page never reads a path it
    was not given by the export stage, and none from a request)."""
    try:
        entries = json.loads((model_dir / config.MODEL_CARD.name).read_text("utf-8"))
        entries = entries.get("examples") or []
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("no example images: %s", exc)
        return []
    examples = []
    for entry in entries if isinstance(entries, list) else []:
        file = entry.get("file") if isinstance(entry, dict) else None
        label = entry.get("label") if isinstance(entry, dict) else None
        # A plain file name in the examples folder, checked by its text: DVC may link the
        # file itself anywhere into its cache.
        parts = PurePosixPath(file).parts if isinstance(file, str) and "\\" not in file else ()
        path = model_dir.joinpath(*parts) if len(parts) == 2 else None
        if (
            path is None
            or parts[0] != config.EXAMPLES_DIR.name
            or parts[1] in (".", "..")
            or not path.is_file()
            or label not in classes
        ):
            log.warning("example left out: %r", entry)
            continue
        examples.append(Example(label, path))
    return examples

"""Run the exported model with the LiteRT runtime, without TensorFlow.

Everything downstream of the pipeline (predict CLI, web app) loads the files export writes:
saved_models/model.tflite, saved_models/model.json and, for "none of these",
saved_models/ood.npz. The model returns one row per image, its logits followed by its pooled
features (served_graph.serving_model); this module turns them into calibrated probabilities
(model.json's temperature) and an out-of-distribution score (evaluation/ood.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from image_classifier import config
from image_classifier.evaluation import ood
from image_classifier.evaluation.calibration import softmax
from image_classifier.litert.runner import Runner, invoke_batch
from image_classifier.preprocessing import (
    MAX_PIXELS,
    PREPROCESSING_VERSION,
    ImageSource,
    channels,
    decode_pixels,
)


class ModelLoadError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelCard:
    """What model.json says about the model: enough to preprocess input and read output."""

    classes: tuple[str, ...]
    image_size: int
    color_mode: str
    preprocessing_version: int
    version: str = "unknown"
    params_hash: str = ""
    created: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    # softmax(logits / temperature): fitted on the validation split by export.
    temperature: float = 1.0
    # {"method", "threshold", "k", "doubt"} of the out-of-distribution detector; empty: none.
    ood: dict[str, Any] = field(default_factory=dict)
    # Values an image of early statistics at the end of each output row (0: none).
    early_width: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelCard:
        try:
            return cls(
                classes=tuple(raw["classes"]),
                image_size=int(raw["input"]["size"]),
                color_mode=str(raw["input"]["color_mode"]),
                preprocessing_version=int(raw["preprocessing_version"]),
                version=str(raw.get("version", "unknown")),
                params_hash=str(raw.get("params_hash", "")),
                created=str(raw.get("created", "")),
                metrics=dict(raw.get("metrics", {})),
                temperature=float(raw.get("calibration", {}).get("temperature", 1.0)),
                ood=dict(raw.get("ood", {})),
                early_width=int(raw.get("outputs", {}).get("early", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"model.json is missing or has a bad field: {exc}") from None


def load_card(path: Path = config.MODEL_CARD) -> ModelCard:
    try:
        card = ModelCard.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ModelLoadError(f"{path} not found: run `dvc repro` (or `dvc pull`) first") from None
    if card.preprocessing_version != PREPROCESSING_VERSION:
        raise ModelLoadError(
            f"{path}: model was exported with preprocessing v{card.preprocessing_version}, "
            f"this code has v{PREPROCESSING_VERSION}; re-run `dvc repro`"
        )
    return card


def load_detector(card: ModelCard, path: Path) -> ood.Detector | None:
    """model.json's out-of-distribution detector with its statistics (ood.npz), if any."""
    if not card.ood:
        return None
    try:
        with np.load(path) as saved:
            arrays = {name: saved[name] for name in saved.files}
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read the detector statistics: {exc}") from None
    doubt = bool(card.ood.get("doubt", False))
    if doubt and not {"val_scores", "val_confidence"} <= arrays.keys():
        raise ModelLoadError(
            f"{path}: model.json says doubt, but the validation scores are missing"
        )
    return ood.Detector(
        str(card.ood["method"]),
        float(card.ood["threshold"]),
        arrays,
        int(card.ood.get("k", 1)),
        doubt,
    )


@dataclass(frozen=True)
class Outputs:
    """What the model says about a batch: probabilities calibrated by the card's temperature,
    the raw logits, pooled features and early statistics (no columns without them),
    and per image its out-of-distribution score and whether it is `known` (score at or above
    the threshold; all True without a detector)."""

    probabilities: np.ndarray
    logits: np.ndarray
    features: np.ndarray
    early: np.ndarray
    scores: np.ndarray
    known: np.ndarray


class Classifier:
    """The exported model (a Runner) plus its model card and detector. Thread-safe."""

    def __init__(
        self,
        model: Path | bytes,
        card: ModelCard,
        num_threads: int = 1,
        max_batch: int | None = None,
        detector: ood.Detector | None = None,
    ) -> None:
        self.card = card
        self.detector = detector
        if not isinstance(model, bytes) and not Path(model).is_file():
            raise ModelLoadError(f"{model} not found: run `dvc repro` (or `dvc pull`) first")
        # LiteRT sizes its tensor arena for the largest batch it has run and keeps it: a web
        # worker that once ran one large explain batch would hold that memory for good.
        self.max_batch = max_batch or invoke_batch(card.image_size, channels(card.color_mode))
        self.runner = Runner(model, num_threads, self.max_batch)
        width = self.runner.width
        if width <= len(card.classes) + card.early_width:
            raise ModelLoadError(
                f"model outputs {width} values an image: not the {len(card.classes)} logits of "
                "model.json's classes followed by the pooled features and "
                f"{card.early_width} early statistics; re-run the export stage"
            )

    @classmethod
    def from_dir(
        cls,
        directory: Path = config.MODELS_DIR,
        num_threads: int = 1,
        max_batch: int | None = None,
    ) -> Classifier:
        card = load_card(directory / config.MODEL_CARD.name)
        detector = load_detector(card, directory / config.OOD_STATS.name)
        return cls(directory / config.TFLITE_MODEL.name, card, num_threads, max_batch, detector)

    def preprocess(self, source: ImageSource, max_pixels: int = MAX_PIXELS) -> np.ndarray:
        """The shared preprocessing's uint8 pixels (load_image is the same as float32);
        predict() takes either, and an int8 model gets its input without a float pass."""
        return decode_pixels(source, self.card.image_size, self.card.color_mode, max_pixels)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(n, size, size, channels) pixels in [0, 255], uint8 or float32 -> (n, classes)
        calibrated probabilities."""
        return softmax(self.raw(batch)[:, : len(self.card.classes)], self.card.temperature)

    def run(self, batch: np.ndarray) -> Outputs:
        """Probabilities, logits, features and the out-of-distribution verdict of a batch."""
        raw = self.raw(batch)
        n, end = len(self.card.classes), raw.shape[1] - self.card.early_width
        logits, features, early = raw[:, :n], raw[:, n:end], raw[:, end:]
        probs = softmax(logits, self.card.temperature)
        if self.detector is None:
            scores = np.full(len(raw), np.inf)
        else:
            scores = self.detector.score(logits, features, self.card.temperature, early)
        known = scores >= (self.detector.threshold if self.detector else -np.inf)
        return Outputs(probs, logits, features, early, scores, known)

    def raw(self, batch: np.ndarray) -> np.ndarray:
        """The model's float32 output rows (logits, features, early statistics)."""
        return self.runner(batch)

    def top_k(self, probs: np.ndarray, k: int) -> list[tuple[str, float]]:
        order = np.argsort(-probs, kind="stable")[: min(k, len(probs))]
        return [(self.card.classes[i], float(probs[i])) for i in order]


def describe(card: ModelCard) -> dict[str, Any]:
    return {
        "version": card.version,
        "classes": list(card.classes),
        "input": {"size": card.image_size, "color_mode": card.color_mode},
        "metrics": card.metrics,
        "temperature": card.temperature,
        "ood": {k: card.ood[k] for k in ("method", "threshold", "doubt") if k in card.ood},
        "created": card.created,
        "params_hash": card.params_hash,
    }

"""Stage `export`: convert the Keras model to LiteRT (.tflite) and write its model card.

    python -m image_classifier.export

The .tflite file is checked against the Keras model on the whole test split before anything is
written: a conversion that changes predictions never reaches the web app. The Keras side of
that check is the evaluate stage's per-image probabilities (reports/eval/predictions.csv), so
the test split goes through Keras once per pipeline run, not twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
from datetime import UTC, datetime

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from image_classifier import atomic, config
from image_classifier.cli import StageError, run_stage
from image_classifier.inference import Classifier, ModelCard
from image_classifier.manifests import read_classes
from image_classifier.params import Params
from image_classifier.preprocessing import PREPROCESSING_VERSION
from image_classifier.store import SplitPixels, inference_batch_size, open_split

log = logging.getLogger(__name__)

HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "roc_auc_ovr", "n_test")


def to_tflite(model: keras.Model) -> bytes:
    """Keras -> SavedModel -> LiteRT flatbuffer, plain float32 (quantisation would break the
    1e-4 agreement with the Keras model). Goes through export() to keep the log quiet."""
    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        return tf.lite.TFLiteConverter.from_saved_model(tmp).convert()


def git_commit() -> str:
    """Short commit of the code the model was built from ('nogit' outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=8", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "nogit"
    return out.stdout.strip()


def model_card(
    classes: list[str], params: Params, tflite: bytes, scores: dict, max_diff: float
) -> dict:
    model_sha = hashlib.sha256(tflite).hexdigest()
    # DVC identifies a file by the MD5 of its bytes: this prefix matches dvc.lock's entry.
    dvc_md5 = hashlib.md5(tflite, usedforsecurity=False).hexdigest()
    return {
        "version": f"{git_commit()}-{dvc_md5[:8]}",
        "classes": classes,
        "input": {
            "size": params.image.size,
            "color_mode": params.image.color_mode,
            "channels": params.image.channels,
            "dtype": "float32",
            "range": [0, 255],
        },
        "preprocessing_version": PREPROCESSING_VERSION,
        "params_hash": params.model_hash(),
        "architecture": params.train.model,
        "metrics": {k: scores[k] for k in HEADLINE_METRICS if k in scores},
        "tflite_sha256": model_sha,
        "tflite_md5": dvc_md5,
        "keras_agreement": {"max_prob_diff": max_diff},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def agreement(keras_probs: np.ndarray, tflite_probs: np.ndarray) -> float:
    return float(np.max(np.abs(keras_probs - tflite_probs), initial=0.0))


def keras_test_probs(classes: list[str], paths: list[str]) -> np.ndarray:
    """The Keras model's test probabilities, as the evaluate stage recorded them."""
    table = pd.read_csv(config.PREDICTIONS_FILE, keep_default_na=False)
    if table["path"].tolist() != paths:
        raise StageError(
            f"{config.PREDICTIONS_FILE} does not list the test split in store order: "
            "re-run the evaluate stage (dvc repro)"
        )
    return table[[f"prob_{name}" for name in classes]].to_numpy(dtype=np.float64)


def lite_probs(clf: Classifier, split: SplitPixels, batch_size: int) -> np.ndarray:
    out = [clf.predict(x.astype(np.float32)) for x, _ in split.batches(batch_size)]
    return np.concatenate(out) if out else np.empty((0, len(clf.card.classes)))


def run(params: Params) -> dict:
    classes = read_classes()
    tflite = to_tflite(keras.models.load_model(config.KERAS_MODEL))
    card_stub = ModelCard(
        tuple(classes), params.image.size, params.image.color_mode, PREPROCESSING_VERSION
    )
    clf = Classifier(tflite, card_stub, num_threads=os.cpu_count() or 1)
    with open_split("test", params.image.size, params.image.color_mode) as test:
        batch = inference_batch_size(params.image.size, params.image.channels)
        diff = agreement(keras_test_probs(classes, test.paths), lite_probs(clf, test, batch))
    if diff > params.export.max_prob_diff:
        raise StageError(
            f".tflite and Keras disagree on the test split by {diff:.2e} "
            f"(> export.max_prob_diff {params.export.max_prob_diff}); nothing was written"
        )
    scores = json.loads(config.METRICS_FILE.read_text(encoding="utf-8"))
    card = model_card(classes, params, tflite, scores, diff)
    atomic.write_bytes(config.TFLITE_MODEL, tflite)
    atomic.write_json(config.MODEL_CARD, card)
    log.info(
        "wrote %s (%d KiB), max |p_tflite - p_keras| = %.2e",
        config.TFLITE_MODEL,
        len(tflite) // 1024,
        diff,
    )
    return card


if __name__ == "__main__":
    run_stage(run)

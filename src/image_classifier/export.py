"""Stage `export`: convert the Keras model to LiteRT (.tflite) and write its model card.

    python -m image_classifier.export

The .tflite file is checked against the Keras model on the whole test split before anything is
written: a conversion that changes predictions never reaches the web app.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import tempfile
from datetime import UTC, datetime

import keras
import numpy as np
import tensorflow as tf

from image_classifier import atomic, config
from image_classifier.cli import StageError, run_stage
from image_classifier.dataset import load_split
from image_classifier.evaluate import predict_probs
from image_classifier.inference import Classifier, ModelCard, predict_in_batches
from image_classifier.manifests import read_classes
from image_classifier.params import Params
from image_classifier.preprocessing import PREPROCESSING_VERSION

log = logging.getLogger(__name__)

HEADLINE_METRICS = ("accuracy", "f1_macro", "roc_auc_ovr", "n_test")


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


def run(params: Params) -> dict:
    classes = read_classes()
    model = keras.models.load_model(config.KERAS_MODEL)
    tflite = to_tflite(model)
    test = load_split("test", classes, params.image)
    card_stub = ModelCard(
        tuple(classes), params.image.size, params.image.color_mode, PREPROCESSING_VERSION
    )
    lite_probs = predict_in_batches(Classifier(tflite, card_stub), test.x)
    diff = agreement(predict_probs(model, test.x), lite_probs)
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

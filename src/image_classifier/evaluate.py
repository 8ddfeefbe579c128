"""Stage `evaluate`: score the trained model on the test split only.

    python -m image_classifier.evaluate

Writes reports/metrics.json (`dvc metrics show`) and, under reports/eval/, the per-class report,
per-image predictions with every class probability (the confusion-matrix plot's data, and what
export checks the .tflite model against), ROC curves and PNG figures. The test split is read
from the pixel store in batches sized for the image size, so memory does not grow with it.
"""

from __future__ import annotations

import json
import logging

import keras
import numpy as np

from image_classifier import atomic, config, metrics, plots
from image_classifier.cli import run_stage
from image_classifier.params import Params
from image_classifier.store import SplitPixels, inference_batch_size, open_split

log = logging.getLogger(__name__)


def predict_probs(model: keras.Model, split: SplitPixels, batch_size: int) -> np.ndarray:
    """(n, classes) float64 probabilities, in store order."""
    out = [
        np.asarray(model.predict_on_batch(x.astype(np.float32)), dtype=np.float64)
        for x, _ in split.batches(batch_size)
    ]
    return np.concatenate(out) if out else np.empty((0, len(split.meta.classes)))


def write_reports(test: SplitPixels, probs: np.ndarray, classes: list[str], params: Params) -> dict:
    y = test.labels
    scores = metrics.compute_metrics(y, probs, params.evaluate.top_k)
    atomic.write_json(config.METRICS_FILE, scores)
    out = config.EVAL_DIR
    tables = {
        "class_report.csv": metrics.class_report(y, probs, classes),
        "predictions.csv": metrics.predictions_table(test.paths, y, probs, classes),
    }
    roc = metrics.roc_curves(y, probs, classes)
    tables["roc.csv"] = roc
    tables["roc_micro.csv"] = roc[roc["class"] == "(micro)"][["fpr", "tpr"]]
    for name, table in tables.items():
        atomic.write_text(out / name, table.to_csv(index=False))
    y_pred = probs.argmax(axis=1)
    plots.save_figure(plots.confusion_figure(y, y_pred, classes), out / "confusion.png")
    plots.save_figure(plots.roc_figure(roc), out / "roc.png")
    worst = metrics.worst_errors(y, probs, params.evaluate.gallery_size)
    titles = [f"{classes[y[i]]} → {classes[y_pred[i]]} ({probs[i].max():.2f})" for i in worst]
    images = test.read(worst).astype(np.float32) if worst else []
    plots.save_figure(plots.gallery_figure(list(images), titles), out / "misclassified.png")
    return scores


def run(params: Params) -> dict:
    model = keras.models.load_model(config.KERAS_MODEL)
    with open_split("test", params.image.size, params.image.color_mode) as test:
        classes = list(test.meta.classes)
        batch = inference_batch_size(params.image.size, params.image.channels)
        scores = write_reports(test, predict_probs(model, test, batch), classes, params)
    log.info("test metrics: %s", json.dumps(scores))
    return scores


if __name__ == "__main__":
    run_stage(run)

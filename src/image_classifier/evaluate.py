"""Stage `evaluate`: score the trained model on the test split only.

    python -m image_classifier.evaluate

Writes reports/metrics.json (`dvc metrics show`) and, under reports/eval/, the per-class report,
per-image predictions (the confusion-matrix plot's data), ROC curves and PNG figures.
"""

from __future__ import annotations

import json
import logging

import keras
import numpy as np

from image_classifier import atomic, config, metrics, plots
from image_classifier.cli import run_stage
from image_classifier.dataset import Arrays, load_split
from image_classifier.manifests import read_classes
from image_classifier.params import Params

log = logging.getLogger(__name__)


def predict_probs(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float64)


def write_reports(test: Arrays, probs: np.ndarray, classes: list[str], params: Params) -> dict:
    scores = metrics.compute_metrics(test.y, probs, params.evaluate.top_k)
    atomic.write_json(config.METRICS_FILE, scores)
    out = config.EVAL_DIR
    tables = {
        "class_report.csv": metrics.class_report(test.y, probs, classes),
        "predictions.csv": metrics.predictions_table(test.paths, test.y, probs, classes),
    }
    roc = metrics.roc_curves(test.y, probs, classes)
    tables["roc.csv"] = roc
    tables["roc_micro.csv"] = roc[roc["class"] == "(micro)"][["fpr", "tpr"]]
    for name, table in tables.items():
        atomic.write_text(out / name, table.to_csv(index=False))
    y_pred = probs.argmax(axis=1)
    plots.save_figure(plots.confusion_figure(test.y, y_pred, classes), out / "confusion.png")
    plots.save_figure(plots.roc_figure(roc), out / "roc.png")
    worst = metrics.worst_errors(test.y, probs, params.evaluate.gallery_size)
    titles = [f"{classes[test.y[i]]} → {classes[y_pred[i]]} ({probs[i].max():.2f})" for i in worst]
    gallery = plots.gallery_figure([test.x[i] for i in worst], titles)
    plots.save_figure(gallery, out / "misclassified.png")
    return scores


def run(params: Params) -> dict:
    classes = read_classes()
    model = keras.models.load_model(config.KERAS_MODEL)
    test = load_split("test", classes, params.image)
    scores = write_reports(test, predict_probs(model, test.x), classes, params)
    log.info("test metrics: %s", json.dumps(scores))
    return scores


if __name__ == "__main__":
    run_stage(run)

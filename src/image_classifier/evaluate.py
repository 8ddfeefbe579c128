"""Stage `evaluate`: score the exported model, as the web app runs it, on the test split only.

    python -m image_classifier.evaluate

The model scored is saved_models/model.tflite through inference.Classifier (LiteRT, the
web app's runtime, quantized or not), so the numbers the quality gate judges are those of the
model that will be served; no TensorFlow is loaded. Writes reports/metrics.json
(`dvc metrics show`) and, under reports/eval/, the per-class report, per-image predictions with
every class probability (the confusion-matrix plot's data), ROC curves and PNG figures. The
test split is read from the pixel store in batches sized for the image size, so memory does
not grow with it.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from image_classifier import atomic, baselines, config, metrics, plots
from image_classifier.cli import StageError, run_stage
from image_classifier.inference import Classifier
from image_classifier.params import Params
from image_classifier.store import SplitPixels, inference_batch_size, open_split

log = logging.getLogger(__name__)


def predict_probs(
    model: Classifier, split: SplitPixels, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n, classes) float64 probabilities in store order, and the images downsampled for the
    linear baseline (collected on the same pass, so the test split is read once)."""
    probs, small = [], []
    for x, _ in split.batches(batch_size):
        probs.append(model.predict(x.astype(np.float32)).astype(np.float64))
        small.append(baselines.downsample(x))
    if not probs:
        raise StageError("the test split is empty: nothing to evaluate")
    return np.concatenate(probs), np.concatenate(small)


def baseline_scores(
    train: SplitPixels, test_small: np.ndarray, y_test: np.ndarray, seed: int
) -> dict[str, float]:
    """Majority-class and linear baselines on the same test split (see baselines.py)."""
    n_classes = len(train.meta.classes)
    picked = baselines.fit_sample(len(train), seed)
    batch = inference_batch_size(train.meta.size, train.meta.channels)
    x_fit = np.concatenate(
        [
            baselines.downsample(train.read(picked[i : i + batch]))
            for i in range(0, len(picked), batch)
        ]
    )
    majority = baselines.majority_probs(train.labels, len(y_test), n_classes)
    linear = baselines.linear_probs(x_fit, train.labels[picked], test_small, n_classes)
    return {
        **metrics.baseline_metrics("majority", y_test, majority),
        **metrics.baseline_metrics("linear", y_test, linear),
    }


def check_margin(scores: dict, metric: str, margin: float) -> str | None:
    """A loud warning when the network does not beat the linear baseline by `margin`."""
    linear = scores.get(metrics.baseline_name("linear", metric))
    if metric not in scores or linear is None:
        return None
    if scores[metric] >= metrics.required_over_baseline(linear, margin) - 1e-9:
        return None
    return (
        f"the network's {metric} {scores[metric]:.4f} does not beat a logistic regression on "
        f"{baselines.BASELINE_SIDE}x{baselines.BASELINE_SIDE} pixels ({linear:.4f}) by "
        f"evaluate.baseline_margin={margin}: the model is undertrained or misconfigured (see "
        "README, 'Your own images'); the quality gate will refuse it"
    )


def write_reports(
    test: SplitPixels,
    probs: np.ndarray,
    classes: list[str],
    params: Params,
    extra: dict,
    model_version: str,
) -> dict:
    y = test.labels
    scores = {**metrics.compute_metrics(y, probs, params.evaluate.top_k), **extra}
    atomic.write_json(config.METRICS_FILE, scores)
    out = config.EVAL_DIR
    tables = {
        "class_report.csv": metrics.class_report(y, probs, classes),
        "predictions.csv": metrics.predictions_table(test.paths, y, probs, classes),
    }
    report = tables["class_report.csv"]
    log.info("per-class recall: %s", dict(zip(report["class"], report["recall"], strict=True)))
    roc = metrics.roc_curves(y, probs, classes)
    tables["roc.csv"] = roc
    tables["roc_micro.csv"] = roc[roc["class"] == "(micro)"][["fpr", "tpr"]]
    for name, table in tables.items():
        atomic.write_text(out / name, table.to_csv(index=False))
    # The web app's model page shows these reports only for the model they describe, with the
    # baseline warning when there is one.
    warning = check_margin(scores, params.gate.metric, params.evaluate.baseline_margin)
    evaluated = {"model_version": model_version, "warning": warning}
    atomic.write_json(out / config.EVALUATED_MODEL_FILE, evaluated)
    y_pred = probs.argmax(axis=1)
    plots.save_figure(plots.confusion_figure(y, y_pred, classes), out / "confusion.png")
    plots.save_figure(plots.roc_figure(roc), out / "roc.png")
    worst = metrics.worst_errors(y, probs, params.evaluate.gallery_size)
    titles = [f"{classes[y[i]]} → {classes[y_pred[i]]} ({probs[i].max():.2f})" for i in worst]
    images = test.read(worst).astype(np.float32) if worst else []
    plots.save_figure(plots.gallery_figure(list(images), titles), out / "misclassified.png")
    return scores


def run(params: Params) -> dict:
    model = Classifier.from_dir(config.MODELS_DIR, num_threads=os.cpu_count() or 1)
    size, mode = params.image.size, params.image.color_mode
    with open_split("test", size, mode) as test, open_split("train", size, mode) as train:
        classes = list(test.meta.classes)
        if classes != list(model.card.classes):
            raise StageError(
                f"{config.MODEL_CARD} names classes {list(model.card.classes)}, the store "
                f"{classes}: re-run the pipeline (dvc repro)"
            )
        probs, small = predict_probs(model, test, inference_batch_size(size, test.meta.channels))
        extra = baseline_scores(train, small, test.labels, params.train.seed)
        scores = write_reports(test, probs, classes, params, extra, model.card.version)
    log.info("test metrics: %s", json.dumps(scores))
    warning = check_margin(scores, params.gate.metric, params.evaluate.baseline_margin)
    if warning:
        log.warning("%s\n!!! %s\n%s", "!" * 79, warning, "!" * 79)
    return scores


if __name__ == "__main__":
    run_stage(run)

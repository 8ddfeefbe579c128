"""Stage `evaluate`: score the exported model, as the web app runs it, on the test split only.

    python -m image_classifier.evaluate

The probabilities scored are those export computed by running saved_models/model.tflite through
litert/classifier.py's Classifier (LiteRT, the web app's runtime, quantized or not) on the
whole test split: reports/test_probabilities.npz, tagged with the file's SHA-256, which must
match model.json. So the numbers the quality gate judges are those of the model that will be
served, and the model is not run twice; no TensorFlow is loaded. Writes reports/metrics.json
(`dvc metrics show`) and, under reports/eval/, the per-class report, per-image predictions with
every class probability (the confusion-matrix plot's data), ROC curves and PNG figures, and
evaluated_model.json: the model version and classes scored (the web app's model page and the
gate's same-classes check read them) and a warning when the network does not beat chance or
the linear baseline on gate.metric (logged loudly too). The test split is read from the pixel
store in batches sized for the image size, so memory does not grow with it.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from image_classifier import atomic, config
from image_classifier.cli import StageError, run_stage
from image_classifier.data.store import SplitPixels, inference_batch_size, open_split, seeded_sample
from image_classifier.evaluation import baselines, diagnosis, metrics, plots
from image_classifier.litert.classifier import load_card
from image_classifier.params import Params
from image_classifier.timing import phase

log = logging.getLogger(__name__)


def served_probs(split: SplitPixels) -> np.ndarray:
    """The float64 probabilities export wrote for this split, checked against the model card:
    the same file, the same number of images."""
    card = json.loads(config.MODEL_CARD.read_text(encoding="utf-8"))
    try:
        with np.load(config.TEST_PROBABILITIES) as saved:
            probs, sha = saved["probabilities"].astype(np.float64), str(saved["tflite_sha256"])
    except FileNotFoundError:
        raise StageError(f"{config.TEST_PROBABILITIES} not found: run the export stage") from None
    if sha != card.get("tflite_sha256") or len(probs) != len(split):
        raise StageError(
            f"{config.TEST_PROBABILITIES} is not from {config.TFLITE_MODEL} on this test split: "
            "re-run the pipeline (dvc repro)"
        )
    if not len(probs):
        raise StageError("the test split is empty: nothing to evaluate")
    return probs


def downsampled(split: SplitPixels, indices: np.ndarray) -> np.ndarray:
    """The images at `indices` as the linear baseline sees them, one array filled a batch at a
    time: the pixels are never all in memory, nor the small images twice."""
    batch = inference_batch_size(split.meta.size, split.meta.channels)
    out = np.empty((0, 0), dtype=np.float32)
    for start in range(0, len(indices), batch):
        small = baselines.downsample(split.read(indices[start : start + batch]))
        if not start:
            out = np.empty((len(indices), small.shape[1]), dtype=np.float32)
        out[start : start + len(small)] = small
    return out


def baseline_scores(train: SplitPixels, test: SplitPixels, seed: int) -> dict[str, float]:
    """Majority-class and linear baselines on the same test split (see baselines.py). The
    linear model fits a seeded sample of the training images, then scores the test split a
    batch at a time, so memory does not grow with it."""
    n_classes = len(train.meta.classes)
    picked = seeded_sample(len(train), baselines.MAX_FIT_IMAGES, seed)
    model = baselines.fit_linear(downsampled(train, picked), train.labels[picked])
    batch = inference_batch_size(test.meta.size, test.meta.channels)
    linear = np.concatenate(
        [
            baselines.linear_probs(model, baselines.downsample(x), n_classes)
            for x, _ in test.batches(batch)
        ]
    )
    majority = baselines.majority_probs(train.labels, len(test), n_classes)
    return {
        **metrics.baseline_metrics("majority", test.labels, majority),
        **metrics.baseline_metrics("linear", test.labels, linear),
    }


def shortfalls(scores: dict, metric: str, margin: float, n_classes: int | None) -> list[str]:
    """What the network does not beat on `metric`, by `margin`: chance (metrics.beats_chance:
    the majority baseline or a uniform guess, beyond sampling noise), the linear baseline, or
    both. Empty when it beats them, or when the scores lack what to judge by. The gate judges
    by the same rules."""
    out = []
    chance = metrics.beats_chance(scores, metric, n_classes, margin)
    if chance is not None and not chance.passed:
        out.append(f"the network is no better than chance: {chance.text}")
    linear = scores.get(metrics.baseline_name("linear", metric))
    if (
        metric in scores
        and linear is not None
        and scores[metric] < metrics.required_over_baseline(linear, margin) - 1e-9
    ):
        out.append(
            f"the network's {metric} {scores[metric]:.4f} does not beat a logistic regression "
            f"on {baselines.BASELINE_SIDE}x{baselines.BASELINE_SIDE} pixels ({linear:.4f}) by "
            f"evaluate.baseline_margin={margin}"
        )
    return out


def check_model(
    scores: dict,
    metric: str,
    margin: float,
    n_classes: int | None,
    why: diagnosis.Diagnosis | None = None,
) -> str | None:
    """A loud warning when the network does not beat chance or the linear baseline by
    `margin` (shortfalls), with the diagnosis from the fit when there is one."""
    problems = shortfalls(scores, metric, margin, n_classes)
    if not problems:
        return None
    cause = why.text() if why else "the model is undertrained or misconfigured"
    return f"{'; and '.join(problems)}: {cause}; the quality gate will refuse it"


def fit_diagnosis(params: Params) -> diagnosis.Diagnosis | None:
    """Underfitting or overfitting, from the train stage's summary (evaluation/diagnosis.py)."""
    path = config.TRAIN_LIVE_DIR / "metrics.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    return diagnosis.from_train_metrics(summary, params.train)


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
    why = fit_diagnosis(params)
    margin = params.evaluate.baseline_margin
    warning = check_model(scores, params.gate.metric, margin, len(classes), why)
    evaluated = {
        "model_version": model_version,
        # The gate compares with a baseline revision only when its model was trained on the
        # same classes; this committed file names them (metrics.json holds numbers only, for
        # `dvc metrics`).
        "classes": list(classes),
        "warning": warning,
        "diagnosis": why.as_dict() if warning and why else None,
    }
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
    card = load_card(config.MODEL_CARD)
    size, mode = params.image.size, params.image.color_mode
    with open_split("test", size, mode) as test, open_split("train", size, mode) as train:
        classes = list(test.meta.classes)
        if classes != list(card.classes):
            raise StageError(
                f"{config.MODEL_CARD} names classes {list(card.classes)}, the store "
                f"{classes}: re-run the pipeline (dvc repro)"
            )
        probs = served_probs(test)
        with phase("baselines"):
            extra = baseline_scores(train, test, params.train.seed)
        with phase("reports_and_plots"):
            scores = write_reports(test, probs, classes, params, extra, card.version)
    log.info("test metrics: %s", json.dumps(scores))
    margin = params.evaluate.baseline_margin
    warning = check_model(scores, params.gate.metric, margin, len(classes), fit_diagnosis(params))
    if warning:
        log.warning("%s\n!!! %s\n%s", "!" * 79, warning, "!" * 79)
    return scores


if __name__ == "__main__":
    run_stage(run)

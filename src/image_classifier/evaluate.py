"""Stage `evaluate`: score the exported model, as the web app runs it, on the test split only;
measure its calibration and its "none of these" detector; write its model card.

    python -m image_classifier.evaluate

The probabilities scored are those export computed by running saved_models/model.tflite through
litert/classifier.py's Classifier (LiteRT, the web app's runtime, quantized or not) on the
whole test split: reports/test_probabilities.npz, tagged with the file's SHA-256, which must
match model.json, with the logits and out-of-distribution scores of the same pass. So the
numbers the quality gate judges are those of the model that will be served, and the model is
not run twice on the test split; no TensorFlow is loaded. The served model runs here only on
the generated out-of-distribution sets (ood.sets, evaluation/ood_sets.py).

Writes reports/metrics.json (`dvc metrics show`): the test metrics beside the baselines;
expected calibration error and log loss after and before temperature scaling; the detector's
threshold, the share of test images it rejects and the accuracy on those it accepts; pooled
over the out-of-distribution sets, its AUROC, FPR at 95 % TPR and share rejected, beside the
maximum-softmax baseline's (evaluation/uncertainty.py). Under reports/eval/: the per-class
report, per-image predictions with every class probability, `known` and `ood_score` (the
confusion-matrix plot's data, the drift monitor's reference), ROC curves, the reliability
diagram's data (reliability.csv) and each out-of-distribution set's figures (ood.json), PNG
figures, and evaluated_model.json: the model version and classes scored (the web app's model
page and the gate's same-classes check read them) and a warning when the network does not
beat chance or the linear baseline on gate.metric (logged loudly too). And
reports/model_card.md (evaluation/model_card.py), whose numbers are metrics.json's. The test
split is read from the pixel store in batches sized for the image size, so memory does not
grow with it.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import os
import platform
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from image_classifier import atomic, config
from image_classifier.cli import StageError, run_stage
from image_classifier.data.manifests import read_manifest
from image_classifier.data.store import SplitPixels, inference_batch_size, open_split, seeded_sample
from image_classifier.evaluation import (
    baselines,
    diagnosis,
    metrics,
    model_card,
    ood_sets,
    plots,
    uncertainty,
)
from image_classifier.litert.classifier import Classifier, load_card
from image_classifier.params import Params
from image_classifier.timing import phase

log = logging.getLogger(__name__)

# Each out-of-distribution set's figures, in config.EVAL_DIR (`dvc metrics show
# reports/eval/ood.json`; not among dvc.yaml's metrics: 6 columns a set would swamp the table).
OOD_FILE = "ood.json"


@dataclass(frozen=True)
class Served:
    """The served model's outputs besides its calibrated test probabilities: the test split's
    logits and out-of-distribution scores (export's npz), the temperature and the detector's
    threshold (model.json; None without a detector), and its scores on each generated
    out-of-distribution set (run here)."""

    logits: np.ndarray
    ood_scores: np.ndarray
    temperature: float = 1.0
    threshold: float | None = None
    ood_sets: dict[str, uncertainty.SetScores] = field(default_factory=dict)

    @classmethod
    def from_probabilities(cls, probs: np.ndarray) -> Served:
        """For probabilities alone: their logarithm as logits (T = 1), no detector."""
        logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None))
        return cls(logits, np.full(len(logits), np.inf))


def served_outputs(split: SplitPixels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The float64 (calibrated probabilities, logits, out-of-distribution scores) export wrote
    for this split, checked against the model card: the same file, the same number of images."""
    card = json.loads(config.MODEL_CARD.read_text(encoding="utf-8"))
    try:
        with np.load(config.TEST_PROBABILITIES) as saved:
            probs, sha = saved["probabilities"].astype(np.float64), str(saved["tflite_sha256"])
            logits = saved["logits"].astype(np.float64) if "logits" in saved else None
            scores = saved["ood_scores"].astype(np.float64) if "ood_scores" in saved else None
    except FileNotFoundError:
        raise StageError(f"{config.TEST_PROBABILITIES} not found: run the export stage") from None
    if sha != card.get("tflite_sha256") or len(probs) != len(split):
        raise StageError(
            f"{config.TEST_PROBABILITIES} is not from {config.TFLITE_MODEL} on this test split: "
            "re-run the pipeline (dvc repro)"
        )
    if logits is None or scores is None:
        raise StageError(
            f"{config.TEST_PROBABILITIES} holds no logits or out-of-distribution scores (an "
            "older export): re-run the pipeline (dvc repro)"
        )
    if not len(probs):
        raise StageError("the test split is empty: nothing to evaluate")
    return probs, logits, scores


def check_same_top1(probs: np.ndarray, logits: np.ndarray) -> None:
    """Temperature scaling cannot change a top class: a difference is a bug, not a result."""
    differ = np.flatnonzero(~uncertainty.same_top1(probs, logits))
    if len(differ):
        raise StageError(
            f"the calibrated probabilities' top class differs from the logits' on {len(differ)} "
            f"test images (first: {differ[:5].tolist()}): temperature scaling must not change "
            "any prediction; re-run the export stage"
        )


def ood_set_scores(
    clf: Classifier, names: Sequence[str], count: int, seed: int
) -> dict[str, uncertainty.SetScores]:
    """Each out-of-distribution set (evaluation/ood_sets.py), drawn at the model's input size
    and colour mode as serving decodes an upload, through the served model: the detector's
    scores and the maximum softmax probability (the baseline)."""
    size, mode = clf.card.image_size, clf.card.color_mode
    out = {}
    for name in names:
        result = clf.run(ood_sets.draw(name, count, size, mode, seed))
        msp = uncertainty.max_softmax(result.logits, clf.card.temperature)
        out[name] = uncertainty.SetScores(result.scores, msp)
    return out


def split_counts(directory: Path = config.PREPARED_DIR) -> dict[str, dict[str, int]]:
    """Images per class in each split of the store (its manifests), for the model card."""
    counts = {}
    for name in config.SPLIT_NAMES:
        labels = [row.label for row in read_manifest(directory / f"{name}.csv")]
        counts[name] = dict(sorted(Counter(labels).items()))
    return counts


def software_versions() -> dict[str, str]:
    """Python and the packages that trained, converted and ran the model, as installed."""
    found = {"python": platform.python_version()}
    for name in ("keras", "tensorflow", "tensorflow-cpu", "ai-edge-litert", "numpy",
                 "scikit-learn"):  # fmt: skip
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


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


def uncertainty_scores(
    y: np.ndarray, probs: np.ndarray, served: Served
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """metrics.json's calibration and out-of-distribution keys, and each set's figures
    (reports/eval/ood.json). Without a detector, only the calibration's."""
    scores = uncertainty.calibration_scores(served.logits, probs, y, served.temperature)
    if served.threshold is None:
        return scores, {}
    scores.update(uncertainty.known_scores(served.ood_scores, served.threshold, probs, y))
    test = uncertainty.SetScores(
        served.ood_scores, uncertainty.max_softmax(served.logits, served.temperature)
    )
    pooled, per_set = uncertainty.ood_scores(test, served.ood_sets, served.threshold)
    return {**scores, **pooled}, per_set


def write_reports(
    test: SplitPixels,
    probs: np.ndarray,
    classes: list[str],
    params: Params,
    extra: dict,
    model_version: str,
    served: Served | None = None,
    facts: model_card.CardFacts | None = None,
) -> dict:
    """Every report of the stage from the served model's outputs (`served`: from its
    probabilities alone when None) and what the model card describes (`facts`: model.json,
    the images per split, the audit's counts; the version, classes and test split alone when
    None). Returns the scores written to metrics.json."""
    y = test.labels
    served = served or Served.from_probabilities(probs)
    check_same_top1(probs, served.logits)
    scores = {**metrics.compute_metrics(y, probs, params.evaluate.top_k), **extra}
    found, per_set = uncertainty_scores(y, probs, served)
    scores.update(found)
    atomic.write_json(config.METRICS_FILE, scores)
    out = config.EVAL_DIR
    if served.threshold is None:  # no detector: every image is known, and has no score
        known, ood_score = np.ones(len(y), dtype=bool), np.full(len(y), np.nan)
    else:
        known, ood_score = served.ood_scores >= served.threshold, served.ood_scores
    tables = {
        "class_report.csv": metrics.class_report(y, probs, classes),
        "predictions.csv": metrics.predictions_table(
            test.paths, y, probs, classes, known=known, ood_scores=ood_score
        ),
    }
    report = tables["class_report.csv"]
    log.info("per-class recall: %s", dict(zip(report["class"], report["recall"], strict=True)))
    roc = metrics.roc_curves(y, probs, classes)
    tables["roc.csv"] = roc
    tables["roc_micro.csv"] = roc[roc["class"] == "(micro)"][["fpr", "tpr"]]
    reliability = uncertainty.reliability_table(served.logits, probs, y)
    tables[config.RELIABILITY_FILE.name] = reliability
    for name, table in tables.items():
        # An empty reliability bin is "nan": `dvc plots` (Vega-Lite) leaves out a value that is
        # not a finite number, but would draw an empty cell at zero.
        atomic.write_text(out / name, table.to_csv(index=False, na_rep="nan"))
    atomic.write_json(out / OOD_FILE, {"sets": per_set})
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
    plots.save_figure(
        plots.reliability_figure(reliability, served.temperature), out / "reliability.png"
    )
    if served.threshold is not None:
        figure = plots.ood_scores_figure(
            served.ood_scores,
            {name: s.scores for name, s in served.ood_sets.items()},
            served.threshold,
            str((facts.model if facts else {}).get("ood", {}).get("method", "detector")),
        )
        plots.save_figure(figure, out / "ood_scores.png")
    worst = metrics.worst_errors(y, probs, params.evaluate.gallery_size)
    titles = [f"{classes[y[i]]} → {classes[y_pred[i]]} ({probs[i].max():.2f})" for i in worst]
    images = test.read(worst).astype(np.float32) if worst else []
    plots.save_figure(plots.gallery_figure(list(images), titles), out / "misclassified.png")
    if facts is None:
        counts = Counter(classes[i] for i in y)
        facts = model_card.CardFacts(
            model={"version": model_version, "classes": list(classes)},
            counts={"test": {c: counts.get(c, 0) for c in classes}},
        )
    facts = dataclasses.replace(
        facts,
        ood_sets=per_set,
        refused=warning is not None,
        diagnosis=evaluated["diagnosis"],
        gate_metric=params.gate.metric,
        weights=params.train.weights,
        versions=software_versions(),
    )
    atomic.write_text(config.MODEL_CARD_MD, model_card.render(scores, facts))
    return scores


def read_audit() -> dict | None:
    """The audit stage's counts (reports/audit/summary.json), when it has run."""
    if not config.AUDIT_SUMMARY.is_file():
        return None
    return json.loads(config.AUDIT_SUMMARY.read_text(encoding="utf-8"))


def run(params: Params) -> dict:
    card = load_card(config.MODEL_CARD)
    model = json.loads(config.MODEL_CARD.read_text(encoding="utf-8"))
    size, mode = params.image.size, params.image.color_mode
    with open_split("test", size, mode) as test, open_split("train", size, mode) as train:
        classes = list(test.meta.classes)
        if classes != list(card.classes):
            raise StageError(
                f"{config.MODEL_CARD} names classes {list(card.classes)}, the store "
                f"{classes}: re-run the pipeline (dvc repro)"
            )
        probs, logits, test_scores = served_outputs(test)
        with phase("baselines"):
            extra = baseline_scores(train, test, params.train.seed)
        sets: dict[str, uncertainty.SetScores] = {}
        op = params.ood
        if not card.ood:
            log.info("model.json has no out-of-distribution detector: nothing to measure")
        elif not op.sets:
            log.info("ood.sets is empty: the detector is not measured on out-of-distribution "
                     "images")  # fmt: skip
        else:
            with phase("ood_sets"):
                clf = Classifier.from_dir(config.MODELS_DIR, num_threads=os.cpu_count() or 1)
                sets = ood_set_scores(clf, op.sets, op.images_per_set, params.train.seed)
        threshold = float(card.ood["threshold"]) if card.ood else None
        served = Served(logits, test_scores, card.temperature, threshold, sets)
        facts = model_card.CardFacts(model=model, counts=split_counts(), audit=read_audit())
        with phase("reports_and_plots"):
            scores = write_reports(test, probs, classes, params, extra, card.version, served, facts)
    log.info("test metrics: %s", json.dumps(scores))
    margin = params.evaluate.baseline_margin
    warning = check_model(scores, params.gate.metric, margin, len(classes), fit_diagnosis(params))
    if warning:
        log.warning("%s\n!!! %s\n%s", "!" * 79, warning, "!" * 79)
    return scores


if __name__ == "__main__":
    run_stage(run)

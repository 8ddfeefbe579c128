"""How well the model knows what it does not know: calibration and out-of-distribution scores.

Pure functions over arrays, for the evaluate stage:

- calibration_scores: expected calibration error (15 bins) and log loss of the served,
  temperature-scaled probabilities, and of the raw softmax (T = 1) for comparison;
- reliability_table: the reliability diagram's data, one row per confidence bin, before and
  after;
- auroc, fpr_at_tpr: how well a score separates in-distribution images (the positives; higher
  score = more like the training images) from out-of-distribution ones;
- ood_scores: those, the shares rejected at the served threshold and the maximum-softmax
  baseline's figures, per out-of-distribution set and pooled over all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from image_classifier.evaluation import calibration, ood

# The true-positive rate at which the false-positive rate is read (OpenOOD's FPR@95).
TPR = 0.95
# metrics.json's values are rounded to this many decimals (as metrics.compute_metrics does).
DECIMALS = 6


def _round(value: float) -> float:
    return round(float(value), DECIMALS)


def same_top1(probs: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Per image, whether the calibrated probabilities' top class is the logits' (it always
    is: temperature scaling divides every logit by one positive number)."""
    return np.asarray(probs).argmax(axis=1) == np.asarray(logits).argmax(axis=1)


def calibration_scores(
    logits: np.ndarray, probs: np.ndarray, labels: np.ndarray, temperature: float
) -> dict[str, float]:
    """ECE and log loss after calibration (the served `probs`, softmax(logits / T)) and before
    it (softmax(logits), T = 1), with the temperature itself. Log loss is computed from the
    logits, so a probability that float32 rounded to 0 does not make it infinite."""
    raw = calibration.softmax(logits)
    return {
        "ece": _round(calibration.expected_calibration_error(probs, labels)),
        "ece_uncalibrated": _round(calibration.expected_calibration_error(raw, labels)),
        "log_loss": _round(calibration.log_loss(logits, labels, temperature)),
        "log_loss_uncalibrated": _round(calibration.log_loss(logits, labels)),
        "temperature": _round(temperature),
    }


def reliability_table(logits: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """One row per confidence bin (calibration.ECE_BINS, equal width): the served model's
    mean confidence, accuracy and images in it, then the same for softmax(logits) (T = 1)
    under `_uncalibrated`. An empty bin's confidence and accuracy are NaN."""
    after = pd.DataFrame(calibration.reliability(probs, labels))
    before = pd.DataFrame(calibration.reliability(calibration.softmax(logits), labels))
    table = after[["bin_lower", "bin_upper", "confidence", "accuracy", "images"]].copy()
    for column in ("confidence", "accuracy", "images"):
        table[f"{column}_uncalibrated"] = before[column]
    for column in ("confidence", "accuracy", "confidence_uncalibrated", "accuracy_uncalibrated"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float).round(6)
    return table


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Area under the ROC curve with in-distribution images as the positives: the probability
    that an in-distribution image scores above an out-of-distribution one (ties count half).
    Mann-Whitney U over the pooled ranks; 0.5 when either side is empty."""
    pos = np.asarray(in_scores, dtype=np.float64)
    neg = np.asarray(out_scores, dtype=np.float64)
    if not len(pos) or not len(neg):
        return 0.5
    # ties share the mean of their ranks
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def threshold_at_tpr(in_scores: np.ndarray, tpr: float = TPR) -> float:
    """The highest score threshold that accepts (score >= threshold) at least a share `tpr`
    of the in-distribution images: the rule export sets the served threshold by
    (ood.threshold_for), here on the test split."""
    return ood.threshold_for(in_scores, tpr)


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr: float = TPR) -> float:
    """The share of out-of-distribution images accepted at the threshold that accepts `tpr`
    of the in-distribution ones (threshold_at_tpr): lower is better."""
    out = np.asarray(out_scores, dtype=np.float64)
    if not len(out):
        return 0.0
    return float(np.mean(out >= threshold_at_tpr(in_scores, tpr)))


def rejected(scores: np.ndarray, threshold: float) -> float:
    """The share of images the detector calls unknown: score below the threshold."""
    scores = np.asarray(scores, dtype=np.float64)
    return float(np.mean(scores < threshold)) if len(scores) else 0.0


def max_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """The maximum softmax probability of each image (Hendrycks & Gimpel, 2017): the baseline
    out-of-distribution score, from the calibrated probabilities."""
    return calibration.softmax(logits, temperature).max(axis=1)


@dataclass(frozen=True)
class SetScores:
    """One out-of-distribution set through the served model: the detector's scores and the
    maximum-softmax baseline's (the top calibrated probability)."""

    scores: np.ndarray
    msp: np.ndarray


def separation(
    test: SetScores, other: SetScores, threshold: float, images: int | None = None
) -> dict[str, float]:
    """The detector against the test split on one set of out-of-distribution images (or all
    of them pooled), with the maximum-softmax baseline's AUROC and FPR beside it."""
    return {
        "images": int(len(other.scores) if images is None else images),
        "auroc": _round(auroc(test.scores, other.scores)),
        "fpr_at_95_tpr": _round(fpr_at_tpr(test.scores, other.scores)),
        "rejected": _round(rejected(other.scores, threshold)),
        "auroc_msp": _round(auroc(test.msp, other.msp)),
        "fpr_at_95_tpr_msp": _round(fpr_at_tpr(test.msp, other.msp)),
    }


def known_scores(
    test_scores: np.ndarray, threshold: float, probs: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """On the in-distribution test split: the served threshold, the share of images the
    detector rejects, and the accuracy on those it accepts (`accuracy_known`; left out when it
    accepts none)."""
    known = np.asarray(test_scores, dtype=np.float64) >= threshold
    out = {"ood_threshold": _round(threshold), "test_rejected": _round(1 - known.mean())}
    if known.any():
        right = np.asarray(probs).argmax(axis=1) == np.asarray(labels)
        out["accuracy_known"] = _round(right[known].mean())
    return out


def ood_scores(
    test: SetScores, sets: Mapping[str, SetScores], threshold: float
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(metrics.json's pooled keys, each set's figures). Pooled: every set's images together
    against the test split, keyed ood_images, ood_auroc, ood_fpr_at_95_tpr, ood_rejected,
    ood_auroc_msp, ood_fpr_at_95_tpr_msp. Both empty when there is no set."""
    if not sets:
        return {}, {}
    per_set = {name: separation(test, s, threshold) for name, s in sets.items()}
    pooled = SetScores(
        np.concatenate([s.scores for s in sets.values()]),
        np.concatenate([s.msp for s in sets.values()]),
    )
    return {f"ood_{k}": v for k, v in separation(test, pooled, threshold).items()}, per_set

"""Pure evaluation functions: labels and predicted probabilities in, numbers and tables out.

Predictions stay in the manifest's order end to end (nothing is shuffled), which is the bug
behind the chance-level accuracy many tutorials report.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from image_classifier.evaluation import HEADLINE_METRICS


def top_k_name(k: int) -> str:
    return f"top_{k}_accuracy"


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, top_k: int) -> dict[str, float]:
    """Headline metrics for `reports/metrics.json` (and `dvc metrics show`)."""
    n_classes = probs.shape[1]
    labels = np.arange(n_classes)
    y_pred = probs.argmax(axis=1)
    out = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        # Mean per-class recall: what accuracy hides on imbalanced data.
        "balanced_accuracy": _balanced_accuracy(y_true, y_pred),
        "cohen_kappa": skm.cohen_kappa_score(y_true, y_pred, labels=labels),
        "n_test": len(y_true),
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        out.update({f"precision_{average}": p, f"recall_{average}": r, f"f1_{average}": f})
    present = np.unique(y_true)
    if len(present) == n_classes == 2:
        # Binary: the ROC AUC of the positive class (the second in sorted order).
        out["roc_auc"] = skm.roc_auc_score(y_true, probs[:, 1])
    elif len(present) == n_classes:
        out["roc_auc_ovr"] = skm.roc_auc_score(y_true, probs, multi_class="ovr", labels=labels)
    if top_k < n_classes:
        # Only where it says something: with k >= classes it is 1.0 by construction, and for
        # two classes scikit-learn rejects a two-column score matrix.
        out[top_k_name(top_k)] = skm.top_k_accuracy_score(y_true, probs, k=top_k, labels=labels)
    return {key: round(float(v), 6) if key != "n_test" else v for key, v in out.items()}


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """scikit-learn's: mean recall over the classes present in y_true."""
    with warnings.catch_warnings():
        # A class the model predicts but the test split lacks has no recall: scikit-learn
        # leaves it out, as it should, and warns; the report says which classes were tested.
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        return float(skm.balanced_accuracy_score(y_true, y_pred))


def baseline_name(baseline: str, metric: str) -> str:
    return f"baseline_{baseline}_{metric}"


def required_over_baseline(linear: float, margin: float) -> float:
    """What the network must reach on a metric where the linear baseline scored `linear`:
    `margin` more, or half of the headroom left above the baseline when that is less (a
    baseline at 0.985 asks for 0.9925, not a perfect 1.0; at 1.0, matching it is enough)."""
    return min(linear + margin, linear + (1.0 - linear) / 2)


# Metrics on which a uniform random guess over n classes scores 1/n in expectation. Exact for
# accuracy, balanced accuracy, macro precision and recall, and weighted recall (which is
# accuracy); for macro F1 it is the most such a guess scores (equal classes), for weighted
# precision and F1 the least (skewed classes score more, and so does the majority baseline).
ONE_IN_N = frozenset(
    {
        "accuracy",
        "balanced_accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "precision_weighted",
        "recall_weighted",
        "f1_weighted",
    }
)
# ... and those where guessing scores the same whatever n.
GUESS_CONSTANT = {"cohen_kappa": 0.0, "roc_auc": 0.5, "roc_auc_ovr": 0.5}


def uniform_guess(metric: str, n_classes: int) -> float | None:
    """A uniform random guess's score on `metric` over n_classes (ONE_IN_N, GUESS_CONSTANT;
    top-k accuracy: k/n); None for a metric with no such level."""
    top_k = re.fullmatch(r"top_(\d+)_accuracy", metric)
    if top_k:
        return min(1.0, int(top_k[1]) / n_classes)
    if metric in ONE_IN_N:
        return 1.0 / n_classes
    return GUESS_CONSTANT.get(metric)


@dataclass(frozen=True)
class Chance:
    """What guessing scores on a metric, and how that was found (for the messages)."""

    level: float
    why: str


def chance_level(scores: Mapping[str, float], metric: str, n_classes: int | None) -> Chance | None:
    """Chance on `metric`: the best of the majority baseline's value of that same metric (when
    the scores hold it) and a uniform guess's (uniform_guess, when the class count is known).
    A model that does not beat it has learnt nothing, whatever the linear baseline scored.
    None when neither is known."""
    candidates = []
    majority = scores.get(baseline_name("majority", metric))
    if majority is not None:
        candidates.append((float(majority), f"majority baseline {float(majority):.4f}"))
    guess = uniform_guess(metric, n_classes) if n_classes else None
    if guess is not None:
        candidates.append((guess, f"uniform guess over {n_classes} classes {guess:.4f}"))
    if not candidates:
        return None
    level = max(value for value, _ in candidates)
    texts = [text for _, text in candidates]
    return Chance(level, texts[0] if len(texts) == 1 else "the best of " + " and ".join(texts))


# One-sided 95 %: a model "beats chance" only when its score's lower confidence bound does.
NOISE_Z = 1.6449


def lower_bound(value: float, n: int, z: float = NOISE_Z) -> float:
    """Wilson score lower bound of a proportion `value` seen over n test images. Exact in kind
    for accuracy; for the other metrics (means of per-class rates, F1) a proportion over the
    same images is the yardstick of noise used, an approximation."""
    p = min(1.0, max(0.0, value))
    if n <= 0:
        return 0.0
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (centre - spread) / (1 + z2 / n)


@dataclass(frozen=True)
class ChanceCheck:
    passed: bool
    text: str  # "accuracy 0.2800 vs chance 0.2500 (...)": the verdict's reasons, either way


def beats_chance(
    scores: Mapping[str, float], metric: str, n_classes: int | None, margin: float
) -> ChanceCheck | None:
    """Does the model's `metric` beat chance (chance_level)? By `margin`, as it must beat the
    linear baseline (required_over_baseline), and by more than sampling noise: the score's
    lower confidence bound over the n_test images must be above chance (on 90 test images of
    4 classes, 0.28 is 25 right where guessing gets 22.5: no evidence of learning). None when
    the scores lack the metric or chance is unknown."""
    chance = chance_level(scores, metric, n_classes)
    if metric not in scores or chance is None:
        return None
    value = float(scores[metric])
    needed = required_over_baseline(chance.level, margin)
    ok = value >= needed - 1e-9
    text = (
        f"{metric} {value:.4f} vs chance {chance.level:.4f} ({chance.why}): must beat it by "
        f"evaluate.baseline_margin = {margin:.4f}"
    )
    n_test = scores.get("n_test")
    if n_test:
        bound = lower_bound(value, int(n_test))
        ok = ok and bound > chance.level
        text += (
            f"; its 95% lower bound over {int(n_test)} test images, {bound:.4f}, must be above it"
        )
    return ChanceCheck(ok, text)


def baseline_metrics(name: str, y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The headline metrics of a baseline's predictions, keyed baseline_<name>_<metric>."""
    scores = compute_metrics(y_true, probs, top_k=probs.shape[1])
    return {baseline_name(name, m): scores[m] for m in HEADLINE_METRICS}


def class_report(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support."""
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, probs.argmax(axis=1), labels=np.arange(len(classes)), zero_division=0
    )
    return pd.DataFrame(
        {"class": list(classes), "precision": p, "recall": r, "f1": f, "support": s}
    ).round(6)


def predictions_table(
    paths: Sequence[str],
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    known: np.ndarray | None = None,
    ood_scores: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per test image: what it is, what the model said, and every class probability;
    then, when given, whether the detector called the image `known` (True/False; the drift
    monitor's reference reads it) and its `ood_score`."""
    y_pred = probs.argmax(axis=1)
    table = pd.DataFrame(
        {
            "path": list(paths),
            "actual": [classes[i] for i in y_true],
            "predicted": [classes[i] for i in y_pred],
            "confidence": probs.max(axis=1).astype(float),
        }
    )
    for i, name in enumerate(classes):
        table[f"prob_{name}"] = probs[:, i].astype(float)
    if known is not None:
        table["known"] = np.asarray(known, dtype=bool)
    if ood_scores is not None:
        table["ood_score"] = np.asarray(ood_scores, dtype=float)
    return table


def roc_curves(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """One-vs-rest ROC points per class, plus the micro average under class '(micro)'."""
    frames = []
    onehot = np.eye(len(classes))[y_true]
    for i, name in enumerate(classes):
        if onehot[:, i].any() and not onehot[:, i].all():
            fpr, tpr, _ = skm.roc_curve(onehot[:, i], probs[:, i])
            frames.append(pd.DataFrame({"class": name, "fpr": fpr, "tpr": tpr}))
    fpr, tpr, _ = skm.roc_curve(onehot.ravel(), probs.ravel())
    frames.append(pd.DataFrame({"class": "(micro)", "fpr": fpr, "tpr": tpr}))
    return pd.concat(frames, ignore_index=True).round(6)


def worst_errors(y_true: np.ndarray, probs: np.ndarray, limit: int) -> list[int]:
    """Indices of misclassified images, most confidently wrong first."""
    wrong = np.flatnonzero(probs.argmax(axis=1) != y_true)
    order = np.argsort(-probs[wrong].max(axis=1), kind="stable")
    return [int(i) for i in wrong[order][:limit]]

"""Pure evaluation functions: labels and predicted probabilities in, numbers and tables out.

Predictions stay in the manifest's order end to end (nothing is shuffled), which is the bug
behind the chance-level accuracy many tutorials report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm


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
        "balanced_accuracy": _balanced_accuracy(y_true, y_pred, labels),
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


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean recall over the classes present in y_true (scikit-learn's definition, without its
    warning for classes the model never predicts)."""
    recall = skm.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    present = np.isin(labels, y_true)
    return float(recall[present].mean()) if present.any() else 0.0


# Baseline metrics worth a line in metrics.json: the headline ones a gate may judge.
BASELINE_METRICS = ("accuracy", "balanced_accuracy", "f1_macro")


def baseline_name(baseline: str, metric: str) -> str:
    return f"baseline_{baseline}_{metric}"


def required_over_baseline(linear: float, margin: float) -> float:
    """What the network must reach on a metric where the linear baseline scored `linear`:
    `margin` more, or half of the headroom left above the baseline when that is less (a
    baseline at 0.985 asks for 0.9925, not a perfect 1.0; at 1.0, matching it is enough)."""
    return min(linear + margin, linear + (1.0 - linear) / 2)


def baseline_metrics(name: str, y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The headline metrics of a baseline's predictions, keyed baseline_<name>_<metric>."""
    scores = compute_metrics(y_true, probs, top_k=probs.shape[1])
    return {baseline_name(name, m): scores[m] for m in BASELINE_METRICS}


def class_report(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support."""
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, probs.argmax(axis=1), labels=np.arange(len(classes)), zero_division=0
    )
    return pd.DataFrame(
        {"class": list(classes), "precision": p, "recall": r, "f1": f, "support": s}
    ).round(6)


def predictions_table(
    paths: Sequence[str], y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]
) -> pd.DataFrame:
    """One row per test image: what it is, what the model said, and every class probability."""
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

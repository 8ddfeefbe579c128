"""Temperature scaling (Guo et al., ICML 2017) and the numbers that say whether it worked.

A temperature T divides the logits before the softmax: one scalar fitted on the validation
split by maximum likelihood. The argmax of z / T is that of z, so no prediction changes; only
how sure the probabilities say the model is. Pure numpy, shared by export (which fits T) and
the serving runtime (which applies it): this module imports nothing heavier.
"""

from __future__ import annotations

import numpy as np

# Guo et al.'s reliability diagrams and expected calibration error use 15 equal-width bins.
ECE_BINS = 15
# log T is searched on this range (T from 0.05 to 20), wide enough for any network seen here.
LOG_T_RANGE = (np.log(0.05), np.log(20.0))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, stable for any logit size."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_loss(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true class under softmax(logits / T)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(z)), labels])) if len(z) else 0.0


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the validation log loss (golden-section search on log T; the loss
    is convex in 1/T, so unimodal on the range). 1.0 when there is nothing to fit on."""
    if len(logits) == 0 or len(np.unique(labels)) < 1:
        return 1.0
    lo, hi = LOG_T_RANGE
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = log_loss(logits, labels, np.exp(a)), log_loss(logits, labels, np.exp(b))
    for _ in range(60):  # the bracket shrinks by 0.618 a step: 60 steps reach 1e-12
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = log_loss(logits, labels, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = log_loss(logits, labels, np.exp(b))
    return round(float(np.exp((lo + hi) / 2)), 6)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per confidence bin (equal width on [0, 1]): its images, mean confidence and accuracy."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    # Bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of exactly 0 joins bin 0.
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for i in range(bins):
        inside = index == i
        n = int(inside.sum())
        rows.append(
            {
                "bin_lower": round(i / bins, 6),
                "bin_upper": round((i + 1) / bins, 6),
                "images": n,
                "confidence": float(confidence[inside].mean()) if n else None,
                "accuracy": float(correct[inside].mean()) if n else None,
            }
        )
    return rows


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Sum over bins of (bin's share of images) * |accuracy - mean confidence|."""
    total = len(labels)
    if not total:
        return 0.0
    return float(
        sum(
            row["images"] / total * abs(row["accuracy"] - row["confidence"])
            for row in reliability(probs, labels, bins)
            if row["images"]
        )
    )

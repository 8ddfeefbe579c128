"""Out-of-distribution scores: how much an input looks like the training images.

Every score is higher for inputs more like the training data, and is computed from what the
exported model already returns: its logits and its pooled features (export.serving_model).

- `msp`: the maximum softmax probability (Hendrycks & Gimpel, 2017), the baseline;
- `energy`: logsumexp of the logits (Liu et al., 2020);
- `mahalanobis`: minus the smallest Mahalanobis distance of the L2-normalised features to a
  class mean, under one shared covariance (Lee et al., 2018; normalised first as in
  Mahalanobis++, Mueller & Hein, 2025: feature norms vary far more than one Gaussian per
  class allows);
- `knn`: the cosine similarity of the L2-normalised features to their k-th nearest training
  feature (Sun et al., 2022).

A method's statistics are fitted once, by export, on training images, and saved beside the
model (saved_models/ood.npz); the acceptance threshold is set on the validation split.
Pure numpy: the serving runtime imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from image_classifier.evaluation.calibration import softmax

METHODS = ("knn", "mahalanobis", "energy", "msp")


def _normalised(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float32)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), np.float32(1e-12))


def fit(method: str, features: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    """The arrays `method` needs, from training images' features and labels."""
    if method == "knn":
        return {"bank": _normalised(features)}
    if method == "mahalanobis":
        # Ledoit-Wolf shrinkage: with fewer images than feature dimensions the plain
        # covariance is singular. Imported here: only export fits, serving only scores.
        from sklearn.covariance import LedoitWolf

        f = _normalised(features).astype(np.float64)
        means = np.zeros((n_classes, f.shape[1]))
        for c in range(n_classes):
            if np.any(labels == c):
                means[c] = f[labels == c].mean(axis=0)
        centred = f - means[labels]
        precision = LedoitWolf(assume_centered=True).fit(centred).precision_
        # P = W W^T: distances are then plain Euclidean ones between whitened vectors.
        w = np.linalg.cholesky((precision + precision.T) / 2)
        # float64, as scored (see score).
        return {"whiten": w, "means": means @ w}
    if method in ("energy", "msp"):
        return {}
    raise ValueError(f"unknown out-of-distribution method {method!r}; use one of {METHODS}")


def score(
    method: str,
    arrays: dict,
    logits: np.ndarray,
    features: np.ndarray,
    temperature: float = 1.0,
    k: int = 1,
) -> np.ndarray:
    """(n,) scores, higher = more like the training images."""
    if method == "msp":
        return softmax(logits, temperature).max(axis=1)
    if method == "energy":
        z = np.asarray(logits, dtype=np.float64)
        top = z.max(axis=1)
        return top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    if method == "knn":
        sims = _normalised(features) @ arrays["bank"].T
        kth = min(k, sims.shape[1]) - 1
        # The k-th largest similarity = the k-th nearest neighbour (unit vectors).
        return -np.partition(-sims, kth, axis=1)[:, kth].astype(np.float64)
    if method == "mahalanobis":
        # float64: the expanded square below cancels, and float32 would lose digits there.
        whiten = np.asarray(arrays["whiten"], dtype=np.float64)
        means = np.asarray(arrays["means"], dtype=np.float64)
        g = _normalised(features).astype(np.float64) @ whiten
        d2 = (g * g).sum(axis=1, keepdims=True) - 2 * g @ means.T + (means**2).sum(axis=1)
        return -d2.min(axis=1)
    raise ValueError(f"unknown out-of-distribution method {method!r}; use one of {METHODS}")


def threshold_for(in_scores: np.ndarray, accept: float) -> float:
    """The strictest threshold that still accepts (score >= threshold) at least a share
    `accept` of these in-distribution scores."""
    if not len(in_scores):
        return float("-inf")
    ordered = np.sort(np.asarray(in_scores, dtype=np.float64))
    # Rounded first: (1 - 0.95) * 20 is 1.0000000000000009 in floating point.
    rejected = int(np.floor(round((1 - accept) * len(ordered), 9)))
    return float(ordered[min(rejected, len(ordered) - 1)])


@dataclass(frozen=True)
class Detector:
    """A fitted method, its statistics and its threshold: what serving needs to say
    'none of these'."""

    method: str
    threshold: float
    arrays: dict
    k: int = 1

    def score(self, logits: np.ndarray, features: np.ndarray, temperature: float) -> np.ndarray:
        return score(self.method, self.arrays, logits, features, temperature, self.k)

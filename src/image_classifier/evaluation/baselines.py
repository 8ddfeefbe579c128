"""Baselines every evaluation reports, so a number is never read without its yardstick.

A network at 0.41 looks like a bug only next to a majority-class baseline at 0.40 and a linear
model at 1.0 on the same split. Both are pure functions of the training and test pixels.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

# The linear baseline sees images shrunk to this side (16x16x3 = 768 features): enough for
# colour and layout, small enough to fit in seconds on thousands of images.
BASELINE_SIDE = 16
# Training images the linear baseline fits on at most (a seeded sample beyond that).
MAX_FIT_IMAGES = 5000


def downsample(pixels: np.ndarray, side: int = BASELINE_SIDE) -> np.ndarray:
    """(n, h, w, c) -> (n, side*side*c) float32 block means; images smaller than side stay."""
    # Summed straight from the store's uint8 into float32: a float32 copy of every full-size
    # pixel first would be most of the time and memory.
    x = np.asarray(pixels)
    n, h, w, _ = x.shape
    if h > side:
        edges = np.linspace(0, h, side + 1).astype(int)[:-1]
        x = np.add.reduceat(x, edges, axis=1, dtype=np.float32)
        x /= np.diff(np.append(edges, h)).astype(np.float32)[None, :, None, None]
    if w > side:
        edges = np.linspace(0, w, side + 1).astype(int)[:-1]
        x = np.add.reduceat(x, edges, axis=2, dtype=np.float32)
        x /= np.diff(np.append(edges, w)).astype(np.float32)[None, None, :, None]
    return x.reshape(n, -1).astype(np.float32) / np.float32(255.0)


def majority_probs(train_labels: np.ndarray, n_test: int, n_classes: int) -> np.ndarray:
    """Always the most frequent training class, with certainty."""
    probs = np.zeros((n_test, n_classes))
    probs[:, np.bincount(train_labels, minlength=n_classes).argmax()] = 1.0
    return probs


def fit_linear(x_train: np.ndarray, y_train: np.ndarray) -> Pipeline:
    """Logistic regression on downsampled pixels (from `downsample`). Deterministic (L-BFGS
    from zero weights): no seed needed."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=300))
    with warnings.catch_warnings():
        # A baseline that stops at max_iter is still a fair, cheap yardstick.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    return model


def linear_probs(model: Pipeline, x: np.ndarray, n_classes: int) -> np.ndarray:
    """(len(x), n_classes) probabilities of `fit_linear`'s model; a class it never saw gets 0."""
    probs = np.zeros((len(x), n_classes))
    probs[:, model.classes_] = model.predict_proba(x)
    return probs

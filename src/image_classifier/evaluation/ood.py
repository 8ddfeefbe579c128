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
        return Whitened.of(arrays).score(features)
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


# Column blocks of the whitening matrix (see Whitened): 128 columns, whose rows above the
# block are skipped when they are all zero.
WHITEN_BLOCK = 128


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b (float64) in numpy's own loops, on the calling thread, not through BLAS.

    OpenBLAS spreads a product of this size over every core the process may use, and its
    threads then spin for a while waiting for more work, taking the cores from LiteRT's next
    inference and from the other web workers: with them, the predict CLI took 1.8 times as
    long on the digits, and 10 % longer on MobileNetV2 at 224 px (bench/predict.py). These
    loops also add each row's products in the same order whatever else is in the batch, so an
    image's score is the same bit for bit alone (the web app) and in a batch (export,
    evaluate, the predict CLI). A batch of large features costs more than single-threaded
    BLAS would: about 0.2 ms an image at 1280 features."""
    return np.einsum("ij,jk->ik", a, b)


@dataclass(frozen=True)
class Whitened:
    """The Mahalanobis statistics as scoring uses them, prepared once (Detector keeps them):
    float64, the class means' squared norms, and where each column block of the whitening
    matrix has its first nonzero row.

    fit's whitening matrix is a Cholesky factor, lower triangular, and whitening reads all
    of it for every image: 13 MB for MobileNetV2's 1280 features, the largest cost of a
    served request after the network. Per column block, only the rows at and below the
    block are read (about half); the products left out are exact zeros, so the sums are the
    whole product's, bit for bit (_product adds them in row order)."""

    whiten: np.ndarray
    means: np.ndarray
    means_sq: np.ndarray
    starts: tuple[int, ...]  # per column block: its first row that is not all zero

    @classmethod
    def of(cls, arrays: dict) -> Whitened:
        # float64: the expanded square in score cancels, and float32 would lose digits there.
        whiten = np.asarray(arrays["whiten"], dtype=np.float64)
        means = np.asarray(arrays["means"], dtype=np.float64)
        starts = tuple(
            a if not whiten[:a, a : a + WHITEN_BLOCK].any() else 0
            for a in range(0, whiten.shape[1], WHITEN_BLOCK)
        )
        return cls(whiten, means, (means**2).sum(axis=1), starts)

    def _whitened(self, f: np.ndarray) -> np.ndarray:
        g = np.empty((len(f), self.whiten.shape[1]))
        for block, start in enumerate(self.starts):
            a = block * WHITEN_BLOCK
            b = a + WHITEN_BLOCK
            g[:, a:b] = _product(f[:, start:], self.whiten[start:, a:b])
        return g

    def score(self, features: np.ndarray) -> np.ndarray:
        g = self._whitened(_normalised(features).astype(np.float64))
        d2 = (g * g).sum(axis=1, keepdims=True) - 2 * _product(g, self.means.T) + self.means_sq
        return -d2.min(axis=1)


@dataclass(frozen=True)
class Detector:
    """A fitted method, its statistics and its threshold: what serving needs to say
    'none of these'."""

    method: str
    threshold: float
    arrays: dict
    k: int = 1

    def __post_init__(self) -> None:
        # Prepared once, not on every request (a frozen dataclass: set past its __setattr__).
        prepared = Whitened.of(self.arrays) if self.method == "mahalanobis" else None
        object.__setattr__(self, "_whitened", prepared)

    def score(self, logits: np.ndarray, features: np.ndarray, temperature: float) -> np.ndarray:
        if self._whitened is not None:
            return self._whitened.score(features)
        return score(self.method, self.arrays, logits, features, temperature, self.k)

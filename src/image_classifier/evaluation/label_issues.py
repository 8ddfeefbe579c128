"""Suspected label errors and outliers, from out-of-sample probabilities (pure functions).

Confident learning is cleanlab's: `find_label_issues` with its default filter (prune by noise
rate) and `get_label_quality_scores` for the ranking. The probabilities it needs must be out
of sample, so each image's come from a logistic regression cross-validated on the principal
components of image features (audit.py says which). The components are computed once, from
the features read a chunk at a time, so that only they are held in memory. Outliers are
cleanlab's OutOfDistribution scores on the same components (its formula and metric, equal to
its results in tests/test_audit.py, from scikit-learn's compiled euclidean search), flagged by
the rule cleanlab's Datalab uses: an average distance to the k nearest neighbours above
Q3 + (1/t - 1) * IQR. Beyond OUTLIER_REFERENCE images the neighbours are sought among a seeded
sample of that many, so the search grows linearly with the image count instead of with its
square.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.internal.neighbor.metric import decide_default_metric
from cleanlab.rank import get_label_quality_scores
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import NearestNeighbors

# Datalab's default for feature-based outliers (cleanlab.datalab ... outlier.py).
OUTLIER_THRESHOLD = 0.37
OUTLIER_NEIGHBOURS = 10
# The fit and the neighbour search cost in proportion to the feature count; this many principal
# components keep the out-of-sample accuracy of all of them (docs/benchmarks.md, "Audit").
PCA_COMPONENTS = 64
# Images the outlier search compares each image with at most (a seeded sample beyond that).
OUTLIER_REFERENCE = 20_000
# Fewer folds than this leave a class one training image per fold: probabilities too noisy to
# call any label wrong.
MIN_FOLDS = 3


class TooSmallError(ValueError):
    """Too few images per class for cross-validation; the message says how many."""


@dataclass(frozen=True)
class Issue:
    path: str
    given: str
    suggested: str
    score: float  # cleanlab's label quality (label) or outlier score (outlier): low is worse
    kind: str  # "label" or "outlier"


def principal_components(rows, components: int = PCA_COMPONENTS, chunk: int = 4096) -> np.ndarray:
    """(n, c) float32: the first `components` principal components of the standardised rows
    (what StandardScaler then PCA give, up to each component's sign). `rows` is a 2-D array or
    anything that slices like one (data/npy.Rows, a file's rows): it is read `chunk` rows at a
    time, twice, so memory holds the components and a d x d matrix, not all the rows. No label
    is read: components from every image leave the probabilities out of sample."""
    n, d = rows.shape
    total, outer = np.zeros(d), np.zeros((d, d))
    for start in range(0, n, chunk):
        x = np.asarray(rows[start : start + chunk], dtype=np.float64)
        total += x.sum(axis=0)
        outer += x.T @ x
    mean = total / n
    covariance = outer / n - np.outer(mean, mean)
    scale = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0  # a constant feature: StandardScaler's 1
    _, vectors = np.linalg.eigh(covariance / np.outer(scale, scale))
    keep = min(components, d, n)
    vectors = vectors[:, ::-1][:, :keep]  # eigh sorts ascending: largest variance first
    # A reproducible sign: each component's largest loading positive (as svd_flip).
    vectors *= np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(keep)])
    basis = vectors / scale[:, None]
    out = np.empty((n, keep), dtype=np.float32)
    for start in range(0, n, chunk):
        x = np.asarray(rows[start : start + chunk], dtype=np.float64)
        out[start : start + len(x)] = (x - mean) @ basis
    return out


def cross_validation(labels: np.ndarray, folds: int, seed: int) -> StratifiedKFold:
    """Stratified, seeded folds for these labels: `folds`, or fewer when the smallest class
    has fewer images. Raises TooSmallError when it has fewer than MIN_FOLDS."""
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min()) if len(counts) else 0
    if len(counts) < 2 or smallest < MIN_FOLDS:
        raise TooSmallError(
            f"{smallest} image(s) in the smallest class: cross-validation needs at least "
            f"{MIN_FOLDS}"
        )
    return StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)


def fold_of(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(n,) each image's fold in cross_validation's split."""
    out = np.zeros(len(labels), dtype=np.int64)
    for k, (_, held) in enumerate(cross_validation(labels, folds, seed).split(labels, labels)):
        out[held] = k
    return out


def out_of_sample_probs(
    points: np.ndarray, labels: np.ndarray, folds: int, seed: int
) -> np.ndarray:
    """(n, classes) probabilities, each from a model that never saw that image's label, fitted
    on `points` (the principal components of the features)."""
    cv = cross_validation(labels, folds, seed)
    model = LogisticRegression(C=0.1, max_iter=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cross_val_predict(model, points, labels, cv=cv, method="predict_proba")


def label_issues(
    probs: np.ndarray, labels: np.ndarray, paths: Sequence[str], classes: Sequence[str]
) -> list[Issue]:
    """Images whose given label confident learning doubts, worst first."""
    # One process: cleanlab's default forks a worker per core for a per-class loop that takes
    # well under a second, and each fork is counted again in the stage's memory.
    flagged = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    quality = get_label_quality_scores(labels, probs)
    return [
        Issue(
            paths[i],
            classes[labels[i]],
            classes[int(probs[i].argmax())],
            float(quality[i]),
            "label",
        )
        for i in flagged
    ]


def mean_neighbour_distance(
    points: np.ndarray, k: int, reference: int = OUTLIER_REFERENCE, seed: int = 0
) -> np.ndarray:
    """Each point's mean distance to its k nearest other points among a seeded sample of
    `reference` points (all of them when there are no more), in cleanlab's default metric for
    these points (cosine above 3 dimensions). The nearest of a sample of m out of n are about
    the k*n/m nearest of all: the same density ranking, at n*m distances."""
    n = len(points)
    picked = np.sort(np.random.default_rng(seed).choice(n, min(reference, n), replace=False))
    x = np.array(points, dtype=np.float64)  # a copy, scaled in place below
    cosine = decide_default_metric(points) == "cosine"
    if cosine:
        # Between unit vectors the cosine distance is half the squared euclidean one, and the
        # same neighbours are nearest: scikit-learn's euclidean search is compiled and
        # multi-threaded, its cosine search is not (docs/benchmarks.md, "Audit").
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x /= np.where(norms > 0, norms, 1.0)  # a zero row stays zero, as sklearn's normalize
    search = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric="euclidean")
    distances, found = search.fit(x[picked]).kneighbors(x)
    if cosine:
        distances = distances**2 / 2
    # A sampled point finds itself at distance 0: not its neighbour.
    distances[picked[found] == np.arange(n)[:, None]] = np.inf
    return np.sort(distances, axis=1)[:, :k].mean(axis=1)


def outlier_scores(points: np.ndarray, k: int = OUTLIER_NEIGHBOURS) -> np.ndarray:
    """cleanlab's OutOfDistribution feature scores, exp(-mean kNN distance / its median), in
    (0, 1], low is atypical; past OUTLIER_REFERENCE images, on a sample's neighbours."""
    distance = mean_neighbour_distance(points, k, OUTLIER_REFERENCE)
    return np.exp(-distance / max(np.median(distance), 100 * np.finfo(np.float64).eps))


def outliers(
    points: np.ndarray, labels: np.ndarray, paths: Sequence[str], classes: Sequence[str]
) -> list[Issue]:
    """Images far from all others among `points` (the principal components of the
    features), most atypical first."""
    if len(points) <= OUTLIER_NEIGHBOURS:
        return []
    scores = outlier_scores(points)
    distance = -np.log(np.clip(scores, 1e-12, 1.0))  # the score is exp(-mean kNN distance)
    q1, q3 = np.percentile(distance, [25, 75])
    flagged = np.flatnonzero(distance > q3 + (1 / OUTLIER_THRESHOLD - 1) * (q3 - q1))
    order = flagged[np.argsort(scores[flagged])]
    return [
        Issue(paths[i], classes[labels[i]], classes[labels[i]], float(scores[i]), "outlier")
        for i in order
    ]

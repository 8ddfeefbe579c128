"""Suspected label errors and outliers, from out-of-sample probabilities (pure functions).

Confident learning is cleanlab's: `find_label_issues` with its default filter (prune by noise
rate) and `get_label_quality_scores` for the ranking. The probabilities it needs must be out
of sample, so each image's come from a logistic regression cross-validated on the principal
components of image features (audit.py says which). Outliers are cleanlab's
OutOfDistribution scores on the same components, flagged by the rule cleanlab's Datalab uses:
an average distance to the k nearest neighbours above Q3 + (1/t - 1) * IQR. Beyond
OUTLIER_REFERENCE images the neighbours are sought among a seeded sample of that many, so the
search grows linearly with the image count instead of with its square.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sklearn
from cleanlab.filter import find_label_issues
from cleanlab.internal.neighbor.metric import decide_default_metric
from cleanlab.outlier import OutOfDistribution
from cleanlab.rank import get_label_quality_scores
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

# Datalab's default for feature-based outliers (cleanlab.datalab ... outlier.py).
OUTLIER_THRESHOLD = 0.37
OUTLIER_NEIGHBOURS = 10
PCA_COMPONENTS = 64
NEIGHBOUR_BLOCK_MB = 128
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


def out_of_sample_probs(
    features: np.ndarray,
    labels: np.ndarray,
    folds: int,
    seed: int,
    components: int | None = PCA_COMPONENTS,
) -> np.ndarray:
    """(n, classes) probabilities, each from a model that never saw that image's label, fitted
    on the features' first `components` principal components (None: on all features)."""
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min()) if len(counts) else 0
    if len(counts) < 2 or smallest < MIN_FOLDS:
        raise TooSmallError(
            f"{smallest} image(s) in the smallest class: cross-validation needs at least "
            f"{MIN_FOLDS}"
        )
    folds = min(folds, smallest)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    # The fit's cost grows with the feature count; PCA_COMPONENTS principal components keep
    # the out-of-sample accuracy of all of them, at a small share of the time (the figures:
    # docs/benchmarks.md, "Audit").
    steps: list = [StandardScaler()]
    if components is not None:
        fold_size = len(labels) - math.ceil(len(labels) / folds)
        steps.append(PCA(min(components, features.shape[1], fold_size), random_state=seed))
    model = make_pipeline(*steps, LogisticRegression(C=0.1, max_iter=500))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cross_val_predict(model, features, labels, cv=cv, method="predict_proba")


def principal_components(features: np.ndarray, components: int) -> np.ndarray:
    standard = StandardScaler().fit_transform(features)
    return PCA(min(components, features.shape[1]), random_state=0).fit_transform(standard)


def label_issues(
    probs: np.ndarray, labels: np.ndarray, paths: Sequence[str], classes: Sequence[str]
) -> list[Issue]:
    """Images whose given label confident learning doubts, worst first."""
    flagged = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
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
    `reference` points (all of them when there are no more). The nearest of a sample of m out
    of n are about the k*n/m nearest of all: the same density ranking, at n*m distances."""
    n = len(points)
    picked = np.sort(np.random.default_rng(seed).choice(n, min(reference, n), replace=False))
    # cleanlab's default metric for these points (cosine above 3 dimensions).
    metric = decide_default_metric(points)
    search = NearestNeighbors(n_neighbors=k + 1, metric=metric).fit(points[picked])
    distances, found = search.kneighbors(points)
    # A sampled point finds itself at distance 0: not its neighbour.
    distances[picked[found] == np.arange(n)[:, None]] = np.inf
    return np.sort(distances, axis=1)[:, :k].mean(axis=1)


def outlier_scores(points: np.ndarray, k: int = OUTLIER_NEIGHBOURS) -> np.ndarray:
    """cleanlab's OutOfDistribution feature scores, exp(-mean kNN distance / its median), in
    (0, 1], low is atypical; past OUTLIER_REFERENCE images, on a sample's neighbours."""
    if len(points) <= OUTLIER_REFERENCE:
        return OutOfDistribution(params={"k": k}).fit_score(features=points)
    distance = mean_neighbour_distance(points, k, OUTLIER_REFERENCE)
    return np.exp(-distance / max(np.median(distance), 100 * np.finfo(np.float64).eps))


def outliers(
    features: np.ndarray, labels: np.ndarray, paths: Sequence[str], classes: Sequence[str]
) -> list[Issue]:
    """Images far from all others in feature space, most atypical first."""
    if len(features) <= OUTLIER_NEIGHBOURS:
        return []
    # Neighbour search costs in proportion to the feature count: on the principal components
    # as for the probabilities (docs/benchmarks.md, "Audit").
    reduced = principal_components(features, min(len(features), PCA_COMPONENTS))
    # scikit-learn computes the distances in blocks of `working_memory` MB; its default would
    # make this the pipeline's largest memory peak, and smaller blocks cost no time.
    with sklearn.config_context(working_memory=NEIGHBOUR_BLOCK_MB):
        scores = outlier_scores(reduced)
    distance = -np.log(np.clip(scores, 1e-12, 1.0))  # the score is exp(-mean kNN distance)
    q1, q3 = np.percentile(distance, [25, 75])
    flagged = np.flatnonzero(distance > q3 + (1 / OUTLIER_THRESHOLD - 1) * (q3 - q1))
    order = flagged[np.argsort(scores[flagged])]
    return [
        Issue(paths[i], classes[labels[i]], classes[labels[i]], float(scores[i]), "outlier")
        for i in order
    ]

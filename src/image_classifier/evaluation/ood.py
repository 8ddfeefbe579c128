"""Out-of-distribution scores: how much an input looks like the training images.

Every score is higher for inputs more like the training data, and is computed from what the
exported model already returns: its logits, its pooled features and, for a pretrained base,
early activations' statistics (served_graph.serving_model).

- `msp`: the maximum softmax probability (Hendrycks & Gimpel, 2017), the baseline;
- `energy`: logsumexp of the logits (Liu et al., 2020);
- `mahalanobis`: minus the smallest Mahalanobis distance of the L2-normalised features to a
  class mean, under one shared covariance (Lee et al., 2018; normalised first as in
  Mahalanobis++, Mueller & Hein, 2025: feature norms vary far more than one Gaussian per
  class allows);
- `mahalanobis_early`: the same on early activations' statistics (per channel, the square
  roots of the mean and standard deviation over the image), not normalised: how much edge
  and texture an image has is what tells a photo from blank, flat, noisy or smooth images,
  and a frozen base's last features, made for the base's own classes, blur it (Lee et al.
  2018 score several layers; docs/benchmarks.md measures the layers). The statistics are
  mostly positive and right-skewed; their signed square roots (Perronnin et al. 2010's
  power normalisation) are closer to the Gaussians the distance assumes;
- `knn`: the cosine similarity of the L2-normalised features to their k-th nearest training
  feature (Sun et al., 2022).

`auto` is `mahalanobis_early` for a model with early statistics, `mahalanobis` otherwise.
A method's statistics are fitted once, by export, on training images, and saved beside the
model (saved_models/ood.npz); the acceptance threshold is set on the validation split.

With doubt (ood.doubt), the verdict also weighs the model's confidence in its answer
(`confidence`): an image's score is then the lower of two shares of the validation images,
those whose method score is at most the image's and those whose confidence is at most its
own (each a conformal p-value; the lower of the two rejects what either test rejects). The
method's score says whether an image is like the training images, not whether the answer
is right: a wrong answer on an ordinary image is what the confidence sees (Xia & Bouganis,
2022, measure both together).
Pure numpy: the serving runtime imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from image_classifier.evaluation.calibration import softmax

METHODS = ("knn", "mahalanobis", "mahalanobis_early", "energy", "msp")


def resolve(method: str, early_width: int) -> str:
    """`method` as export fits it: `auto` chosen by whether the model returns early
    statistics (early_width > 0); a method that needs them refused without them."""
    if method == "auto":
        return "mahalanobis_early" if early_width else "mahalanobis"
    if method == "mahalanobis_early" and not early_width:
        raise ValueError(
            "ood.method mahalanobis_early needs a base with early statistics (train.model "
            "mobilenet_v2, efficientnet_b0, resnet50 or vgg19); use auto or mahalanobis"
        )
    return method


def early_statistics(early: np.ndarray) -> np.ndarray:
    """(n, 2c) float64: per channel the mean then the standard deviation, from the served
    means and means of squares (served_graph.serving_model)."""
    e = np.asarray(early, dtype=np.float64)
    c = e.shape[1] // 2
    mean = e[:, :c]
    return np.concatenate([mean, np.sqrt(np.maximum(e[:, c:] - mean * mean, 0.0))], axis=1)


def early_features(early: np.ndarray) -> np.ndarray:
    """What `mahalanobis_early` models: early_statistics' signed square roots (a swish
    activation's mean may be below 0)."""
    s = early_statistics(early)
    return np.sign(s) * np.sqrt(np.abs(s))


def confidence(logits: np.ndarray, temperature: float) -> np.ndarray:
    """(n,) -log(1 - maximum softmax): the model's confidence in its top answer, from the
    logits, so that probabilities which round to 1 in float32 stay apart."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.argmax(axis=1)
    others = z.copy()
    others[np.arange(len(z)), top] = -np.inf
    return np.logaddexp.reduce(z, axis=1) - np.logaddexp.reduce(others, axis=1)


def share_at_or_below(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per value, the share of the sorted `reference` scores at or below it, over n + 1: a
    reference score itself gets its rank over n + 1, and a value below all of them 0."""
    return np.searchsorted(reference, values, side="right") / (len(reference) + 1)


def doubt_arrays(val_scores: np.ndarray, val_confidence: np.ndarray) -> dict:
    """The validation images' method scores and confidences, sorted: what a Detector with
    doubt ranks an image against."""
    return {
        "val_scores": np.sort(np.asarray(val_scores, dtype=np.float64)),
        "val_confidence": np.sort(np.asarray(val_confidence, dtype=np.float64)),
    }


def _normalised(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float32)
    # np.linalg.norm(f, axis=1) as it computes it for real numbers, in fewer steps: each
    # request runs this.
    norm = np.sqrt(np.add.reduce(f * f, axis=1, keepdims=True))
    return f / np.maximum(norm, np.float32(1e-12))


def fit(
    method: str,
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    early: np.ndarray | None = None,
) -> dict:
    """The arrays `method` needs, from training images' features (or early statistics) and
    labels."""
    if method == "knn":
        return {"bank": _normalised(features)}
    if method in ("mahalanobis", "mahalanobis_early"):
        # Ledoit-Wolf shrinkage: with fewer images than feature dimensions the plain
        # covariance is singular. Imported here: only export fits, serving only scores.
        from sklearn.covariance import LedoitWolf

        if method == "mahalanobis":
            f = _normalised(features).astype(np.float64)
        else:
            f = early_features(early)
        means = np.zeros((n_classes, f.shape[1]))
        for c in range(n_classes):
            if np.any(labels == c):
                means[c] = f[labels == c].mean(axis=0)
        centred = f - means[labels]
        if not centred.any():
            # Every class's images are the same (one image a class, as the smallest split
            # allows): no spread within a class to estimate, so the images' spread around
            # their mean stands in for it; with none either, plain Euclidean distance.
            centred = f - f.mean(axis=0)
        if centred.any():
            precision = LedoitWolf(assume_centered=True).fit(centred).precision_
            # P = W W^T: distances are then plain Euclidean ones between whitened vectors.
            w = np.linalg.cholesky((precision + precision.T) / 2)
        else:
            w = np.eye(f.shape[1])
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
    early: np.ndarray | None = None,
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
    if method == "mahalanobis_early":
        return Whitened.of(arrays, normalise=False).score(early)
    raise ValueError(f"unknown out-of-distribution method {method!r}; use one of {METHODS}")


def rejected_count(n: int, accept: float, confidence: float | None = None) -> int:
    """How many of n in-distribution scores threshold_for's threshold rejects (ties aside).

    Without `confidence`, the most that still leaves a share `accept` of them accepted. With
    it, the threshold accepts at least `accept` of all such images, not only of these, with
    that probability over the draw of these scores: conformal prediction's
    training-conditional bound (Vovk, 2012). With k of n scores below the threshold, the
    share of the distribution below it exceeds 1 - accept exactly when at most k of the n
    scores fall below the distribution's (1 - accept)-quantile, a Binomial(n, 1 - accept)
    chance: k is the largest whose chance is at most 1 - confidence, and 0 (accepting all of
    them) when there are too few scores for any."""
    # Rounded first: (1 - 0.95) * 20 is 1.0000000000000009 in floating point.
    share = round(1 - accept, 9)
    if confidence is None:
        return min(int(np.floor(round(share * n, 9))), max(n - 1, 0))
    # Imported here: only export and evaluate set thresholds; serving only scores.
    from scipy.stats import binom

    chance = binom.cdf(np.arange(n), n, share)
    return max(int(np.searchsorted(chance, round(1 - confidence, 9), side="right")) - 1, 0)


def threshold_for(in_scores: np.ndarray, accept: float, confidence: float | None = None) -> float:
    """The strictest threshold (score >= threshold is accepted) that accepts a share `accept`
    of these in-distribution scores or, with `confidence`, of all such images with that
    probability (rejected_count)."""
    if not len(in_scores):
        return float("-inf")
    ordered = np.sort(np.asarray(in_scores, dtype=np.float64))
    return float(ordered[rejected_count(len(ordered), accept, confidence)])


# Column blocks of the whitening matrix (see Whitened): 128 columns, whose rows above the
# block are skipped when they are all zero.
WHITEN_BLOCK = 128


def _product(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a @ b (float64) in numpy's own loops, on the calling thread, not through BLAS; into
    the first columns of `out` if given.

    OpenBLAS spreads a product of this size over every core the process may use, and its
    threads then spin for a while waiting for more work, taking the cores from LiteRT's next
    inference and from the other web workers: with them, the predict CLI took 1.8 times as
    long on the digits, and 10 % longer on MobileNetV2 at 224 px (bench/predict.py). These
    loops also add each row's products in the same order whatever else is in the batch, so an
    image's score is the same bit for bit alone (the web app) and in a batch (export,
    evaluate, the predict CLI). A batch of large features costs more than single-threaded
    BLAS would: about 0.2 ms an image at 1280 features."""
    if out is None:
        return np.einsum("ij,jk->ik", a, b)
    return np.einsum("ij,jk->ik", a, b, out=out[:, : b.shape[1]])


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
    means_sq: np.ndarray
    twice_means_t: np.ndarray  # 2 * means.T: doubling is exact, so 2 (g @ m) = g @ (2 m)
    starts: tuple[int, ...]  # per column block: its first row that is not all zero
    normalise: bool = True  # L2-normalised final features; False: early statistics

    @classmethod
    def of(cls, arrays: dict, normalise: bool = True) -> Whitened:
        # float64: the expanded square in score cancels, and float32 would lose digits there.
        whiten = np.asarray(arrays["whiten"], dtype=np.float64)
        means = np.asarray(arrays["means"], dtype=np.float64)
        starts = tuple(
            a if not whiten[:a, a : a + WHITEN_BLOCK].any() else 0
            for a in range(0, whiten.shape[1], WHITEN_BLOCK)
        )
        twice_means_t = (2 * means).T
        return cls(whiten, (means**2).sum(axis=1), twice_means_t, starts, normalise)

    def _whitened(self, f: np.ndarray) -> np.ndarray:
        if len(self.starts) == 1:
            return _product(f, self.whiten)
        g = np.empty((len(f), self.whiten.shape[1]))
        for block, start in enumerate(self.starts):
            a = block * WHITEN_BLOCK
            _product(f[:, start:], self.whiten[start:, a : a + WHITEN_BLOCK], g[:, a:])
        return g

    def score(self, features: np.ndarray) -> np.ndarray:
        """Features (normalise) or the served early means and means of squares."""
        f = _normalised(features) if self.normalise else early_features(features)
        g = self._whitened(f.astype(np.float64))
        d2 = (g * g).sum(axis=1, keepdims=True) - _product(g, self.twice_means_t)
        d2 += self.means_sq
        return -d2.min(axis=1)


# Images Detector.score scores at a time (see there).
SCORE_ROWS = 1024


@dataclass(frozen=True)
class Detector:
    """A fitted method, its statistics and its threshold: what serving needs to say
    'none of these'. With `doubt`, arrays also hold doubt_arrays' and the score is the lower
    share (the module's docstring)."""

    method: str
    threshold: float
    arrays: dict
    k: int = 1
    doubt: bool = False

    def __post_init__(self) -> None:
        # Prepared once, not on every request (a frozen dataclass: set past its __setattr__).
        prepared = None
        if self.method in ("mahalanobis", "mahalanobis_early"):
            prepared = Whitened.of(self.arrays, normalise=self.method == "mahalanobis")
        object.__setattr__(self, "_whitened", prepared)

    def score(
        self,
        logits: np.ndarray,
        features: np.ndarray,
        temperature: float,
        early: np.ndarray | None = None,
    ) -> np.ndarray:
        """(n,) scores, SCORE_ROWS images at a time: scoring makes several float64 copies
        of its inputs, which for a whole split (export's validation images) would grow the
        stage's memory with the data. Each image's score does not depend on the others'."""
        if len(logits) <= SCORE_ROWS:
            return self._score(logits, features, temperature, early)
        parts = []
        for i in range(0, len(logits), SCORE_ROWS):
            rows = slice(i, i + SCORE_ROWS)
            some = [None if a is None else a[rows] for a in (features, early)]
            parts.append(self._score(logits[rows], some[0], temperature, some[1]))
        return np.concatenate(parts)

    def _score(
        self,
        logits: np.ndarray,
        features: np.ndarray,
        temperature: float,
        early: np.ndarray | None = None,
    ) -> np.ndarray:
        own = self.method_score(logits, features, temperature, early)
        if not self.doubt:
            return own
        sure = confidence(logits, temperature)
        return np.minimum(
            share_at_or_below(self.arrays["val_scores"], own),
            share_at_or_below(self.arrays["val_confidence"], sure),
        )

    def method_score(
        self,
        logits: np.ndarray,
        features: np.ndarray,
        temperature: float,
        early: np.ndarray | None = None,
    ) -> np.ndarray:
        """The method's own score, without doubt."""
        if self._whitened is not None:
            return self._whitened.score(features if self._whitened.normalise else early)
        return score(self.method, self.arrays, logits, features, temperature, self.k, early)

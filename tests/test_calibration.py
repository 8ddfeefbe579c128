"""Temperature scaling: the fit finds the temperature that generated the labels, never changes
a prediction, and the served model applies it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss

from image_classifier.evaluation import calibration
from image_classifier.litert.classifier import Classifier


def labelled_logits(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): a perfectly calibrated model."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.5, (n, classes))
    probs = calibration.softmax(logits)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return logits, labels


@pytest.mark.parametrize("overconfidence", [0.5, 1.0, 3.0])
def test_the_fit_recovers_the_temperature_that_made_the_labels(overconfidence):
    logits, labels = labelled_logits(20_000, 5, seed=1)
    # A network whose logits are `overconfidence` times the calibrated ones needs T = that.
    t = calibration.fit_temperature(logits * overconfidence, labels)
    assert t == pytest.approx(overconfidence, rel=0.05)


def test_the_fitted_temperature_minimises_the_log_loss():
    logits, labels = labelled_logits(3_000, 4, seed=2)
    logits *= 2.0
    t = calibration.fit_temperature(logits, labels)
    best = calibration.log_loss(logits, labels, t)
    for other in (t * 0.9, t * 1.1, 1.0):
        assert best < calibration.log_loss(logits, labels, other)


def test_log_loss_is_scikit_learns_on_the_scaled_softmax():
    logits, labels = labelled_logits(500, 3, seed=3)
    for t in (0.5, 1.0, 2.0):
        expected = sk_log_loss(labels, calibration.softmax(logits, t), labels=[0, 1, 2])
        assert calibration.log_loss(logits, labels, t) == pytest.approx(expected, rel=1e-9)


def test_softmax_is_stable_for_huge_logits_and_keeps_the_argmax():
    logits = np.array([[1e4, 0.0, -1e4], [3.0, 3.5, -2.0]])
    for t in (0.05, 1.0, 20.0):
        p = calibration.softmax(logits, t)
        assert np.isfinite(p).all()
        np.testing.assert_allclose(p.sum(axis=1), 1.0)
        np.testing.assert_array_equal(p.argmax(axis=1), [0, 1])


def test_nothing_to_fit_on_gives_temperature_one():
    assert calibration.fit_temperature(np.empty((0, 3)), np.empty(0, dtype=int)) == 1.0


def test_ece_is_the_gap_between_confidence_and_accuracy_per_bin():
    # 10 images at confidence 0.9, 6 right: one bin, gap 0.3. 10 at 0.55, 5 right: gap 0.05.
    probs = np.array([[0.9, 0.1]] * 10 + [[0.55, 0.45]] * 10)
    labels = np.array([0] * 6 + [1] * 4 + [0] * 5 + [1] * 5)
    assert calibration.expected_calibration_error(probs, labels) == pytest.approx(
        0.5 * 0.3 + 0.5 * 0.05
    )
    rows = calibration.reliability(probs, labels)
    assert len(rows) == calibration.ECE_BINS == 15
    filled = [r for r in rows if r["images"]]
    assert [(r["images"], r["accuracy"]) for r in filled] == [(10, 0.5), (10, 0.6)]
    assert filled[1]["bin_lower"] < 0.9 <= filled[1]["bin_upper"]


def test_a_calibrated_model_has_a_small_ece_and_an_overconfident_one_does_not():
    logits, labels = labelled_logits(20_000, 5, seed=4)
    honest = calibration.expected_calibration_error(calibration.softmax(logits), labels)
    proud = calibration.expected_calibration_error(calibration.softmax(logits * 3), labels)
    assert honest < 0.01 < 0.1 < proud
    t = calibration.fit_temperature(logits * 3, labels)
    fixed = calibration.expected_calibration_error(calibration.softmax(logits * 3, t), labels)
    assert fixed < 0.01


def test_the_served_model_applies_its_temperature_and_keeps_every_prediction(model_dir):
    clf = Classifier.from_dir(model_dir)
    assert clf.card.temperature != 1.0  # the fixture's fit moved it
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (6, 12, 12, 1)).astype(np.uint8)
    out = clf.run(x)
    np.testing.assert_allclose(
        out.probabilities, calibration.softmax(out.logits, clf.card.temperature), atol=1e-12
    )
    np.testing.assert_array_equal(clf.predict(x), out.probabilities)
    np.testing.assert_array_equal(
        out.probabilities.argmax(axis=1), calibration.softmax(out.logits).argmax(axis=1)
    )

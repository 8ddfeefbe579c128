"""training/lr_find.py: the learning-rate range test behind `train.learning_rate: auto`."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from dvclive import Live

from image_classifier.params import parse_params
from image_classifier.training import fit_loop, lr_find

from helpers import CLASSES, colours


def test_smoothing_is_bias_corrected():
    # An uncorrected average starts at (1 - beta) * loss: near zero, a false minimum.
    assert np.allclose(lr_find.smooth(np.full(10, 2.5), beta=0.9), 2.5)
    steps = lr_find.smooth(np.array([1.0, 0.0]), beta=0.5)
    assert steps.tolist() == pytest.approx([1.0, 1 / 3])


def test_the_valley_is_halfway_down_the_longest_descent():
    rates = lr_find.rates(40)
    # Flat, then falling from index 10 to 25, then diverging: the shape of a real test.
    curve = np.concatenate(
        [np.full(10, 2.3), np.linspace(2.3, 0.5, 16)[1:], 0.5 * 1.5 ** np.arange(1, 16)]
    )
    curve[:10] += np.linspace(0, 1e-3, 10)[::-1]  # the flat part drifts down a little
    rate, fallback = lr_find.choose(rates, curve)
    chosen = int(np.argmin(np.abs(rates - rate)))
    assert not fallback
    assert 10 <= chosen <= 25  # on the descent, before the loss is lowest
    assert rate < rates[np.argmin(curve)]


@pytest.mark.parametrize("curve", [np.full(30, 1.0), np.linspace(1, 5, 30)])
def test_no_descent_falls_back(curve):
    rate, fallback = lr_find.choose(lr_find.rates(30), curve)
    assert fallback and rate == lr_find.FALLBACK


def test_the_test_stops_when_the_loss_diverges():
    rates_seen = []

    class Exploding:
        def train_on_batch(self, x, y, class_weight=None):
            return 1.0 if rates_seen[-1] < 0.01 else 1e6 * rates_seen[-1]

    batches = iter(lambda: (None, None), 0)
    found = lr_find.range_test(Exploding(), batches, 50, rates_seen.append)
    assert len(found.rates) < 50 and found.rates[-1] >= 0.01
    assert found.rates == pytest.approx(rates_seen)
    assert all(np.isfinite(p["smoothed_loss"]) for p in found.points())


def test_steps_are_a_bounded_share_of_the_fit():
    assert lr_find.steps_for(300) == lr_find.MIN_STEPS
    assert lr_find.steps_for(1000) == 50
    assert lr_find.steps_for(10**6) == lr_find.MAX_STEPS


def _params(rate):
    raw = {"image": {"size": 8, "color_mode": "rgb"}}
    raw["train"] = {"epochs": 3, "min_steps": 0, "batch_size": 4, "learning_rate": rate}
    return parse_params(raw)


def test_auto_trains_exactly_as_the_rate_it_chose(tmp_path):
    """The range test writes its curve and rate; the fit after it starts from the same
    weights as a fit at that fixed rate, and ends with the same ones."""
    train, val = colours(8, 8, 0), colours(3, 8, 1)
    with Live(dir=str(tmp_path), dvcyaml=None, save_dvc_exp=False) as live:
        auto = fit_loop.fit(_params("auto"), train, val, CLASSES, live)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    chosen = summary["lr_find"]["learning_rate"]
    curve = json.loads((tmp_path / "plots/custom/lr_find.json").read_text())
    assert len(curve) == summary["lr_find"]["steps"] >= lr_find.MIN_STEPS - 5
    assert 0 < summary["fit"]["train_accuracy"] <= 1
    fixed = fit_loop.fit(_params(chosen), train, val, CLASSES)
    for a, b in zip(auto.get_weights(), fixed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    keras.backend.clear_session()

"""evaluation/diagnosis.py: underfitting or overfitting, and the warning that names the params."""

from __future__ import annotations

import pytest

from image_classifier.evaluate import check_margin
from image_classifier.evaluation import diagnosis


@pytest.mark.parametrize(
    ("train", "val", "case"),
    [
        (0.84, 0.80, "underfitting"),  # the training images themselves are not learnt
        (0.97, 0.95, "underfitting"),
        (0.26, 0.12, "underfitting"),  # near chance: a gap, but no fit to speak of
        (1.00, 0.71, "overfitting"),  # learnt by heart, not in general
        (0.99, 0.97, "overfitting"),  # fits: what is left is the gap to unseen images
    ],
)
def test_the_case_follows_the_fit(train, val, case):
    assert diagnosis.diagnose(train, val).case == case


def test_the_warning_names_the_case_and_the_params_to_change():
    scores = {"accuracy": 0.70, "baseline_linear_accuracy": 0.80}
    under = diagnosis.from_train_metrics(
        {"fit": {"train_accuracy": 0.85}, "eval": {"accuracy": 0.78}}
    )
    text = check_margin(scores, "accuracy", 0.02, under)
    assert "underfitting" in text and "0.85" in text and "train.min_steps" in text
    over = diagnosis.from_train_metrics({"fit": {"train_accuracy": 1.0}, "eval": {"accuracy": 0.7}})
    text = check_margin(scores, "accuracy", 0.02, over)
    assert "overfitting" in text and "train.augment" in text and "mobilenet_v2" in text
    # A network that beats the baseline gets no warning, whatever the fit.
    assert check_margin({**scores, "accuracy": 0.9}, "accuracy", 0.02, under) is None


def test_no_diagnosis_without_the_fit_figures():
    assert diagnosis.from_train_metrics({"eval": {"accuracy": 0.7}}) is None
    assert diagnosis.from_train_metrics({"fit": {"train_accuracy": 0.9}}) is None


def test_the_advice_leaves_out_what_is_already_set():
    from image_classifier.params import TrainParams

    auto = diagnosis.diagnose(0.8, 0.7, TrainParams()).advice
    fixed = diagnosis.diagnose(0.8, 0.7, TrainParams(learning_rate=0.01)).advice
    assert "learning_rate: auto" not in auto and "learning_rate: auto" in fixed
    pretrained = TrainParams(model="mobilenet_v2", weights="imagenet", fine_tune_layers=20)
    over = diagnosis.diagnose(1.0, 0.6, pretrained).advice
    assert "mobilenet_v2" not in over and "train.fine_tune_layers" in over

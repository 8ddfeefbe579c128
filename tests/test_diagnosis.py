"""evaluation/diagnosis.py: underfitting or overfitting, and the warning that names the params."""

from __future__ import annotations

import json

import numpy as np
import pytest

from image_classifier import evaluate
from image_classifier.evaluate import check_model
from image_classifier.evaluation import diagnosis
from image_classifier.params import parse_params


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
    text = check_model(scores, "accuracy", 0.02, 3, under)
    assert "underfitting" in text and "0.85" in text and "train.min_steps" in text
    over = diagnosis.from_train_metrics({"fit": {"train_accuracy": 1.0}, "eval": {"accuracy": 0.7}})
    text = check_model(scores, "accuracy", 0.02, 3, over)
    assert "overfitting" in text and "train.augment" in text and "mobilenet_v2" in text
    # A network that beats the baseline gets no warning, whatever the fit.
    assert check_model({**scores, "accuracy": 0.9}, "accuracy", 0.02, 3, under) is None


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


class Split:
    """A test split as evaluate.write_reports reads it: labels, paths and pixels."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels
        self.paths = [f"data/raw/{y}/{i}.jpg" for i, y in enumerate(labels)]

    def read(self, indices) -> np.ndarray:
        return np.zeros((len(indices), 8, 8, 3), dtype=np.uint8)


def test_evaluate_warns_on_the_real_case_no_better_than_chance(tmp_path, monkeypatch):
    """600 photo-like JPEGs in 4 classes: 0.28 on the test split, train 0.98 (overfit), chance
    0.25, the linear baseline 0.20. The network beats the linear baseline, and evaluate still
    warns, says it overfits, and records the classes it scored for the gate."""
    monkeypatch.chdir(tmp_path)
    classes = ["circle", "square", "star", "triangle"]
    labels = np.repeat(np.arange(4), 25)
    right = np.zeros(100, dtype=bool)
    right[np.arange(0, 100, 25)[:, None] + np.arange(7)] = True  # 28 of 100, 7 a class
    predicted = np.where(right, labels, (labels + 1) % 4)
    probs = np.full((100, 4), 0.1)
    probs[np.arange(100), predicted] = 0.7
    extra = {
        "baseline_majority_accuracy": 0.25,
        "baseline_linear_accuracy": 0.2,
    }
    live = tmp_path / "reports" / "train"
    live.mkdir(parents=True)
    (live / "metrics.json").write_text(
        json.dumps({"fit": {"train_accuracy": 0.98}, "eval": {"accuracy": 0.3}})
    )
    scores = evaluate.write_reports(Split(labels), probs, classes, parse_params({}), extra, "v7")
    assert scores["accuracy"] == pytest.approx(0.28)
    evaluated = json.loads((tmp_path / "reports/eval/evaluated_model.json").read_text())
    assert evaluated["model_version"] == "v7" and evaluated["classes"] == classes
    warning = evaluated["warning"]
    assert warning.startswith("the network is no better than chance: accuracy 0.2800 vs chance")
    assert "logistic regression" not in warning  # it does beat the linear baseline
    assert "overfitting" in warning and evaluated["diagnosis"]["case"] == "overfitting"
    # Clearly better than guessing: no warning, but the classes all the same.
    probs = np.full((100, 4), 0.1)
    probs[np.arange(100), labels] = 0.7
    evaluate.write_reports(Split(labels), probs, classes, parse_params({}), extra, "v8")
    evaluated = json.loads((tmp_path / "reports/eval/evaluated_model.json").read_text())
    assert evaluated["warning"] is None and evaluated["classes"] == classes


def test_both_shortfalls_are_named_in_one_warning():
    scores = {"accuracy": 0.26, "n_test": 100, "baseline_linear_accuracy": 0.4}
    text = check_model(scores, "accuracy", 0.02, 4)
    assert text.startswith("the network is no better than chance")
    assert "; and the network's accuracy 0.2600 does not beat a logistic regression" in text
    assert text.endswith(
        "the model is undertrained or misconfigured; the quality gate will refuse it"
    )

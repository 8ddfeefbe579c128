"""Calibration and out-of-distribution scores (evaluation/uncertainty.py) on constructed inputs
with known answers, and the evaluate stage's reports of them on the tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from image_classifier.evaluation import calibration, uncertainty

from conftest import PatternSplit

# Ten two-class images, the first class right on nine: softmax(LOGITS) = (0.9, 0.1) for each.
LOGITS = np.tile(np.log([0.9, 0.1]), (10, 1))
LABELS = np.array([0] * 9 + [1])


def test_calibration_scores_before_and_after_a_temperature():
    """At T = 1 the top probability 0.9 matches the accuracy 0.9: ECE 0. At T = 2 the softmax
    is sqrt(0.9) / (sqrt(0.9) + sqrt(0.1)) = 0.75: ECE |0.9 - 0.75| = 0.15, and the log loss
    is the mean -log of the true class's probability either way."""
    probs = calibration.softmax(LOGITS, 2.0)
    assert probs[0, 0] == pytest.approx(0.75)
    scores = uncertainty.calibration_scores(LOGITS, probs, LABELS, 2.0)
    assert scores["ece_uncalibrated"] == pytest.approx(0.0, abs=1e-6)
    assert scores["ece"] == pytest.approx(0.15, abs=1e-6)
    assert scores["log_loss_uncalibrated"] == pytest.approx(
        -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)), abs=1e-6
    )
    assert scores["log_loss"] == pytest.approx(
        -(0.9 * math.log(0.75) + 0.1 * math.log(0.25)), abs=1e-6
    )
    assert scores["temperature"] == 2.0
    assert uncertainty.same_top1(probs, LOGITS).all()


def test_reliability_table_has_every_bin_before_and_after():
    """Fifteen bins of width 1/15. After (T = 2) all ten images sit at 0.75, bin 11 (0.733 to
    0.8); before (T = 1) at 0.9, bin 13 (0.867 to 0.933). Empty bins: NaN, zero images."""
    table = uncertainty.reliability_table(LOGITS, calibration.softmax(LOGITS, 2.0), LABELS)
    assert len(table) == 15
    assert table["bin_lower"].iloc[11] == pytest.approx(11 / 15, abs=1e-6)
    assert table["images"].tolist() == [0] * 11 + [10] + [0] * 3
    assert table["images_uncalibrated"].tolist() == [0] * 13 + [10] + [0]
    row = table.iloc[11]
    assert (row["confidence"], row["accuracy"]) == (pytest.approx(0.75), pytest.approx(0.9))
    row = table.iloc[13]
    assert row["confidence_uncalibrated"] == pytest.approx(0.9)
    assert row["accuracy_uncalibrated"] == pytest.approx(0.9)
    assert table["confidence"].drop(index=11).isna().all()
    assert table["accuracy_uncalibrated"].drop(index=13).isna().all()


def test_auroc_counts_pairs_in_distribution_above():
    # in: 1 2 3 4 against out: 0 (below all four) and 2.5 (below two): 6 of 8 pairs
    assert uncertainty.auroc([1, 2, 3, 4], [0, 2.5]) == pytest.approx(0.75)
    assert uncertainty.auroc([1, 1], [1]) == pytest.approx(0.5)  # ties count half
    assert uncertainty.auroc([5, 6], [1, 2]) == 1.0
    assert uncertainty.auroc([1, 2], [5, 6]) == 0.0
    # infinite scores rank too: 0.4 is above -inf only, inf above both
    assert uncertainty.auroc([0.4, np.inf], [-np.inf, 0.5]) == pytest.approx(0.75)
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 300), np.round(rng.normal(0, 1, 200), 1)
    expected = roc_auc_score(np.r_[np.ones(300), np.zeros(200)], np.r_[pos, neg])
    assert uncertainty.auroc(pos, neg) == pytest.approx(expected, abs=1e-12)


def test_fpr_at_95_tpr_reads_the_threshold_that_keeps_95_percent():
    inside = np.arange(1, 101)  # the 95th highest is 6: 6..100 are accepted
    assert uncertainty.threshold_at_tpr(inside) == 6
    assert uncertainty.threshold_at_tpr(np.arange(1, 21)) == 2  # 19 of 20 = 0.95 exactly
    assert uncertainty.fpr_at_tpr(inside, [5.5, 6, 50, 200]) == pytest.approx(0.75)
    assert uncertainty.fpr_at_tpr(inside, [-1, 0, 5]) == 0.0
    assert uncertainty.rejected([1, 2, 3, 4], 3) == 0.5


def test_known_scores_judge_the_test_split_at_the_served_threshold():
    probs = np.eye(3)[[0, 1, 2, 0]]
    labels = np.array([0, 1, 1, 0])  # the third is wrong
    scores = uncertainty.known_scores(np.array([5.0, 4.0, 1.0, 3.0]), 2.0, probs, labels)
    assert scores == {"ood_threshold": 2.0, "test_rejected": 0.25, "accuracy_known": 1.0}
    rejected_all = uncertainty.known_scores(np.zeros(4), 2.0, probs, labels)
    assert rejected_all["test_rejected"] == 1.0 and "accuracy_known" not in rejected_all


def test_ood_scores_per_set_and_pooled():
    test = uncertainty.SetScores(np.arange(1.0, 21.0), np.linspace(0.6, 1.0, 20))
    sets = {
        "far": uncertainty.SetScores(np.zeros(10), np.full(10, 0.5)),
        "near": uncertainty.SetScores(np.array([0.0, 25.0]), np.array([0.99, 1.0])),
    }
    pooled, per_set = uncertainty.ood_scores(test, sets, threshold=1.5)
    assert per_set["far"] == {
        "images": 10,
        "auroc": 1.0,
        "fpr_at_95_tpr": 0.0,
        "rejected": 1.0,
        "auroc_msp": 1.0,
        "fpr_at_95_tpr_msp": 0.0,
    }
    assert per_set["near"]["auroc"] == 0.5 and per_set["near"]["rejected"] == 0.5
    # pooled: 12 images, 11 of them below every test image, one above all
    assert pooled["ood_images"] == 12
    assert pooled["ood_auroc"] == pytest.approx(11 / 12, abs=1e-6)
    assert pooled["ood_rejected"] == pytest.approx(11 / 12, abs=1e-6)
    assert pooled["ood_fpr_at_95_tpr"] == pytest.approx(1 / 12, abs=1e-6)
    assert set(pooled) == {f"ood_{k}" for k in per_set["far"]}
    assert uncertainty.ood_scores(test, {}, 1.5) == ({}, {})


def test_evaluate_reports_calibration_and_ood_on_the_tiny_model(reports_dir):
    """The stage's files agree with each other: the reliability rows and ECE recomputed from
    predictions.csv's probabilities, `known` and `ood_score` per image, the unknown share and
    the accuracy on known images from them, every default out-of-distribution set measured."""
    from image_classifier.params import OodParams

    scores = json.loads((reports_dir / "metrics.json").read_text())
    table = pd.read_csv(reports_dir / "eval/predictions.csv")
    classes = [c.removeprefix("prob_") for c in table.columns if c.startswith("prob_")]
    probs = table[[f"prob_{c}" for c in classes]].to_numpy()
    labels = np.array([classes.index(a) for a in table["actual"]])
    reliability = pd.read_csv(reports_dir / "eval/reliability.csv")
    expected = pd.DataFrame(calibration.reliability(probs, labels))
    assert reliability["images"].tolist() == expected["images"].tolist()
    filled = reliability["images"] > 0
    assert np.allclose(reliability["accuracy"][filled], expected["accuracy"][filled], atol=1e-6)
    assert reliability["confidence"][~filled].isna().all()
    assert reliability["images_uncalibrated"].sum() == scores["n_test"] == len(table)
    gaps = (reliability["accuracy"] - reliability["confidence"]).abs()[filled]
    assert scores["ece"] == pytest.approx(
        float((reliability["images"][filled] / len(table) * gaps).sum()), abs=1e-5
    )
    assert scores["temperature"] > 0 and scores["log_loss"] >= 0
    assert table["known"].dtype == bool and table["ood_score"].notna().all()
    assert scores["test_rejected"] == pytest.approx(1 - table["known"].mean(), abs=1e-6)
    if table["known"].any():
        known = table[table["known"]]
        right = (known["actual"] == known["predicted"]).mean()
        assert scores["accuracy_known"] == pytest.approx(right, abs=1e-6)
    assert table["known"].tolist() == (table["ood_score"] >= scores["ood_threshold"]).tolist()
    sets = json.loads((reports_dir / "eval/ood.json").read_text())["sets"]
    assert list(sets) == list(OodParams().sets)
    assert all(figures["images"] == 4 for figures in sets.values())
    assert scores["ood_images"] == 4 * len(sets)
    for key in ("ood_auroc", "ood_auroc_msp", "ood_rejected", "ood_fpr_at_95_tpr"):
        assert 0 <= scores[key] <= 1, key
    for name in ("reliability.png", "ood_scores.png"):
        assert (reports_dir / "eval" / name).stat().st_size > 0
    assert (reports_dir / "model_card.md").read_text().startswith("---\n")


def write_reports(split, probs, served, tmp_path, monkeypatch):
    from image_classifier import evaluate
    from image_classifier.params import parse_params

    monkeypatch.chdir(tmp_path)
    classes = ["cat", "crème brûlée", "dog"]
    return evaluate.write_reports(split, probs, classes, parse_params({}), {}, "v1", served)


def test_a_changed_top_class_stops_the_stage(tmp_path, monkeypatch):
    """Temperature scaling cannot change a prediction: probabilities whose top class is not
    the logits' are a bug, and nothing is written."""
    from image_classifier import evaluate
    from image_classifier.cli import StageError

    split = PatternSplit(2)
    logits = np.eye(3)[split.labels] * 4
    probs = calibration.softmax(logits, 1.5)
    probs[0] = probs[0][::-1]  # its top class moves
    served = evaluate.Served(logits, np.zeros(6), 1.5, -1.0)
    with pytest.raises(StageError, match=r"top class differs .* on 1 test images"):
        write_reports(split, probs, served, tmp_path, monkeypatch)
    assert not (tmp_path / "reports").exists()


def test_no_ood_sets_no_ood_keys(tmp_path, monkeypatch):
    """ood.sets empty: the calibration and the detector's verdicts on the test split are
    reported, nothing about out-of-distribution images, and the card says so."""
    from image_classifier import evaluate

    split = PatternSplit(2)
    logits = np.eye(3)[split.labels] * 4
    served = evaluate.Served(logits, np.array([1.0, 2, 3, 4, 5, 6]), 1.5, 2.5)
    scores = write_reports(split, calibration.softmax(logits, 1.5), served, tmp_path, monkeypatch)
    assert scores["test_rejected"] == pytest.approx(2 / 6, abs=1e-6)
    assert scores["accuracy_known"] == 1.0 and "ece" in scores
    assert not [key for key in scores if key.startswith("ood_") and key != "ood_threshold"]
    assert json.loads((tmp_path / "reports/eval/ood.json").read_text()) == {"sets": {}}
    card = (tmp_path / "reports/model_card.md").read_text()
    assert "`ood.sets` in params.yaml is empty" in card

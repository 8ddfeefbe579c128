import numpy as np
import pytest

from image_classifier.evaluation import metrics

Y = np.array([0, 0, 1, 1, 2, 2])
P = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.3, 0.6, 0.1],  # wrong: 0 -> 1 (0.6)
        [0.1, 0.8, 0.1],
        [0.2, 0.7, 0.1],
        [0.1, 0.1, 0.8],
        [0.9, 0.07, 0.03],  # wrong: 2 -> 0 (0.9), and not in the top 2
    ]
)


def test_headline_metrics_match_hand_computed_values():
    m = metrics.compute_metrics(Y, P, top_k=2)
    assert m["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert m["recall_macro"] == pytest.approx((0.5 + 1 + 0.5) / 3, abs=1e-6)
    assert m["top_2_accuracy"] == pytest.approx(5 / 6, abs=1e-6)
    assert m["n_test"] == 6
    assert 0 < m["cohen_kappa"] < 1 and 0 < m["roc_auc_ovr"] <= 1


def test_perfect_predictions_score_one():
    m = metrics.compute_metrics(Y, np.eye(3)[Y], top_k=2)
    assert m["accuracy"] == m["f1_macro"] == m["cohen_kappa"] == m["roc_auc_ovr"] == 1.0
    assert m["top_2_accuracy"] == 1.0


def test_top_k_only_when_k_is_below_the_class_count():
    assert not any(key.startswith("top_") for key in metrics.compute_metrics(Y, P, top_k=3))


def test_two_classes_do_not_crash():
    y = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    m = metrics.compute_metrics(y, probs, top_k=3)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["roc_auc"] == pytest.approx(5 / 6)  # positive class: the second column
    assert "roc_auc_ovr" not in m
    assert not any(key.startswith("top_") for key in m)


def test_tables_keep_input_order():
    table = metrics.predictions_table([f"f{i}" for i in range(6)], Y, P, ["a", "b", "c"])
    assert table["path"].tolist() == [f"f{i}" for i in range(6)]
    assert table["predicted"].tolist() == ["a", "b", "b", "b", "c", "a"]
    assert table["prob_c"].tolist() == P[:, 2].tolist()
    report = metrics.class_report(Y, P, ["a", "b", "c"])
    assert report["support"].tolist() == [2, 2, 2]
    assert report.loc[1, "recall"] == 1.0


def test_worst_errors_most_confident_first():
    assert metrics.worst_errors(Y, P, limit=5) == [5, 1]
    assert metrics.worst_errors(Y, P, limit=1) == [5]


def test_roc_curves_have_each_class_and_micro_average():
    roc = metrics.roc_curves(Y, P, ["a", "b", "c"])
    assert set(roc["class"]) == {"a", "b", "c", "(micro)"}
    assert roc["fpr"].between(0, 1).all() and roc["tpr"].between(0, 1).all()


def test_balanced_accuracy_is_mean_recall_over_present_classes():
    # 18 of class 0 all right, 2 of class 1 both wrong: accuracy 0.9, balanced 0.5.
    y = np.array([0] * 18 + [1] * 2)
    probs = np.tile([0.9, 0.1, 0.0], (20, 1))
    m = metrics.compute_metrics(y, probs, top_k=1)
    assert m["accuracy"] == pytest.approx(0.9)
    assert m["balanced_accuracy"] == pytest.approx(0.5)  # class 2 is absent: not averaged


def test_baseline_metrics_are_prefixed_headline_metrics():
    m = metrics.baseline_metrics("linear", Y, P)
    assert m == {
        "baseline_linear_accuracy": pytest.approx(4 / 6, abs=1e-6),
        "baseline_linear_balanced_accuracy": pytest.approx(4 / 6, abs=1e-6),
        "baseline_linear_f1_macro": metrics.compute_metrics(Y, P, 2)["f1_macro"],
    }


def test_evaluate_warns_only_when_the_network_does_not_beat_the_linear_baseline():
    from image_classifier.evaluate import check_margin

    scores = {"accuracy": 0.41, "baseline_linear_accuracy": 1.0}
    assert "does not beat a logistic regression" in check_margin(scores, "accuracy", 0.02)
    assert check_margin({**scores, "accuracy": 1.0}, "accuracy", 0.02) is None  # at the ceiling
    scores = {"accuracy": 0.9, "baseline_linear_accuracy": 0.89}
    assert check_margin(scores, "accuracy", 0.02) is not None
    assert check_margin(scores, "accuracy", 0.01) is None

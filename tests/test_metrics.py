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


def test_predictions_table_adds_the_detector_verdicts_after_the_probabilities():
    """`known` (what the drift monitor's reference counts) and `ood_score` per image, after the
    class probabilities; without them the table is as before."""
    known = np.array([True, True, False, True, True, False])
    scores = np.array([3.0, 2.5, -1.0, 4.0, 2.0, -7.5])
    table = metrics.predictions_table(
        [f"f{i}" for i in range(6)], Y, P, ["a", "b", "c"], known=known, ood_scores=scores
    )
    assert table.columns[-2:].tolist() == ["known", "ood_score"]
    assert table["known"].tolist() == known.tolist()
    assert table["ood_score"].tolist() == scores.tolist()
    assert "known,ood_score" in table.to_csv(index=False).splitlines()[0]
    plain = metrics.predictions_table([f"f{i}" for i in range(6)], Y, P, ["a", "b", "c"])
    assert "known" not in plain and plain.columns[-1] == "prob_c"


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
    from image_classifier.evaluate import check_model

    scores = {"accuracy": 0.41, "baseline_linear_accuracy": 1.0}
    assert "does not beat a logistic regression" in check_model(scores, "accuracy", 0.02, None)
    assert check_model({**scores, "accuracy": 1.0}, "accuracy", 0.02, None) is None  # ceiling
    scores = {"accuracy": 0.9, "baseline_linear_accuracy": 0.89}
    assert check_model(scores, "accuracy", 0.02, None) is not None
    assert check_model(scores, "accuracy", 0.01, None) is None


@pytest.mark.parametrize(
    ("metric", "n", "level"),
    [
        ("accuracy", 4, 0.25),
        ("balanced_accuracy", 10, 0.1),
        ("f1_macro", 5, 0.2),
        ("recall_weighted", 2, 0.5),
        ("top_3_accuracy", 10, 0.3),
        ("top_3_accuracy", 2, 1.0),
        ("cohen_kappa", 7, 0.0),
        ("roc_auc", 2, 0.5),
        ("roc_auc_ovr", 9, 0.5),
        ("n_test", 4, None),
    ],
)
def test_a_uniform_guess_scores(metric, n, level):
    assert metrics.uniform_guess(metric, n) == level


def test_the_uniform_guess_is_what_guessing_scores_in_expectation():
    """1/n for accuracy and balanced accuracy, measured: random labels on balanced classes."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 4000)
    probs = rng.random((len(y), 5))
    probs /= probs.sum(axis=1, keepdims=True)
    m = metrics.compute_metrics(y, probs, top_k=2)
    for name in ("accuracy", "balanced_accuracy", "f1_macro", "precision_macro"):
        assert m[name] == pytest.approx(metrics.uniform_guess(name, 5), abs=0.01), name
    for name in ("top_2_accuracy", "cohen_kappa", "roc_auc_ovr"):
        assert m[name] == pytest.approx(metrics.uniform_guess(name, 5), abs=0.01), name


def test_chance_is_the_best_of_the_majority_baseline_and_a_uniform_guess():
    skewed = {"baseline_majority_accuracy": 0.7}
    assert metrics.chance_level(skewed, "accuracy", 4).level == 0.7
    assert metrics.chance_level({"baseline_majority_accuracy": 0.1}, "accuracy", 4).level == 0.25
    assert metrics.chance_level({}, "accuracy", None) is None
    assert metrics.chance_level(skewed, "accuracy", None).why == "majority baseline 0.7000"


def test_majority_baseline_scores_chance_on_balanced_accuracy():
    """The majority baseline's balanced accuracy is 1/n whatever the class shares: the rule
    agrees with itself."""
    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    probs = np.tile([1.0, 0.0, 0.0], (100, 1))
    m = metrics.baseline_metrics("majority", y, probs)
    assert m["baseline_majority_balanced_accuracy"] == pytest.approx(1 / 3, abs=1e-6)
    assert m["baseline_majority_accuracy"] == pytest.approx(0.7)


def test_the_lower_bound_is_wilsons():
    # Hand-computed: 0.28 over 90 images, one-sided 95 %.
    assert metrics.lower_bound(0.28, 90) == pytest.approx(0.2094, abs=1e-4)
    assert metrics.lower_bound(0.28, 100_000) == pytest.approx(0.28, abs=0.003)
    assert metrics.lower_bound(1.0, 10) < 1.0 and metrics.lower_bound(0.0, 10) == 0.0
    assert metrics.lower_bound(-0.2, 10) == 0.0  # kappa below zero: clipped, no error


def test_beating_chance_takes_the_margin_and_more_than_noise():
    small = {"accuracy": 0.28, "n_test": 90}
    check = metrics.beats_chance(small, "accuracy", 4, margin=0.02)
    assert not check.passed and "95% lower bound over 90 test images, 0.2094" in check.text
    assert metrics.beats_chance({**small, "n_test": 100_000}, "accuracy", 4, 0.02).passed
    assert not metrics.beats_chance({**small, "n_test": 100_000}, "accuracy", 4, 0.05).passed
    assert metrics.beats_chance({"accuracy": 0.5}, "accuracy", 4, 0.02).passed  # no n_test
    assert metrics.beats_chance({"f1_weighted": 0.5}, "f1_weighted", None, 0.02) is None

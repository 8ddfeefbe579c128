"""The audit's pure parts: out-of-sample probabilities, cleanlab's label issues and outliers,
and `audit accept`. The stage itself runs in tests/test_pipeline_e2e.py."""

from __future__ import annotations

import numpy as np
import pytest

from image_classifier import audit
from image_classifier.data.relabel import read_relabels
from image_classifier.evaluation import label_issues


def blobs(n_per_class: int = 60, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (classes, 8))
    labels = np.repeat(np.arange(classes), n_per_class)
    features = centres[labels] + rng.normal(0, 1, (len(labels), 8))
    return features, labels


def test_flipped_labels_are_found_and_the_right_class_suggested():
    features, truth = blobs()
    labels = truth.copy()
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(labels), 24, replace=False)  # 10 %
    labels[flipped] = (labels[flipped] + 1) % 4
    probs = label_issues.out_of_sample_probs(features, labels, folds=5, seed=0)
    paths = [f"img{i}.png" for i in range(len(labels))]
    classes = ["a", "b", "c", "d"]
    found = label_issues.label_issues(probs, labels, paths, classes)
    flagged = {int(i.path[3:-4]) for i in found}
    hits = flagged & set(flipped.tolist())
    assert len(hits) / len(flagged) >= 0.9 and len(hits) / len(flipped) >= 0.9
    for issue in found:
        i = int(issue.path[3:-4])
        if i in hits:
            assert issue.suggested == classes[truth[i]] and issue.given == classes[labels[i]]
    assert [i.score for i in found] == sorted(i.score for i in found)  # worst first


def test_the_same_inputs_give_the_same_probabilities():
    features, labels = blobs()
    a = label_issues.out_of_sample_probs(features, labels, folds=5, seed=3)
    b = label_issues.out_of_sample_probs(features, labels, folds=5, seed=3)
    assert np.array_equal(a, b)


def test_a_far_away_image_is_an_outlier():
    features, labels = blobs()
    features[7] = 60.0  # nowhere near any class
    found = label_issues.outliers(features, labels, [str(i) for i in range(len(labels))], "abcd")
    assert found and found[0].path == "7" and found[0].kind == "outlier"
    assert len(found) < len(labels) * 0.05


def test_too_few_images_for_cross_validation_say_so():
    features, labels = blobs(n_per_class=1, classes=3)
    with pytest.raises(label_issues.TooSmallError, match="1 image"):
        label_issues.out_of_sample_probs(features, labels, folds=5, seed=0)


def test_accept_writes_the_worst_suggestions_once(tmp_path):
    issues = tmp_path / "issues.csv"
    issues.write_text(
        "path,given_label,suggested_label,score,kind\n"
        "data/raw/a/1.png,a,b,0.01,label\n"
        "data/raw/a/7.png,a,,0.2,outlier\n"
        "data/raw/b/2.png,b,a,0.02,label\n"
        "data/raw/b/3.png,b,a,0.03,label\n"
    )
    relabel = tmp_path / "relabel.csv"
    relabel.write_text("path,label\ndata/raw/c/9.png,drop\n")
    added = audit.accept(2, relabel, issues)
    assert added == [("data/raw/a/1.png", "b"), ("data/raw/b/2.png", "a")]
    assert audit.accept(2, relabel, issues) == []  # already there: nothing twice
    assert read_relabels(relabel).labels == {
        "data/raw/c/9.png": "drop",
        "data/raw/a/1.png": "b",
        "data/raw/b/2.png": "a",
    }
    with pytest.raises(FileNotFoundError, match="dvc repro audit"):
        audit.accept(1, relabel, tmp_path / "none.csv")

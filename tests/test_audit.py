"""The audit's pure parts: out-of-sample probabilities, cleanlab's label issues and outliers,
and `audit accept`; the stage on features the train stage kept, and on a dataset too small
for cross-validation. The whole pipeline runs it in tests/test_pipeline_e2e.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cleanlab.outlier import OutOfDistribution

from image_classifier import audit, config, prepare, split
from image_classifier.data import npy
from image_classifier.data.relabel import read_relabels
from image_classifier.data.store import fingerprint, open_split
from image_classifier.evaluation import label_issues
from image_classifier.params import Params, parse_params
from image_classifier.synthetic import Spec, write_dataset


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


def test_principal_components_are_scikit_learns_from_a_file_read_in_chunks(tmp_path):
    """StandardScaler then PCA, up to each component's sign, from rows read 7 at a time."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    features, _ = blobs(n_per_class=30)
    features = np.hstack([features, np.full((len(features), 1), 2.0)])  # a constant feature
    np.save(tmp_path / "f.npy", features.astype(np.float16))
    rows = npy.Rows(tmp_path / "f.npy")
    assert rows.shape == features.shape and np.array_equal(
        rows[5:9], np.load(tmp_path / "f.npy")[5:9]
    )
    ours = label_issues.principal_components(rows, 4, chunk=7)
    exact = features.astype(np.float16).astype(np.float64)
    theirs = PCA(4).fit_transform(StandardScaler().fit_transform(exact))
    assert ours.shape == (len(features), 4) and ours.dtype == np.float32
    sign = np.sign((ours * theirs).sum(axis=0))
    np.testing.assert_allclose(ours, theirs * sign, atol=1e-4)


def test_too_few_images_for_cross_validation_say_so():
    features, labels = blobs(n_per_class=2, classes=3)
    with pytest.raises(label_issues.TooSmallError, match=r"2 image.*needs at least 3"):
        label_issues.out_of_sample_probs(features, labels, folds=5, seed=0)


def test_accept_writes_the_worst_suggestions_once_with_their_content_hashes(tmp_path):
    issues = tmp_path / "issues.csv"
    issues.write_text(
        "path,given_label,suggested_label,score,kind\n"
        "data/raw/a/1.png,a,b,0.01,label\n"
        "data/raw/a/7.png,a,,0.2,outlier\n"
        "data/raw/b/2.png,b,a,0.02,label\n"
        "data/raw/b/3.png,b,a,0.03,label\n"
    )
    relabel = tmp_path / "relabel.csv"
    relabel.write_text("path,label\ndata/raw/c/9.png,drop\n")  # written before the hash column
    hashes = {"data/raw/a/1.png": "1" * 64, "data/raw/b/2.png": "2" * 64}
    added = audit.accept(2, relabel, issues, hashes)
    assert added == [("data/raw/a/1.png", "b"), ("data/raw/b/2.png", "a")]
    assert audit.accept(2, relabel, issues, hashes) == []  # already there: nothing twice
    rows = read_relabels(relabel).rows
    assert [(r.path, r.label, r.sha256) for r in rows] == [
        ("data/raw/c/9.png", "drop", None),
        ("data/raw/a/1.png", "b", "1" * 64),
        ("data/raw/b/2.png", "a", "2" * 64),
    ]
    renamed = {"data/raw/part-00000.zip!/a/1.png": "1" * 64}
    issues.write_text(
        "path,given_label,suggested_label,score,kind\ndata/raw/part-00000.zip!/a/1.png,a,b,0,label\n"
    )
    assert audit.accept(1, relabel, issues, renamed) == []  # the same image, packed
    with pytest.raises(FileNotFoundError, match="dvc repro audit"):
        audit.accept(1, relabel, tmp_path / "none.csv")


def _project(root: Path, per_class: int) -> Params:
    write_dataset(root / "data" / "raw", Spec((per_class,) * 3, seed=5, scale=0.1), workers=1)
    params = parse_params({"image": {"size": 16, "color_mode": "rgb"}})
    split.run(params)
    prepare.run(params)
    return params


def _kept_features(params: Params) -> np.ndarray:
    """features.npy and features.json as train writes them after phase 1 on LiteRT: rows for
    train then val (here class centres plus noise), and which images they are."""
    splits = [open_split(s, params.image.size, params.image.color_mode) for s in ("train", "val")]
    labels = np.concatenate([s.labels for s in splits])
    features, _ = blobs(n_per_class=1, classes=3)
    rows = features[labels] + np.random.default_rng(0).normal(0, 1, (len(labels), 8))
    config.POOLED_FEATURES.parent.mkdir(exist_ok=True)
    np.save(config.POOLED_FEATURES, rows.astype(np.float16))
    index = {"images": len(labels), "store": fingerprint(splits)}
    config.POOLED_FEATURES_INDEX.write_text(json.dumps(index))
    return labels


def test_the_stage_reads_the_features_train_kept_and_writes_its_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = _project(tmp_path, per_class=30)
    labels = _kept_features(params)
    summary = audit.run(params)  # no model.keras: the kept features are all it needs
    assert summary["images"] == len(labels) and summary["too_small"] is None
    assert json.loads(config.AUDIT_SUMMARY.read_text()) == summary
    rows = list(csv.DictReader(config.AUDIT_ISSUES.open()))
    assert sum(r["kind"] == "label" for r in rows) == summary["label_issues"]
    assert config.AUDIT_GALLERY.stat().st_size > 0


def test_features_kept_for_other_images_are_not_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = _project(tmp_path, per_class=10)
    _kept_features(params)
    splits = [open_split(s, params.image.size, params.image.color_mode) for s in ("train", "val")]
    assert audit.kept_features(splits) is not None
    index = json.loads(config.POOLED_FEATURES_INDEX.read_text())
    config.POOLED_FEATURES_INDEX.write_text(json.dumps({**index, "store": "0" * 64}))
    assert audit.kept_features(splits) is None  # same row count, other images: computed instead
    config.POOLED_FEATURES_INDEX.unlink()
    assert audit.kept_features(splits) is None
    np.save(config.POOLED_FEATURES, np.zeros((0, 0), dtype=np.float16))  # phase 1 on TensorFlow
    config.POOLED_FEATURES_INDEX.write_text(json.dumps(index))
    assert audit.kept_features(splits) is None


def test_a_dataset_too_small_for_cross_validation_gets_an_empty_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = _project(tmp_path, per_class=3)  # the split's least: 2 a class in train and val
    _kept_features(params)
    summary = audit.run(params)
    assert "2 image(s) in the smallest class" in summary["too_small"]
    assert summary["label_issues"] == 0 and summary["outliers"] == 0
    assert config.AUDIT_ISSUES.read_text().splitlines() == [",".join(audit.FIELDS)]
    assert config.AUDIT_GALLERY.stat().st_size > 0


def test_neighbours_among_all_images_are_cleanlabs():
    """With the whole set as the reference, the mean kNN distance is cleanlab's own."""
    features, _ = blobs()
    ours = label_issues.mean_neighbour_distance(features, k=10, reference=len(features))
    theirs = -np.log(OutOfDistribution(params={"k": 10}).fit_score(features=features))
    np.testing.assert_allclose(ours / np.median(ours), theirs, rtol=1e-9)
    low = features[:, :3]  # three dimensions or fewer: cleanlab measures euclidean distances
    ours = label_issues.mean_neighbour_distance(low, k=10, reference=len(low))
    theirs = -np.log(OutOfDistribution(params={"k": 10}).fit_score(features=low))
    np.testing.assert_allclose(ours / np.median(ours), theirs, rtol=1e-9)


def test_past_the_reference_size_outliers_come_from_a_sample(monkeypatch):
    """Beyond OUTLIER_REFERENCE images each is compared with a seeded sample of that many:
    the far-away image still comes first, and the scores rank the rest as all images do."""
    features, labels = blobs(n_per_class=100)
    features[7] = 60.0
    paths = [str(i) for i in range(len(labels))]
    full = label_issues.outlier_scores(features)
    monkeypatch.setattr(label_issues, "OUTLIER_REFERENCE", len(features) // 4)
    sampled = label_issues.outlier_scores(features)
    assert np.array_equal(sampled, label_issues.outlier_scores(features))  # seeded
    assert not np.array_equal(sampled, full)
    assert np.corrcoef(np.argsort(np.argsort(full)), np.argsort(np.argsort(sampled)))[0, 1] > 0.8
    assert label_issues.outliers(features, labels, paths, "abcd")[0].path == "7"

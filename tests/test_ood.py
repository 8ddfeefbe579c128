"""Out-of-distribution scores, their threshold, the sets evaluate measures them on, and how
export and the served model wire them."""

from __future__ import annotations

import dataclasses
import json
import shutil

import keras
import numpy as np
import pytest

from image_classifier import export
from image_classifier.evaluation import calibration, ood, ood_sets
from image_classifier.litert.classifier import Classifier, ModelCard, ModelLoadError, Outputs
from image_classifier.params import ImageParams, OodParams, TrainParams
from image_classifier.preprocessing import PREPROCESSING_VERSION
from image_classifier.training import models, served_graph


def two_clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    centres = np.array([[4.0, 0, 0, 0, 0], [-4.0, 0, 0, 0, 0]])
    return centres[labels] + rng.normal(0, [1.0, 2.0, 0.5, 1.0, 1.0], (n, 5)), labels


def unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_mahalanobis_is_the_distance_to_the_nearest_class_under_the_fitted_covariance():
    features, labels = two_clusters(4000, seed=0)
    arrays = ood.fit("mahalanobis", features, labels, 2)
    # of the L2-normalised features (Mahalanobis++)
    features = unit(features)
    w = arrays["whiten"].astype(np.float64)
    precision = w @ w.T
    means = np.linalg.solve(w.T, arrays["means"].T.astype(np.float64)).T
    # The class means it keeps are the classes' means.
    np.testing.assert_allclose(means[0], features[labels == 0].mean(axis=0), atol=1e-4)
    probe = np.array([[4.0, 1, 0, 0, 0], [0.0, 0, 3, 0, 0], [-4.0, 0, 0, 0, 0]])
    expected = [-min((x - m) @ precision @ (x - m) for m in means) for x in unit(probe)]
    got = ood.score("mahalanobis", arrays, np.zeros((3, 2)), probe)
    np.testing.assert_allclose(got, expected, rtol=1e-6)  # normalised in float32, as served
    # A direction no class has (the narrow third axis) is far; one along a class, near.
    assert got[1] < got[0]
    # Scale does not matter: the features are normalised.
    np.testing.assert_allclose(
        ood.score("mahalanobis", arrays, np.zeros((3, 2)), probe * 7.0), got, rtol=1e-5
    )


@pytest.mark.parametrize("same", [False, True])
def test_mahalanobis_fits_a_training_sample_of_one_image_a_class(same):
    """The smallest split holds one training image a class: no spread within a class."""
    rng = np.random.default_rng(3)
    features = np.ones((5, 8)) if same else rng.normal(size=(5, 8))
    for method, early in (("mahalanobis", None), ("mahalanobis_early", np.abs(features))):
        arrays = ood.fit(method, features, np.arange(5), 5, early)
        scores = ood.score(method, arrays, np.zeros((5, 5)), features, early=early)
        np.testing.assert_allclose(scores, 0, atol=1e-9)  # each image is its class's mean
        if not same:
            far_early = None if early is None else early[:1] * 9
            far = ood.score(method, arrays, np.zeros((1, 5)), -features[:1], early=far_early)
            assert far[0] < -1


def test_knn_scores_the_kth_nearest_cosine_similarity():
    rng = np.random.default_rng(1)
    bank, probe = rng.normal(size=(50, 8)), rng.normal(size=(4, 8))
    arrays = ood.fit("knn", bank, np.zeros(50, int), 1)
    unit = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    sims = (probe / np.linalg.norm(probe, axis=1, keepdims=True)) @ unit.T
    for k in (1, 5):
        expected = np.sort(sims, axis=1)[:, -k]
        got = ood.score("knn", arrays, np.zeros((4, 1)), probe, k=k)
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_energy_and_msp_come_from_the_logits():
    logits = np.array([[2.0, 1.0, -1.0], [0.1, 0.0, 0.2]])
    energy = ood.score("energy", {}, logits, np.zeros((2, 4)))
    np.testing.assert_allclose(energy, np.log(np.exp(logits).sum(axis=1)))
    msp = ood.score("msp", {}, logits, np.zeros((2, 4)), temperature=2.0)
    np.testing.assert_allclose(msp, calibration.softmax(logits, 2.0).max(axis=1))


def test_an_unknown_method_is_named():
    with pytest.raises(ValueError, match=r"'mahalanobi'.*knn"):
        ood.fit("mahalanobi", np.zeros((2, 2)), np.zeros(2, int), 1)


@pytest.mark.parametrize("n", [7, 20, 101, 1000])
def test_the_threshold_accepts_at_least_the_share_asked_and_no_more_than_needed(n):
    scores = np.random.default_rng(n).normal(size=n)
    threshold = ood.threshold_for(scores, 0.95)
    accepted = (scores >= threshold).mean()
    assert accepted >= 0.95
    # The next score up would accept fewer than asked: the threshold is as strict as it can be.
    higher = np.sort(scores[scores > threshold])
    if len(higher):
        assert (scores >= higher[0]).mean() < 0.95


def test_with_a_confidence_the_threshold_holds_for_new_images_that_often():
    """Over many validation draws of 225 scores, the threshold rejects more than 5 % of the
    whole distribution in at most 10 % of them (the bound's chance at 225 scores: 6.4 %);
    without the confidence, in about half."""
    from scipy.stats import norm

    def too_strict(confidence: float | None) -> float:
        rng = np.random.default_rng(0)
        draws = (rng.normal(size=225) for _ in range(2000))
        return np.mean([norm.cdf(ood.threshold_for(d, 0.95, confidence)) > 0.05 for d in draws])

    assert 0.04 < too_strict(0.9) <= 0.1
    assert too_strict(None) > 0.4


@pytest.mark.parametrize("n", [45, 225, 600, 5000])
def test_with_a_confidence_the_most_scores_the_bound_allows_are_rejected(n):
    from scipy.stats import binom

    k = ood.rejected_count(n, 0.95, 0.9)
    assert binom.cdf(k, n, 0.05) <= 0.1 < binom.cdf(k + 1, n, 0.05)
    assert k < ood.rejected_count(n, 0.95)  # fewer than without the confidence


def test_with_too_few_scores_for_the_confidence_the_threshold_accepts_them_all():
    scores = np.random.default_rng(1).normal(size=40)  # 0.95 ** 40 > 0.1: no bound holds
    assert ood.threshold_for(scores, 0.95, 0.9) == scores.min()


@pytest.mark.parametrize("name", list(ood_sets.SETS))
def test_each_set_is_seeded_and_drawn_at_the_models_input(name):
    a = ood_sets.draw(name, 4, 16, "grayscale", seed=3)
    b = ood_sets.draw(name, 4, 16, "grayscale", seed=3)
    assert a.shape == (4, 16, 16, 1) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert ood_sets.draw(name, 2, 24, "rgb", seed=3).shape == (2, 24, 24, 3)


def test_sets_differ_by_seed_and_from_each_other():
    noise = ood_sets.draw("noise", 3, 16, "rgb", seed=1)
    assert not np.array_equal(noise, ood_sets.draw("noise", 3, 16, "rgb", seed=2))
    assert not np.array_equal(noise, ood_sets.draw("textures", 3, 16, "rgb", seed=1))
    flat = ood_sets.draw("flat", 3, 16, "rgb", seed=1)
    assert all(len(np.unique(img.reshape(-1, 3), axis=0)) == 1 for img in flat)


def test_serving_model_returns_the_logits_then_the_pooled_features():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax", name="probabilities")(
        keras.layers.Dropout(0.5)(pooled)
    )
    model = keras.Model(inputs, out)
    x = np.random.default_rng(0).uniform(0, 255, (5, 8, 8, 1)).astype(np.float32)
    served = served_graph.serving_model(model).predict(x, verbose=0)
    assert served.shape == (5, 3 + 4)
    np.testing.assert_allclose(
        calibration.softmax(served[:, :3]), model.predict(x, verbose=0), atol=1e-6
    )
    features = keras.Model(inputs, pooled).predict(x, verbose=0)
    np.testing.assert_allclose(served[:, 3:], features, atol=1e-6)


def test_a_pretrained_base_also_serves_its_early_blocks_statistics(tmp_path):
    image = ImageParams(size=32, color_mode="rgb")
    built = models.build_model(3, image, TrainParams(model="mobilenet_v2", weights=None))
    # as export loads it: the saved names, which Keras' names for new layers may repeat
    built.save(tmp_path / "model.keras")
    keras.utils.clear_session()  # names start again, as in export's own process
    model = keras.models.load_model(tmp_path / "model.keras")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    served = served_graph.serving_model(model).predict(x, verbose=0)
    base = models.find_base(model)
    names = models.EARLY_LAYERS["mobilenet_v2"]
    early = keras.Model(base.input, [base.get_layer(name).output for name in names])
    maps = [np.asarray(m) for m in early(model.get_layer("scale_to_pm1")(x), training=False)]
    mean = np.concatenate([m.mean(axis=(1, 2)) for m in maps], axis=1)
    mean_sq = np.concatenate([(m**2).mean(axis=(1, 2)) for m in maps], axis=1)
    std = np.concatenate([m.std(axis=(1, 2)) for m in maps], axis=1)
    width = 2 * mean.shape[1]
    assert served.shape == (4, 3 + 1280 + width) and served_graph.early_width(model) == width
    np.testing.assert_allclose(
        calibration.softmax(served[:, :3]), model.predict(x, verbose=0), atol=1e-5
    )
    stats = served[:, -width:]
    np.testing.assert_allclose(stats, np.c_[mean, mean_sq], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ood.early_statistics(stats), np.c_[mean, std], rtol=1e-3, atol=1e-4)
    # LiteRT splits its output row where model.json's widths say
    card = ModelCard(("a", "b", "c"), 32, "rgb", PREPROCESSING_VERSION, early_width=width)
    lite = Classifier(served_graph.convert(model), card).run(x)
    assert lite.features.shape == (4, 1280) and lite.early.shape == (4, width)
    np.testing.assert_allclose(lite.early, stats, rtol=1e-4, atol=1e-5)


def test_auto_picks_the_early_blocks_statistics_when_the_model_has_them():
    assert ood.resolve("auto", 0) == "mahalanobis"
    assert ood.resolve("auto", 192) == "mahalanobis_early"
    assert ood.resolve("knn", 192) == "knn"
    with pytest.raises(ValueError, match="mahalanobis_early needs a base"):
        ood.resolve("mahalanobis_early", 0)


def outputs(logits, features, early=None) -> Outputs:
    logits = np.asarray(logits, dtype=np.float64)
    probs = calibration.softmax(logits)
    n = len(logits)
    early = np.empty((n, 0)) if early is None else np.asarray(early)
    return Outputs(probs, logits, np.asarray(features), early, np.zeros(n), np.ones(n, bool))


def test_early_mahalanobis_rejects_an_image_with_unlike_statistics():
    rng = np.random.default_rng(4)
    # means then means of squares of 3 channels: each image's std about 1 per channel
    mean = rng.normal(2.0, 0.1, (400, 3))
    early = np.c_[mean, mean**2 + rng.normal(1.0, 0.05, (400, 3))]
    labels = np.arange(400) % 2
    train, val = (
        outputs(np.zeros((300, 2)), np.zeros((300, 4)), early[:300]),
        outputs(np.zeros((100, 2)), np.zeros((100, 4)), early[300:]),
    )
    detector = export.fit_detector(OodParams(method="auto"), train, labels[:300], val, 1.0)
    assert detector.method == "mahalanobis_early"
    assert (
        detector.score(val.logits, val.features, 1.0, val.early) >= detector.threshold
    ).mean() >= 0.95
    # the same means with no spread (a flat image): far from every class
    flat = np.c_[np.full((1, 3), 2.0), np.full((1, 3), 4.0)]
    assert detector.score(np.zeros((1, 2)), np.zeros((1, 4)), 1.0, flat)[0] < detector.threshold
    # the final features play no part
    again = detector.score(np.zeros((1, 2)), np.full((1, 4), 99.0), 1.0, early[:1])
    assert again[0] == detector.score(np.zeros((1, 2)), np.zeros((1, 4)), 1.0, early[:1])[0]


def test_the_detector_accepts_the_share_of_validation_images_asked():
    features, labels = two_clusters(600, seed=2)
    val_features, _ = two_clusters(200, seed=3)
    train, val = outputs(np.zeros((600, 2)), features), outputs(np.zeros((200, 2)), val_features)
    for method in ("mahalanobis", "knn"):
        detector = export.fit_detector(OodParams(method=method), train, labels, val, 1.0)
        val_scores = detector.score(val.logits, val.features, 1.0)
        assert (val_scores >= detector.threshold).mean() >= 0.95
        far = detector.score(np.zeros((1, 2)), np.full((1, 5), 40.0), 1.0)
        assert far[0] < detector.threshold


def test_the_confidence_is_minus_the_log_of_the_other_classes_share():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [40.0, 0.0, 0.0], [60.0, 0.0, 0.0]])
    msp = calibration.softmax(logits, 2.0).max(axis=1)
    sure = ood.confidence(logits, 2.0)
    np.testing.assert_allclose(sure[:3], -np.log1p(-msp[:3]), rtol=1e-6)
    # top probabilities that round to 1 stay in order
    assert calibration.softmax(logits[2:], 1.0).max(axis=1).tolist() == [1.0, 1.0]
    assert ood.confidence(logits[2:], 1.0).tolist() == pytest.approx(
        [40 - np.log(2), 60 - np.log(2)]
    )


def test_a_share_counts_the_reference_scores_at_or_below_a_value():
    reference = np.array([1.0, 2.0, 2.0, 5.0])
    shares = ood.share_at_or_below(reference, np.array([0.5, 1.0, 2.0, 4.0, 9.0]))
    assert shares.tolist() == [0, 1 / 5, 3 / 5, 3 / 5, 4 / 5]


def sure_and_unsure(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two clusters of features, logits that say the cluster with a margin of 1 to 8."""
    features, labels = two_clusters(n, seed)
    margin = np.random.default_rng(seed).uniform(1, 8, n)
    logits = np.zeros((n, 2))
    logits[np.arange(n), labels] = margin
    return features, labels, logits


def test_with_doubt_the_score_is_the_lower_share_of_the_two():
    features, labels, logits = sure_and_unsure(600, seed=2)
    val_features, _, val_logits = sure_and_unsure(200, seed=3)
    train, val = outputs(logits, features), outputs(val_logits, val_features)
    plain = export.fit_detector(
        OodParams(method="mahalanobis", doubt=False), train, labels, val, 1.0
    )
    both = export.fit_detector(OodParams(method="mahalanobis"), train, labels, val, 1.0)
    assert both.doubt and not plain.doubt
    own = plain.score(val_logits, val_features, 1.0)
    sure = ood.confidence(val_logits, 1.0)
    expected = np.minimum(
        ood.share_at_or_below(np.sort(own), own), ood.share_at_or_below(np.sort(sure), sure)
    )
    np.testing.assert_array_equal(both.score(val_logits, val_features, 1.0), expected)
    assert (expected >= both.threshold).mean() >= 0.95


def test_doubt_rejects_a_typical_image_the_model_cannot_decide_and_keeps_a_sure_one():
    features, labels, logits = sure_and_unsure(600, seed=2)
    val_features, _, val_logits = sure_and_unsure(200, seed=3)
    train, val = outputs(logits, features), outputs(val_logits, val_features)
    centre = np.array([[4.0, 0, 0, 0, 0], [4.0, 0, 0, 0, 0]])  # class 0's mean, twice
    torn, sure = [0.1, 0.0], [8.0, 0.0]
    asked = np.array([torn, sure])
    for doubt, known in ((False, [True, True]), (True, [False, True])):
        op = OodParams(method="mahalanobis", doubt=doubt)
        detector = export.fit_detector(op, train, labels, val, 1.0)
        assert (detector.score(asked, centre, 1.0) >= detector.threshold).tolist() == known
    # an image far from both clusters stays unknown however sure the model is
    far = detector.score(np.array([[99.0, 0.0]]), np.full((1, 5), 40.0), 1.0)
    assert far[0] < detector.threshold


def test_mahalanobis_early_models_the_square_roots_of_the_statistics():
    rng = np.random.default_rng(5)
    early = np.c_[rng.uniform(1, 3, (50, 2)), rng.uniform(10, 12, (50, 2))]
    np.testing.assert_array_equal(ood.early_features(early), np.sqrt(ood.early_statistics(early)))
    fitted = ood.fit("mahalanobis_early", np.zeros((50, 1)), np.arange(50) % 2, 2, early)
    w, means = fitted["whiten"], fitted["means"]
    f = ood.early_features(early[:3]) @ w
    expected = -(((f[:, None, :] - means[None]) ** 2).sum(axis=2)).min(axis=1)
    scored = ood.score(
        "mahalanobis_early", fitted, np.zeros((3, 2)), np.zeros((3, 1)), early=early[:3]
    )
    np.testing.assert_allclose(scored, expected, rtol=1e-9)


def test_examples_are_right_and_known_per_class():
    logits = np.array([[3, 0], [3, 0], [0, 3], [3, 0], [0, 3], [0, 3]], dtype=float)
    out = outputs(logits, np.zeros((6, 1)))
    out = dataclasses.replace(out, known=np.array([True, True, True, True, False, True]))
    labels = np.array([0, 0, 0, 1, 1, 1])  # image 2 wrong, 3 wrong, 4 unknown
    picked = export.pick_examples(out, labels, per_class=5, seed=0)
    assert sorted(picked) == [0, 1, 5]
    assert len(export.pick_examples(out, labels, per_class=1, seed=0)) == 2


def test_the_served_model_says_known_by_its_threshold(model_dir, tmp_path):
    x = np.random.default_rng(6).integers(0, 256, (4, 12, 12, 1)).astype(np.uint8)
    served = Classifier.from_dir(model_dir).run(x)
    assert served.known.tolist() == (served.scores >= served_threshold(model_dir)).tolist()
    for threshold, expected in ((float("-inf"), True), (float("inf"), False)):
        copy = shutil.copytree(model_dir, tmp_path / str(threshold))
        card = json.loads((copy / "model.json").read_text())
        card["ood"]["threshold"] = threshold
        (copy / "model.json").write_text(json.dumps(card))
        out = Classifier.from_dir(copy).run(x)
        assert out.known.tolist() == [expected] * 4
        np.testing.assert_array_equal(out.scores, served.scores)  # the score never changes


def served_threshold(model_dir) -> float:
    return json.loads((model_dir / "model.json").read_text())["ood"]["threshold"]


def test_damaged_detector_statistics_stop_the_load_with_the_file_named(model_dir, tmp_path):
    copy = shutil.copytree(model_dir, tmp_path / "model")
    (copy / "ood.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match=r"ood\.npz"):
        Classifier.from_dir(copy)


def test_a_detector_with_doubt_but_no_validation_scores_stops_the_load(model_dir, tmp_path):
    copy = shutil.copytree(model_dir, tmp_path / "model")
    assert json.loads((copy / "model.json").read_text())["ood"]["doubt"] is True
    with np.load(copy / "ood.npz") as saved:
        kept = {name: saved[name] for name in saved.files if not name.startswith("val_")}
    np.savez(copy / "ood.npz", **kept)
    with pytest.raises(ModelLoadError, match=r"ood\.npz.*validation scores are missing"):
        Classifier.from_dir(copy)


@pytest.mark.parametrize("method", ["mahalanobis", "mahalanobis_early"])
def test_a_large_batch_is_scored_in_parts_each_image_as_it_is_alone(method, monkeypatch):
    """Detector.score takes a split SCORE_ROWS images at a time (memory); an image's score,
    doubt included, is the one it gets alone, bit for bit, wherever the parts cut."""
    rng = np.random.default_rng(5)
    n, labels = 23, rng.integers(0, 3, 200)
    logits, features = rng.normal(size=(n, 3)), rng.normal(size=(n, 7)).astype(np.float32)
    early = np.abs(rng.normal(size=(n, 8))).astype(np.float32)
    train_f = rng.normal(size=(200, 7)).astype(np.float32)
    train_e = np.abs(rng.normal(size=(200, 8))).astype(np.float32)
    arrays = ood.fit(method, train_f, labels, 3, train_e)
    plain = ood.Detector(method, 0.0, arrays)
    arrays |= ood.doubt_arrays(
        plain.score(logits, features, 1.0, early), ood.confidence(logits, 1.0)
    )
    detector = ood.Detector(method, 0.0, arrays, doubt=True)
    alone = [
        detector.score(logits[i : i + 1], features[i : i + 1], 1.5, early[i : i + 1])
        for i in range(n)
    ]
    monkeypatch.setattr(ood, "SCORE_ROWS", 5)
    np.testing.assert_array_equal(
        detector.score(logits, features, 1.5, early), np.concatenate(alone)
    )

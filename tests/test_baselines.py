import numpy as np

from image_classifier import evaluate, prepare, split
from image_classifier.data.store import open_split
from image_classifier.evaluation import baselines
from image_classifier.params import parse_params
from image_classifier.synthetic import Spec, write_dataset


def test_downsample_takes_block_means_to_the_side():
    x = np.zeros((1, 32, 32, 3), np.uint8)
    x[0, :16, :, 0] = 255  # top half red
    small = baselines.downsample(x, side=4).reshape(1, 4, 4, 3)
    np.testing.assert_allclose(small[0, :2, :, 0], 1.0)
    np.testing.assert_allclose(small[0, 2:, :, 0], 0.0)
    assert baselines.downsample(np.zeros((2, 30, 30, 1)), side=16).shape == (2, 256)
    assert baselines.downsample(np.zeros((2, 12, 12, 1)), side=16).shape == (2, 144)  # kept


def test_majority_predicts_the_most_frequent_training_class():
    probs = baselines.majority_probs(np.array([2, 2, 0, 1, 2]), 3, 4)
    np.testing.assert_array_equal(probs, np.tile([0, 0, 1, 0], (3, 1)))


def test_linear_baseline_separates_colours_a_network_failed_on():
    """Three classes told apart only by hue: trivially linear in pixel space."""
    rng = np.random.default_rng(0)
    hues = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]])
    y = rng.integers(0, 3, 120)
    x = np.clip(hues[y][:, None, None, :] + rng.normal(0, 30, (120, 8, 8, 3)), 0, 255)
    small = baselines.downsample(x)
    model = baselines.fit_linear(small[:80], y[:80])
    probs = baselines.linear_probs(model, small[80:], n_classes=4)
    assert probs.shape == (40, 4) and not probs[:, 3].any()  # class 3 never seen in training
    assert (probs.argmax(1) == y[80:]).mean() == 1.0


def test_evaluate_downsamples_the_chosen_store_images_batch_by_batch(tmp_path, monkeypatch):
    """evaluate.downsampled fills one float32 array from the store, in the order asked, equal
    to downsampling the images all at once."""
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "data" / "raw", Spec((6,) * 3, seed=2, scale=0.1), workers=1)
    params = parse_params({"image": {"size": 32, "color_mode": "rgb"}})
    split.run(params)
    prepare.run(params)
    monkeypatch.setattr(evaluate, "inference_batch_size", lambda size, channels: 4)
    with open_split("train", 32, "rgb") as train:
        picked = np.array([5, 0, 3, 1, 2, 4, 6])
        small = evaluate.downsampled(train, picked)
        expected = baselines.downsample(train.read(picked))
    assert small.dtype == np.float32 and small.shape == (7, 16 * 16 * 3)
    np.testing.assert_allclose(small, expected, rtol=1e-6)

import numpy as np

from image_classifier.evaluation import baselines


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
    probs = baselines.linear_probs(small[:80], y[:80], small[80:], n_classes=4)
    assert probs.shape == (40, 4) and not probs[:, 3].any()  # class 3 never seen in training
    assert (probs.argmax(1) == y[80:]).mean() == 1.0

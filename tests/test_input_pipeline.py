"""The numpy batches phase 1 on LiteRT reads are the tf.data batches fit() would read."""

import itertools

import numpy as np

from image_classifier.params import AugmentParams
from image_classifier.training.input_pipeline import (
    ArraySource,
    Subset,
    inference_batches,
    inference_dataset,
    training_batches,
    training_dataset,
)

from helpers import colours

SOURCE = colours(7, 24, 0)  # 21 images: batches of 8 cross an epoch's end


def test_training_batches_are_the_training_datasets_batches():
    aug = AugmentParams(flip="horizontal", rotation=0.1, zoom=0.1, translation=0.1, contrast=0.2)
    dataset, steps = training_dataset(SOURCE, 8, 3, aug)
    assert steps == 3
    # Six batches: two epochs, each in a new order, one batch holding images of both.
    batches = itertools.islice(training_batches(SOURCE, 8, 3, aug), 6)
    for (x, y), (px, py, pi) in zip(dataset.take(6), batches, strict=True):
        assert px.dtype == np.float32 and px.shape == (8, 24, 24, 3)
        np.testing.assert_array_equal(py, y.numpy())
        np.testing.assert_array_equal(py, SOURCE.labels[pi])
        assert np.all(np.diff(pi) >= 0)
        # The same transform, run eagerly here and in a traced map there.
        np.testing.assert_allclose(px, x.numpy(), atol=1e-2)
    assert not np.allclose(px, SOURCE.read(pi).astype(np.float32))  # augmented


def test_inference_batches_are_the_inference_datasets_batches():
    got = list(inference_batches(SOURCE, 8))
    assert [len(y) for _, y in got] == [8, 8, 5]
    for (x, y), (px, py) in zip(inference_dataset(SOURCE, 8), got, strict=True):
        np.testing.assert_array_equal(px, x.numpy())
        np.testing.assert_array_equal(py, y.numpy())
    np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), SOURCE.x)


def test_a_subset_reads_its_images_batch_by_batch_as_the_images_themselves():
    picked = np.array([1, 4, 5, 9, 13, 20])
    subset = Subset(SOURCE, picked)
    reads = []
    original = SOURCE.read

    def counting(indices):
        reads.append(len(indices))
        return original(indices)

    SOURCE.read = counting
    try:
        got = list(inference_batches(subset, 4))
    finally:
        del SOURCE.read
    assert reads == [4, 2]  # a batch at a time, never the whole sample
    expected = list(inference_batches(ArraySource(SOURCE.x[picked], SOURCE.labels[picked]), 4))
    assert len(subset) == 6
    for (x, y), (ex, ey) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)

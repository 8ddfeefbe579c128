import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from image_classifier.params import AugmentParams
from image_classifier.training.augment import augment_batch

ALL = AugmentParams(flip="horizontal", rotation=0.05, zoom=0.1, contrast=0.2, translation=0.1)


def batch(n: int = 4, size: int = 24) -> tf.Tensor:
    rng = np.random.default_rng(0)
    return tf.constant(rng.uniform(0, 255, (n, size, size, 3)).astype("float32"))


OFF = AugmentParams(flip="none", rotation=0.0, zoom=0.0, contrast=0.0, translation=0.0)


def test_nothing_enabled_is_the_identity():
    x = batch()
    assert not OFF.enabled
    assert augment_batch(x, tf.constant([1, 2], tf.int64), OFF) is x


def test_zero_amounts_through_the_transform_leave_pixels_unchanged():
    # flip "none" with rotation 0 still runs no transform; a 1e-9 zoom runs the resampler.
    tiny = dataclasses.replace(OFF, zoom=1e-9)
    x = batch()
    np.testing.assert_allclose(augment_batch(x, tf.constant([0, 0], tf.int64), tiny), x, atol=1e-3)


def test_same_seed_same_output_other_step_other_output():
    x = batch()
    a = augment_batch(x, tf.constant([7, 1], tf.int64), ALL).numpy()
    b = augment_batch(x, tf.constant([7, 1], tf.int64), ALL).numpy()
    c = augment_batch(x, tf.constant([7, 2], tf.int64), ALL).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1.0
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 255


@pytest.mark.parametrize("flip", ["horizontal", "vertical"])
def test_flip_alone_mirrors_some_images_exactly(flip):
    x = batch(n=16)
    out = augment_batch(
        x, tf.constant([3, 4], tf.int64), dataclasses.replace(OFF, flip=flip)
    ).numpy()
    axis = 1 if flip == "horizontal" else 0  # of one (h, w, c) image
    pairs = list(zip(out, x.numpy(), strict=True))
    mirrored = [np.allclose(o, np.flip(i, axis=axis), atol=1e-3) for o, i in pairs]
    same = [np.allclose(o, i, atol=1e-3) for o, i in pairs]
    assert any(mirrored) and any(same)
    assert all(m or s for m, s in zip(mirrored, same, strict=True))


def test_parallel_map_is_reproducible():
    """The reason for stateless seeds: a parallel tf.data map gives the same batches twice."""
    x = batch(n=32)

    def run():
        ds = tf.data.Dataset.range(8).map(
            lambda step: augment_batch(x[:4], tf.stack([tf.constant(5, tf.int64), step]), ALL),
            num_parallel_calls=4,
        )
        return np.stack([b.numpy() for b in ds])

    np.testing.assert_array_equal(run(), run())

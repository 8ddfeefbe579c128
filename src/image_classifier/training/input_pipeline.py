"""tf.data pipelines over the pixel store: shuffled indices in, float32 batches out.

Only indices are shuffled (a few bytes per image); pixels are read from the store batch by
batch, so memory does not grow with the dataset. Batches are numbered across epochs and the
number keys that batch's augmentation, so the run is reproducible with a parallel map.

A consumer outside TensorFlow (phase 1's base on LiteRT, training/frozen_base.py) takes the
same batches as numpy arrays from training_batches and inference_batches, read and augmented
in its own thread: through tf.data, TensorFlow's threads shared the cores with LiteRT's, and
phase 1 ran slower (docs/benchmarks.md, "Where the time goes").
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import tensorflow as tf

from image_classifier.params import AugmentParams
from image_classifier.training.augment import augment_batch


class PixelSource(Protocol):
    """What the pipelines read: store.SplitPixels, or ArraySource for data already in memory."""

    labels: np.ndarray

    def __len__(self) -> int: ...

    def read(self, indices: np.ndarray) -> np.ndarray: ...


class ArraySource:
    """In-memory pixels (tests, small tools) behind the same interface as the store."""

    def __init__(self, x: np.ndarray, labels: np.ndarray) -> None:
        self.x = np.asarray(x, dtype=np.uint8)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self.x[np.asarray(indices)]


class Subset:
    """Some of a source's images, read from it as the pipelines ask, a batch at a time: a
    sample of 1,000 224-px images read at once would hold 150 MB."""

    def __init__(self, source: PixelSource, indices: np.ndarray) -> None:
        self.source = source
        self.indices = np.asarray(indices)
        self.labels = source.labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self.source.read(self.indices[np.asarray(indices)])


def _reader(source: PixelSource, shape: tuple[int, ...]):
    labels = tf.constant(source.labels, dtype=tf.int64)

    def read(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        # Sorted reads walk the file forwards; order inside a batch does not matter to SGD.
        indices = tf.sort(indices)
        pixels = tf.numpy_function(source.read, [indices], tf.uint8, stateful=False)
        pixels.set_shape((None, *shape))
        return tf.cast(pixels, tf.float32), tf.gather(labels, indices), indices

    return read


def training_dataset(
    source: PixelSource,
    batch_size: int,
    seed: int,
    aug: AugmentParams,
) -> tuple[tf.data.Dataset, int]:
    """(endless dataset of augmented (pixels, labels) batches, steps per epoch): pass both to
    model.fit."""
    n = len(source)
    shape = source.read(np.array([0])).shape[1:]
    read = _reader(source, shape)

    def load(step: tf.Tensor, indices: tf.Tensor) -> tuple[tf.Tensor, ...]:
        x, y, _ = read(indices)
        return augment_batch(x, tf.stack([tf.constant(seed, tf.int64), step]), aug), y

    ds = batch_schedule(n, batch_size, seed).map(
        load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return ds.prefetch(tf.data.AUTOTUNE), math.ceil(n / batch_size)


def batch_schedule(n: int, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless (batch number, store indices) pairs: a new seeded order every epoch."""
    return (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        # Endless, so no batch is dropped; a static batch size gives the range test's eager
        # steps and fit()'s the same signature, and fit() reuses the traced train step.
        .batch(batch_size, drop_remainder=True)
        .enumerate()
    )


def training_batches(
    source: PixelSource, batch_size: int, seed: int, aug: AugmentParams
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """training_dataset's batches, with indices, as numpy arrays made in the caller's thread:
    the same images and augmentation (to float rounding: here the ops run eagerly)."""
    for step, indices in batch_schedule(len(source), batch_size, seed).as_numpy_iterator():
        indices = np.sort(indices)
        pixels = tf.constant(source.read(indices).astype(np.float32))
        key = tf.constant([seed, step], dtype=tf.int64)
        yield augment_batch(pixels, key, aug).numpy(), source.labels[indices], indices


def inference_batches(
    source: PixelSource, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """inference_dataset's batches as numpy arrays: (float32 pixels, labels) in store order."""
    for start in range(0, len(source), batch_size):
        indices = np.arange(start, min(start + batch_size, len(source)))
        yield source.read(indices).astype(np.float32), source.labels[indices]


def inference_dataset(source: PixelSource, batch_size: int) -> tf.data.Dataset:
    """Batches in store order, no augmentation: validation during training."""
    read = _reader(source, source.read(np.array([0])).shape[1:])
    return (
        tf.data.Dataset.range(len(source))
        .batch(batch_size)
        .map(lambda i: read(i)[:2], num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )

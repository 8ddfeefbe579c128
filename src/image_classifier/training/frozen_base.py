"""Phase 1 of transfer learning without a GPU: the frozen base runs on LiteRT, Keras fits the head.

While the base is frozen and in inference mode, phase 1 only ever runs it forwards: the
gradient stops at the pooled features, and LiteRT (XNNPACK) runs a network forwards several
times faster than TensorFlow's CPU kernels (bench/frozen_base.py; docs/benchmarks.md), fed by
the same augmented batches. So the served graph (served_graph.serving_model) is converted once,
with marks in place of the head's weights; every training batch goes through its copy cut at
the pooled features (served_graph.features_only) on LiteRT; Keras fits the head (dropout,
softmax) on the features; and export writes the trained head over the marks instead of
converting again (export.float_tflite). The head's layers are the model's own, so the model ends
with the trained head, and data order, augmentation and callbacks are unchanged. Validation
images are not augmented, so their features are computed once, not every epoch. Pixels
reach LiteRT as numpy batches read in the training loop's own thread
(input_pipeline.training_batches, fit_head), not through tf.data.

The features phase 1 computes anyway are kept (FeatureFile): the audit stage cross-validates
on them instead of running the base over every image a second time.

The features equal TensorFlow's to float rounding (tests/test_frozen_base.py); phase 2
(fine-tuning) changes the base and always runs on TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from image_classifier.data import npy
from image_classifier.litert.runner import Runner
from image_classifier.params import TrainParams
from image_classifier.training import served_graph
from image_classifier.training.models import find_base


def runs_on_litert(params: TrainParams, model: keras.Model, policy: str) -> bool:
    """train.frozen_base_runtime: `auto` picks LiteRT for a frozen base on a machine without a
    GPU, in float32 and on one machine (the cases where TensorFlow has nothing to add)."""
    base = find_base(model)
    if base is None or base.trainable or params.frozen_base_runtime == "tensorflow":
        return False
    if params.frozen_base_runtime == "litert":
        return True
    gpus = tf.config.list_physical_devices("GPU")
    return not gpus and params.distribute == "none" and policy == "float32"


def split_at_pooling(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(features, head) of a transfer model (models.transfer_model's input scaling -> base ->
    pooling -> dropout -> softmax): features ends with the pooling, head holds the layers
    after it. Both share the model's layers: training head trains the model."""
    chain = model.layers
    pooling = chain[chain.index(find_base(model)) + 1]
    features = keras.Model(model.inputs, pooling.output, name="frozen_features")
    inputs = keras.Input(pooling.output.shape[1:], name="features")
    x = inputs
    for layer in chain[chain.index(pooling) + 1 :]:
        x = layer(x)
    return features, keras.Model(inputs, x, name="head")


class LiteRTFeatures(Runner):
    """The model's frozen base on LiteRT, on every core: float32 pixels -> (n, dim) pooled
    features, a few images per call (Runner). The served graph is converted once with a
    marked head (served_graph.convert_marked) and kept in `graph` for export; this runs
    its copy cut at the features."""

    def __init__(self, model: keras.Model, threads: int | None = None) -> None:
        self.graph = served_graph.convert_marked(model)
        super().__init__(served_graph.features_only(self.graph), threads or os.cpu_count() or 1)
        self.dim = self.width


class FeatureFile:
    """Phase 1's features of every train and val image, rows in store order (train, then val),
    float16, written into a .npy file as they are computed, so memory does not grow with the
    data. A training image's row is its first view, augmented as in epoch 1: every image has
    one once that epoch ends, whatever the number of epochs, and the same params give the same
    file.

    Rows go to the file by positioned writes, not through a shared memory map: a map's dirty
    pages count in the process's resident memory until written back, which at 100,000 images
    is a couple of hundred MB for nothing."""

    def __init__(self, path: Path, n_train: int, n_val: int) -> None:
        self.path, self.n_train, self.n_val = path, n_train, n_val
        self._fd: int | None = None
        self._row_bytes = 0
        self._offset = 0
        self._seen = np.zeros(n_train, dtype=bool)

    def open(self, dim: int) -> None:
        shape = (self.n_train + self.n_val, dim)
        with self.path.open("wb") as f:
            f.write(npy.header(shape, np.float16))
            self._offset = f.tell()
            self._row_bytes = dim * 2
            f.truncate(self._offset + shape[0] * self._row_bytes)
        self._fd = os.open(self.path, os.O_WRONLY)

    def add_train(self, indices: np.ndarray, features: np.ndarray) -> None:
        # The batch that straddles two epochs can hold an image twice: its first copy counts.
        indices, first = np.unique(indices, return_index=True)
        new = ~self._seen[indices]
        rows = features[first[new]].astype(np.float16)
        for index, row in zip(indices[new], rows, strict=True):
            self._write(int(index), row)
        self._seen[indices[new]] = True

    def set_val(self, features: np.ndarray) -> None:
        self._write(self.n_train, np.ascontiguousarray(features, dtype=np.float16))

    def _write(self, row: int, values: np.ndarray) -> None:
        data = values.tobytes()
        offset = self._offset + row * self._row_bytes
        while data:
            written = os.pwrite(self._fd, data, offset)
            data, offset = data[written:], offset + written

    def complete(self) -> bool:
        return self._fd is not None and bool(self._seen.all())

    def close(self) -> None:
        """A run that did not see every image leaves an empty array instead, which tells the
        audit to compute its own."""
        complete = self.complete()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not complete:
            np.save(self.path, np.zeros((0, 0), dtype=np.float16))


@dataclasses.dataclass
class Kept:
    """What phase 1 on LiteRT leaves to later stages: every train and val image's features
    (the audit) and the served graph it converted, with the digest of the weights it holds
    (export writes the trained head into it instead of converting again)."""

    features: FeatureFile | None = None
    graph: bytes = b""
    weights_sha256: str | None = None


# Keras' batch size for evaluate() on arrays.
EVALUATE_BATCH = 32


def feature_batches(
    batches: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]],
    run: LiteRTFeatures,
    keep: FeatureFile | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The (pixels, labels, store indices) numpy batches (input_pipeline.training_batches) as
    (features, labels), computed as read; `keep` records each image's first."""
    for x, y, i in batches:
        out = run(x)
        if keep is not None:
            keep.add_train(i, out)
        yield out, y


def fit_head(
    head: keras.Model,
    batches: Iterator[tuple[np.ndarray, np.ndarray]],
    *,
    steps_per_epoch: int,
    epochs: int,
    validation_data: tuple[np.ndarray, np.ndarray],
    callbacks: list[keras.callbacks.Callback],
    class_weight: dict[int, float] | None = None,
    verbose: int = 2,
) -> int:
    """Keras' fit() loop, with its callback calls and epoch logs, over feature batches made in
    this thread; returns the number of epochs run. fit() would pull them through a tf.data
    generator on TensorFlow's threads, where LiteRT ran slower (docs/benchmarks.md).
    Batches are all the same size, so the mean of the batches' logs is the epoch's."""
    history = keras.callbacks.History()
    hooks = keras.callbacks.CallbackList(
        [*callbacks, history],
        add_progbar=verbose != 0,
        model=head,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
    )
    head.stop_training = False
    hooks.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in range(epochs):
        hooks.on_epoch_begin(epoch)
        sums: dict[str, float] = {}
        for step in range(steps_per_epoch):
            hooks.on_train_batch_begin(step)
            x, y = next(batches)
            batch_logs = head.train_on_batch(x, y, class_weight=class_weight, return_dict=True)
            for name, value in batch_logs.items():
                sums[name] = sums.get(name, 0.0) + value
            hooks.on_train_batch_end(step, batch_logs)
            if head.stop_training:  # a callback may stop mid-epoch, as in fit()
                break
        logs = {name: total / (step + 1) for name, total in sums.items()}
        # In evaluate()'s own batches, read from the arrays as it goes: given the arrays,
        # evaluate() first copies them whole into TensorFlow, every epoch (51 MB for 10,000
        # validation images from MobileNetV2). The same batches give the same numbers.
        val = head.evaluate(slices(*validation_data), verbose=0, return_dict=True)
        logs |= {f"val_{name}": value for name, value in val.items()}
        hooks.on_epoch_end(epoch, logs)
        if head.stop_training:
            break
    hooks.on_train_end(logs)
    return len(history.epoch)


def slices(
    x: np.ndarray, y: np.ndarray, batch_size: int = EVALUATE_BATCH
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(x, y) in consecutive batches of batch_size rows, the last one shorter: the batches
    evaluate() makes of the arrays themselves."""
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


def probabilities(
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    count: int,
    run: LiteRTFeatures,
    head: keras.Model,
) -> np.ndarray:
    """The whole model's probabilities for the `count` images of (pixels, labels) numpy
    batches (input_pipeline.inference_batches): the base on LiteRT, the head in Keras."""
    return head.predict(features_of(batches, count, run)[0], verbose=0)


def features_of(
    batches: Iterable[tuple[np.ndarray, np.ndarray]], count: int, run: LiteRTFeatures
) -> tuple[np.ndarray, np.ndarray]:
    """The `count` images of (pixels, labels) batches as one (features, labels) pair of
    arrays (validation: a few kB an image, 51 MB for 10,000 images from MobileNetV2),
    written into one array as they come: joined at the end, they would be held twice."""
    features = np.empty((count, run.dim), dtype=np.float32)
    labels, done = [], 0
    for x, y in batches:
        features[done : done + len(x)] = run(x)
        labels.append(y)
        done += len(x)
    if done != count:
        raise ValueError(f"features_of: the batches held {done} images, not {count}")
    return features, np.concatenate(labels)

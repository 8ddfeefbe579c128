"""Phase 1 with the frozen base on LiteRT (frozen_base.py): the same features as TensorFlow,
chosen only where it applies, and a model that trains as it does on TensorFlow."""

import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from image_classifier.litert.convert import to_tflite
from image_classifier.litert.runner import Runner
from image_classifier.params import parse_params
from image_classifier.training import fit_loop, frozen_base, models
from image_classifier.training.input_pipeline import inference_batches

from helpers import CLASSES, colours


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A MobileNetV2 base whose features are well scaled: random weights alone make them
    vanish (~1e-11), where any two runtimes agree trivially. Each BatchNormalization takes
    its statistics from one batch, as bench/scale.py does."""
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    base(colours(8, 32, 9).x.astype(np.float32) / 127.5 - 1, training=True)
    path = tmp_path_factory.mktemp("weights") / "base.weights.h5"
    base.save_weights(path)
    return path


def _params(weights, **train_params):
    raw = {"image": {"size": 32, "color_mode": "rgb"}}
    raw["train"] = {
        "model": "mobilenet_v2",
        "weights": None if weights is None else str(weights),
        "epochs": 8,
        "min_steps": 0,
        "batch_size": 8,
        "learning_rate": 0.003,
        # Off, so the images fitted are the ones validated on (see TRAIN below).
        "augment": {"rotation": 0.0, "zoom": 0.0, "translation": 0.0},
        **train_params,
    }
    return parse_params(raw)


def _model(params):
    return models.build_model(len(CLASSES), params.image, params.train)


def test_litert_features_equal_tensorflows_and_the_head_completes_the_model(weights_file):
    model = _model(_params(weights_file))
    features, head = frozen_base.split_at_pooling(model)
    x = colours(4, 32, 1).x.astype(np.float32)
    expected = features.predict(x, verbose=0)
    assert np.abs(expected).mean() > 0.01  # features that could disagree
    got = frozen_base.LiteRTFeatures(model)(x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # The served graph cut at the features is a conversion of the model up to the pooling.
    np.testing.assert_array_equal(got, Runner(to_tflite(features), os.cpu_count() or 1)(x))
    # The head holds the model's own layers after the pooling: together they are the model.
    np.testing.assert_allclose(head.predict(expected, verbose=0), model.predict(x, verbose=0))
    assert head.get_layer("probabilities") is model.get_layer("probabilities")


GPU = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")


@pytest.mark.parametrize(
    ("settings", "policy", "gpus", "expected"),
    [
        ({}, "float32", [], True),  # auto, a frozen base, no GPU
        ({}, "float32", [GPU], False),  # auto with a GPU: TensorFlow
        ({"frozen_base_runtime": "tensorflow"}, "float32", [], False),
        ({"frozen_base_runtime": "litert"}, "float32", [], True),
        ({"frozen_base_runtime": "litert"}, "float32", [GPU], True),  # asked for: even so
        ({}, "mixed_float16", [], False),  # mixed precision is for GPUs: TensorFlow
        ({"distribute": "mirrored"}, "float32", [], False),  # (litert + distribute: ParamsError)
        ({"weights": None}, "float32", [], False),  # no pretrained base: trained whole
        ({"model": "simple_cnn", "weights": None}, "float32", [], False),
    ],
)
def test_litert_is_chosen_only_for_a_frozen_base_on_one_cpu_machine(
    weights_file, monkeypatch, settings, policy, gpus, expected
):
    params = _params(settings.pop("weights", weights_file), **settings)
    model = _model(params)
    # The GPUs TensorFlow reports, not the test machine's: both cases run anywhere.
    real = tf.config.list_physical_devices
    monkeypatch.setattr(
        tf.config,
        "list_physical_devices",
        lambda device_type=None: list(gpus) if device_type == "GPU" else real(device_type),
    )
    assert frozen_base.runs_on_litert(params.train, model, policy) is expected


# Random features do not generalise, but they can be fitted: validating on the training
# images makes the kept epoch (lowest validation loss) the best fitted one.
TRAIN = colours(24, 32, 0)


def _fit(weights, runtime, features_file):
    """The fitted model, and the features phase 1 kept (train.py's FeatureFile)."""
    keep = frozen_base.FeatureFile(features_file, len(TRAIN), len(TRAIN))
    params = _params(weights, frozen_base_runtime=runtime)
    model = fit_loop.fit(params, TRAIN, TRAIN, CLASSES, kept=frozen_base.Kept(keep))
    keep.close()
    return model, np.load(features_file)


# The runtimes' features differ by float32 rounding (1e-6 of their size), which eight epochs
# of training grow: the two models' probabilities on these 30 unseen images differed by at
# most 4.8e-5 at train.seed 42 (this test's) and 1.4e-4 over seeds 0-4, with the same top-1
# class everywhere (the closest top two 9e-3 apart). About twice the largest.
ROUNDING_AFTER_TRAINING = 3e-4


def test_phase_one_on_litert_trains_as_on_tensorflow_and_is_reproducible(weights_file, tmp_path):
    on_tf, none_kept = _fit(weights_file, "tensorflow", tmp_path / "tf.npy")
    on_litert, kept = _fit(weights_file, "litert", tmp_path / "litert.npy")
    on_litert.save(tmp_path / "model.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras.models.load_model(tmp_path / "model.keras")
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    again, kept_again = _fit(weights_file, "litert", tmp_path / "again.npy")
    for a, b in zip(on_litert.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # Phase 1 keeps the features it computed, for the audit: every train image's (augmentation
    # is off here, so its first view is the image itself) and every val image's, the same on
    # every run. On TensorFlow nothing is kept: an empty array tells the audit to compute them.
    features, _ = frozen_base.split_at_pooling(on_litert)
    expected = features.predict(TRAIN.x.astype(np.float32), verbose=0)
    assert kept.shape == (2 * len(TRAIN), expected.shape[1]) and kept.dtype == np.float16
    np.testing.assert_allclose(kept[: len(TRAIN)], expected, rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(kept[len(TRAIN) :], expected, rtol=1e-2, atol=1e-3)
    np.testing.assert_array_equal(kept, kept_again)
    assert none_kept.shape == (0, 0)
    # Both runtimes fit the training images, to the same model up to float rounding.
    seen = TRAIN.x.astype(np.float32)
    for model in (on_tf, on_litert):
        assert (model.predict(seen, verbose=0).argmax(1) == TRAIN.labels).mean() >= 0.9
    unseen = colours(10, 32, 2).x.astype(np.float32)
    lite, tf_probs = on_litert.predict(unseen, verbose=0), on_tf.predict(unseen, verbose=0)
    np.testing.assert_allclose(lite, tf_probs, rtol=0, atol=ROUNDING_AFTER_TRAINING)
    # The same class for every image but one whose top two are too close to tell apart.
    top = np.sort(tf_probs, axis=1)
    decided = top[:, -1] - top[:, -2] > 2 * ROUNDING_AFTER_TRAINING
    assert decided.sum() >= len(unseen) - 1
    np.testing.assert_array_equal(lite.argmax(1)[decided], tf_probs.argmax(1)[decided])


def test_fit_accuracy_on_litert_equals_keras(weights_file):
    """A frozen base's fit accuracy runs the base on LiteRT (as phase 1 did), not Keras,
    with the same result."""
    params = _params(weights_file)
    model = _model(params)
    _, head = frozen_base.split_at_pooling(model)
    run = frozen_base.LiteRTFeatures(model)
    expected = model.predict(TRAIN.x.astype(np.float32), verbose=0)
    got = frozen_base.probabilities(inference_batches(TRAIN, 8), len(TRAIN), run, head)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    on_litert = fit_loop.fit_accuracy(
        model,
        TRAIN,
        params,
        lambda source: frozen_base.probabilities(
            inference_batches(source, 8), len(source), run, head
        ),
    )
    assert on_litert == fit_loop.fit_accuracy(model, TRAIN, params)
    assert on_litert["images"] == len(TRAIN)


class _Logs(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[dict] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs))


def test_fit_head_trains_and_calls_back_as_keras_fit():
    """fit_head's loop (feature batches made in the caller's thread) against fit() on the
    same batches: the same weights, epoch logs and early stop."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 8, 5)).astype(np.float32), rng.integers(0, 3, (9, 8))
    batches = list(zip(x, y, strict=True))
    val = rng.normal(size=(10, 5)).astype(np.float32), rng.integers(0, 3, 10)
    weights = {0: 1.0, 1: 2.0, 2: 0.5}
    keras.utils.set_random_seed(1)
    start = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    heads, logs = [], []
    for how in ("fit", "fit_head"):
        head = keras.models.clone_model(start)
        head.set_weights(start.get_weights())
        fit_loop.compile_model(head, 0.05, "adam", 3)  # whole calls, as training_budget
        # No epoch improves on the first by min_delta: patience 1 stops at the second.
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, min_delta=1.0)
        seen = _Logs()
        args = dict(epochs=5, validation_data=val, class_weight=weights, verbose=0)
        if how == "fit":
            x = tf.data.Dataset.from_generator(
                lambda: iter(batches),
                output_signature=(tf.TensorSpec((8, 5)), tf.TensorSpec((8,), tf.int64)),
            )
            history = head.fit(x.repeat(), steps_per_epoch=3, callbacks=[stop, seen], **args)
            ran = len(history.epoch)
        else:
            feed, hooks = iter(batches * 2), [stop, seen]
            ran = frozen_base.fit_head(head, feed, steps_per_epoch=3, callbacks=hooks, **args)
        assert ran == len(seen.epochs) == 2
        heads.append(head)
        logs.append(seen.epochs)
    assert len(logs[0]) == len(logs[1])
    for a, b in zip(*logs, strict=True):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6)
    for a, b in zip(heads[0].get_weights(), heads[1].get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_evaluate_in_slices_gives_what_evaluate_on_the_arrays_gives():
    """fit_head validates on slices of the validation arrays, not on the arrays (which
    evaluate() would copy whole into TensorFlow): the same numbers, bit for bit, over
    several batches and a shorter last one."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(70, 5)).astype(np.float32), rng.integers(0, 3, 70)
    keras.utils.set_random_seed(3)
    head = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    fit_loop.compile_model(head, 0.05, "adam", 1)
    assert [len(b[0]) for b in frozen_base.slices(x, y)] == [32, 32, 6]
    on_arrays = head.evaluate(x, y, verbose=0, return_dict=True)
    assert head.evaluate(frozen_base.slices(x, y), verbose=0, return_dict=True) == on_arrays


def test_features_of_fills_one_array_in_batch_order_and_checks_the_count():
    class Doubling:
        dim = 3

        def __call__(self, x):
            return np.repeat(2 * x[:, :1], 3, axis=1).astype(np.float32)

    batches = [(np.full((2, 1), i, np.float32), np.array([i, i])) for i in range(3)]
    features, labels = frozen_base.features_of(iter(batches), 6, Doubling())
    np.testing.assert_array_equal(features[:, 0], [0, 0, 2, 2, 4, 4])
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="held 6 images, not 7"):
        frozen_base.features_of(iter(batches), 7, Doubling())

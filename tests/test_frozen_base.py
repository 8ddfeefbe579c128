"""Phase 1 with the frozen base on LiteRT (frozen_base.py): the same features as TensorFlow,
chosen only where it applies, and a model that trains as it does on TensorFlow."""

import functools
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from image_classifier.params import parse_params
from image_classifier.training import fit_loop, frozen_base, models

from test_training_schedule import CLASSES, colours


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
    got = frozen_base.LiteRTFeatures(features)(x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
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
    model = fit_loop.fit(params, TRAIN, TRAIN, CLASSES, keep_features=keep)
    keep.close()
    return model, np.load(features_file)


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
    assert (lite.argmax(1) == tf_probs.argmax(1)).mean() >= 0.95
    assert np.abs(lite - tf_probs).max() < 0.05


def test_fit_accuracy_on_litert_equals_keras(weights_file):
    """A frozen base's fit accuracy runs the base on LiteRT (as phase 1 did), not Keras,
    with the same result."""
    params = _params(weights_file)
    model = _model(params)
    features, head = frozen_base.split_at_pooling(model)
    run = frozen_base.LiteRTFeatures(features)
    pixels = tf.data.Dataset.from_tensor_slices((TRAIN.x, TRAIN.labels)).batch(8)
    expected = model.predict(TRAIN.x.astype(np.float32), verbose=0)
    got = frozen_base.probabilities(pixels, run, head)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    on_litert = fit_loop.fit_accuracy(
        model, TRAIN, params, functools.partial(frozen_base.probabilities, run=run, head=head)
    )
    assert on_litert == fit_loop.fit_accuracy(model, TRAIN, params)
    assert on_litert["images"] == len(TRAIN)

import keras
import numpy as np
import pytest

from image_classifier import models
from image_classifier.params import ImageParams, TrainParams

RGB32 = ImageParams(size=32, color_mode="rgb")


def test_simple_cnn_outputs_probabilities():
    model = models.build_model(4, ImageParams(size=16, color_mode="grayscale"), TrainParams())
    probs = model.predict(np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 1)), verbose=0)
    assert probs.shape == (2, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_caffe_layer_matches_keras_preprocess_input():
    x = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    ours = models._caffe_input(3)(x)
    expected = keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-3)


@pytest.mark.parametrize("name", sorted(models.TRANSFER_BASES))
def test_transfer_bases_build_offline(name):
    model = models.build_model(3, RGB32, TrainParams(model=name, weights=None))
    assert model.output_shape == (None, 3)


def test_local_weights_file_is_loaded_and_base_frozen(tmp_path):
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "base.weights.h5"
    base.save_weights(path)
    params = TrainParams(model="mobilenet_v2", weights=str(path), fine_tune_layers=0)
    model = models.build_model(2, RGB32, params)
    inner = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    np.testing.assert_array_equal(inner.get_weights()[0], base.get_weights()[0])
    assert not inner.trainable
    assert len(model.trainable_weights) == 2  # only the new classification head


def test_fine_tune_unfreezes_top_layers_but_not_batchnorm():
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    models.set_trainable(base, 10, pretrained=True)
    top = base.layers[-10:]
    assert all(
        layer.trainable for layer in top if not isinstance(layer, keras.layers.BatchNormalization)
    )
    assert not any(layer.trainable for layer in base.layers[:-10] if layer.weights)
    assert not any(
        layer.trainable for layer in top if isinstance(layer, keras.layers.BatchNormalization)
    )
    models.set_trainable(base, 0, pretrained=False)  # random weights: train everything
    assert all(layer.trainable for layer in base.layers)


def test_mixed_precision_model_converts_to_float32_with_same_weights():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = models.build_model(3, RGB32, TrainParams(model="mobilenet_v2", weights=None))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert mixed.get_layer("probabilities").dtype_policy.name == "float32"
    assert any(layer.dtype_policy.name == "mixed_float16" for layer in mixed.layers)
    plain = models.with_dtype_policy(mixed, "float32")
    assert {layer.dtype_policy.name for layer in plain.layers} == {"float32"}
    for a, b in zip(plain.get_weights(), mixed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(plain.predict(x, verbose=0), mixed.predict(x, verbose=0), atol=2e-2)

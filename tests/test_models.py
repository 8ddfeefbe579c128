import keras
import numpy as np
import pytest

from image_classifier.params import ImageParams, ParamsError, TrainParams
from image_classifier.training import models

RGB32 = ImageParams(size=32, color_mode="rgb")


def test_simple_cnn_outputs_probabilities():
    model = models.build_model(4, ImageParams(size=16, color_mode="grayscale"), TrainParams())
    probs = model.predict(np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 1)), verbose=0)
    assert probs.shape == (2, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(("size", "stems"), [(16, 0), (32, 0), (64, 1), (224, 3)])
def test_simple_cnn_blocks_work_at_most_at_32_px(size, stems):
    """A stem (a convolution, then pooling) halves larger images until the blocks' maps are
    at most CNN_BLOCK_SIZE a side: their cost per image stays that of a 32-px image."""
    model = models.simple_cnn(3, ImageParams(size=size, color_mode="rgb"), 0.25)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 6 + stems
    assert convs[stems].output.shape[1] <= models.CNN_BLOCK_SIZE
    assert convs[stems].output.shape[1] == size / 2**stems


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


def test_fine_tune_counts_layers_with_weights_and_keeps_batchnorm_frozen():
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    tunable = models.tunable_layers(base)
    # MobileNetV2's convolutions: the stem, 2 in block 0, 3 in each of blocks 1-16, the head.
    assert len(tunable) == 1 + 2 + 16 * 3 + 1
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in tunable)
    models.set_trainable(base, 10)
    assert [layer for layer in base.layers if layer.trainable] == tunable[-10:]
    assert len(base.trainable_weights) == sum(len(layer.weights) for layer in tunable[-10:])
    models.set_trainable(base, -1)
    assert [layer for layer in base.layers if layer.trainable] == tunable
    models.set_trainable(base, 0)
    assert not base.trainable_weights
    with pytest.raises(ParamsError, match=r"mobilenetv2.* has 52 layers with weights.*got 53"):
        models.set_trainable(base, 53)


def _stem_input(base: keras.Model) -> keras.Model:
    """What the base's first convolution receives, as a function of the base's input."""
    return keras.Model(base.input, models.tunable_layers(base)[0].input)


FAMILIES = {
    "mobilenet_v2": keras.applications.mobilenet_v2,
    "efficientnet_b0": keras.applications.efficientnet,
    "resnet50": keras.applications.resnet50,
    "vgg19": keras.applications.vgg19,
}


@pytest.fixture
def offline_imagenet(tmp_path, monkeypatch):
    """weights="imagenet" without the internet: Keras' download returns a local file made
    like the real one (for EfficientNet: the ImageNet statistics in its Normalization)."""
    from keras.src.utils import file_utils

    made: dict[str, str] = {}

    def fake_get_file(fname, *args, **kwargs):
        return made["path"]

    def make(name: str) -> str:
        constructor, _ = models.TRANSFER_BASES[name]
        base = constructor(include_top=False, weights=None, input_shape=(32, 32, 3))
        if name == "efficientnet_b0":
            norm = next(la for la in base.layers if isinstance(la, keras.layers.Normalization))
            norm.set_weights(
                [
                    np.array(models.IMAGENET_MEAN_RGB, "float32"),
                    np.square(np.array(models.IMAGENET_STDDEV_RGB, "float32")),
                    norm.get_weights()[2],
                ]
            )
        made["path"] = str(tmp_path / f"{name}.weights.h5")
        base.save_weights(made["path"])
        return made["path"]

    monkeypatch.setattr(file_utils, "get_file", fake_get_file)
    return make


@pytest.mark.parametrize("source", ["imagenet", "file", None])
@pytest.mark.parametrize("name", sorted(models.TRANSFER_BASES))
def test_input_scaling_matches_keras_preprocessing(name, source, offline_imagenet):
    """Whatever the weights come from, the base's first layer sees exactly what it sees in
    Keras' own ImageNet model fed with keras.applications.<family>.preprocess_input."""
    path = offline_imagenet(name)
    constructor, _ = models.TRANSFER_BASES[name]
    reference = constructor(include_top=False, weights="imagenet", input_shape=(32, 32, 3))
    weights = path if source == "file" else source
    model = models.build_model(3, RGB32, TrainParams(model=name, weights=weights))
    base = models.find_base(model)
    # The tensor the model feeds its base: the output of the layer just before it.
    before_base = keras.Model(model.input, model.layers[model.layers.index(base) - 1].output)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = _stem_input(reference)(FAMILIES[name].preprocess_input(x.copy()))
    ours = _stem_input(base)(before_base(x))
    np.testing.assert_allclose(np.asarray(ours), np.asarray(expected), rtol=1e-5, atol=1e-3)


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

"""Keras 3 networks chosen by `train.model`. Inputs are raw pixels in [0, 255]; each network
scales them itself, so the exported model needs nothing but the shared preprocessing function."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import layers

from image_classifier.params import ImageParams, TrainParams

# The ImageNet statistics Keras' "caffe" preprocessing subtracts (BGR order).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _caffe_input(channels: int) -> layers.Layer:
    """RGB->BGR and mean subtraction as a frozen 1x1 convolution: a plain, portable layer
    (no Lambda) that converts to TFLite and reloads in safe mode."""
    conv = layers.Conv2D(channels, 1, trainable=False, name="caffe_preprocess")
    conv.build((None, None, None, channels))
    flip = np.eye(channels, dtype=np.float32)[::-1].reshape(1, 1, channels, channels)
    mean = np.array(CAFFE_MEAN_BGR[:channels], dtype=np.float32)
    conv.set_weights([flip, -mean])
    return conv


# name -> (constructor, input scaling layer factory)
TRANSFER_BASES: dict[
    str, tuple[Callable[..., keras.Model], Callable[[int], layers.Layer | None]]
] = {
    "mobilenet_v2": (
        keras.applications.MobileNetV2,
        lambda c: layers.Rescaling(1 / 127.5, offset=-1, name="scale_to_pm1"),
    ),
    # Keras' EfficientNet normalises [0, 255] input inside the network.
    "efficientnet_b0": (keras.applications.EfficientNetB0, lambda c: None),
    "resnet50": (keras.applications.ResNet50, _caffe_input),
    "vgg19": (keras.applications.VGG19, _caffe_input),
}


def simple_cnn(num_classes: int, image: ImageParams, dropout: float) -> keras.Model:
    """A small VGG-style CNN: fast on a laptop CPU, ~0.99 on the bundled digits."""
    inputs = keras.Input((image.size, image.size, image.channels), name="image")
    x = layers.Rescaling(1 / 255.0)(inputs)
    for filters in (32, 64, 128):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization(momentum=0.9)(x)  # small data: settle fast
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", name="probabilities", dtype="float32"
    )(x)
    return keras.Model(inputs, outputs, name="simple_cnn")


def set_trainable(base: keras.Model, fine_tune_layers: int, pretrained: bool) -> None:
    """Freeze a pretrained base except its top `fine_tune_layers` (-1: all).

    BatchNormalization layers stay frozen when fine-tuning part of a base, as the Keras
    transfer-learning guide advises; a base with random weights is always trained whole
    (there is nothing to keep)."""
    train_all = not pretrained or fine_tune_layers == -1
    first = len(base.layers) - fine_tune_layers
    base.trainable = True
    for i, layer in enumerate(base.layers):
        layer.trainable = train_all or (
            i >= first and not isinstance(layer, layers.BatchNormalization)
        )
    if not train_all and fine_tune_layers == 0:
        base.trainable = False


def transfer_model(num_classes: int, image: ImageParams, train: TrainParams) -> keras.Model:
    constructor, scaling = TRANSFER_BASES[train.model]
    shape = (image.size, image.size, image.channels)
    base = constructor(include_top=False, weights=train.weights, input_shape=shape)
    set_trainable(base, train.fine_tune_layers, pretrained=train.weights is not None)
    inputs = keras.Input(shape, name="image")
    scale = scaling(image.channels)
    x = scale(inputs) if scale is not None else inputs
    # training=False keeps the base's BatchNormalization in inference mode while fine-tuning.
    x = base(x, training=False if train.weights is not None else None)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(train.dropout)(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", name="probabilities", dtype="float32"
    )(x)
    return keras.Model(inputs, outputs, name=train.model)


def build_model(num_classes: int, image: ImageParams, train: TrainParams) -> keras.Model:
    if train.model == "simple_cnn":
        return simple_cnn(num_classes, image, train.dropout)
    return transfer_model(num_classes, image, train)


def _set_policy(config: object, policy: str) -> None:
    """Rewrite every layer's dtype policy in a (nested) model config; the output stays float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            config["config"]["name"] = policy
            return
        inner = config.get("config")
        if isinstance(inner, dict) and inner.get("name") == "probabilities":
            return
        for value in config.values():
            _set_policy(value, policy)
    elif isinstance(config, list):
        for value in config:
            _set_policy(value, policy)


def with_dtype_policy(model: keras.Model, policy: str) -> keras.Model:
    """The same network and weights under another dtype policy.

    Mixed precision is a training-time detail: the model is trained as mixed_float16 (variables
    stay float32) and saved as float32, so evaluation, export and serving are unchanged. The
    softmax output is float32 under either policy, as Keras' mixed-precision guide requires."""
    config = model.get_config()
    _set_policy(config, policy)
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    for mine, theirs in zip(clone.layers, model.layers, strict=True):
        mine.trainable = theirs.trainable
    out = clone.get_layer("probabilities")
    if out.dtype_policy.name != "float32":
        raise ValueError("the probabilities layer must stay float32")
    return clone

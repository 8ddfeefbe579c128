"""Keras 3 networks chosen by `train.model`. Inputs are raw pixels in [0, 255]; each network
scales them itself, so the exported model needs nothing but the shared preprocessing function."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import layers

from image_classifier.params import ImageParams, ParamsError, TrainParams

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
    # Keras' EfficientNet normalises [0, 255] input inside the network (see _efficientnet_fix).
    "efficientnet_b0": (keras.applications.EfficientNetB0, lambda c: None),
    "resnet50": (keras.applications.ResNet50, _caffe_input),
    "vgg19": (keras.applications.VGG19, _caffe_input),
}

# What Keras' EfficientNet ImageNet weights normalise with (keras.applications.efficientnet).
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


def _efficientnet_fix(base: keras.Model, weights: str | None) -> layers.Layer | None:
    """Make EfficientNet scale its input the same whatever the weights came from.

    Keras adds an extra Rescaling(1/sqrt(stddev)) after the base's Normalization layer only
    when `weights == "imagenet"` (see TF issue 49930), so the same ImageNet
    weights loaded from a local file would see differently scaled input. This returns the
    per-channel affine layer that, placed before the base, has the same effect; for random
    weights it also sets the Normalization statistics the ImageNet weights carry."""
    if weights == "imagenet" or base.input_shape[-1] != 3:
        return None
    norm = next(layer for layer in base.layers if isinstance(layer, layers.Normalization))
    if weights is None:
        norm.set_weights(
            [
                np.array(IMAGENET_MEAN_RGB, np.float32),
                np.square(np.array(IMAGENET_STDDEV_RGB, np.float32)),
                *norm.get_weights()[2:],
            ]
        )
        norm.finalize_state()  # the layer computes with copies of its variables; refresh them
    mean = np.asarray(norm.get_weights()[0], np.float64).reshape(-1)
    factor = 1 / np.sqrt(np.array(IMAGENET_STDDEV_RGB))
    # (y/255 - m) = (x/255 - m) * f  <=>  y = f x + 255 m (1 - f)
    return layers.Rescaling(
        scale=factor.tolist(), offset=(255 * mean * (1 - factor)).tolist(), name="imagenet_fix"
    )


# simple_cnn's blocks work on feature maps of at most this many pixels a side.
CNN_BLOCK_SIZE = 32


def simple_cnn(num_classes: int, image: ImageParams, dropout: float) -> keras.Model:
    """A small VGG-style CNN: fast on a laptop CPU, ~0.99 on the bundled digits.

    Larger images first pass a stem, one convolution at full resolution then 2x2 pooling,
    until the map is at most CNN_BLOCK_SIZE a side: the blocks' cost then stays that of a
    32-pixel image, whatever image.size is (the time per step: docs/benchmarks.md)."""
    inputs = keras.Input((image.size, image.size, image.channels), name="image")
    x = layers.Rescaling(1 / 255.0)(inputs)
    side = image.size
    while side > CNN_BLOCK_SIZE:
        x = layers.Conv2D(32, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
        side //= 2
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


def tunable_layers(base: keras.Model) -> list[layers.Layer]:
    """The base's layers that fine-tuning can unfreeze, bottom to top: those with weights,
    except batch and input normalisation (their statistics stay as pretrained)."""
    frozen = (layers.BatchNormalization, layers.Normalization)
    return [layer for layer in base.layers if layer.weights and not isinstance(layer, frozen)]


def check_fine_tune_layers(base: keras.Model, fine_tune_layers: int) -> list[layers.Layer]:
    """The base's tunable layers; ParamsError when fine_tune_layers asks for more. Called when
    the model is built, so a wrong value stops the run before phase 1, not after it."""
    tunable = tunable_layers(base)
    if fine_tune_layers > len(tunable):
        raise ParamsError(
            f"train.fine_tune_layers: {base.name} has {len(tunable)} layers with weights "
            f"(not counting normalisation); use 1..{len(tunable)} or -1 for all "
            f"(got {fine_tune_layers})"
        )
    return tunable


def set_trainable(base: keras.Model, fine_tune_layers: int) -> None:
    """Freeze the base except its top `fine_tune_layers` tunable layers (-1: all of them).

    BatchNormalization stays frozen, and in inference mode (the model calls the base with
    training=False), as the Keras transfer-learning guide requires."""
    tunable = check_fine_tune_layers(base, fine_tune_layers)
    n = len(tunable) if fine_tune_layers == -1 else fine_tune_layers
    base.trainable = n > 0
    unfrozen = {id(layer) for layer in tunable[len(tunable) - n :]} if n else set()
    for layer in base.layers:
        layer.trainable = id(layer) in unfrozen


# The early activations whose statistics the served model also returns, per base: the last
# at half and the last at a quarter of the input's resolution (what `ood.method:
# mahalanobis_early` scores; for MobileNetV2 measured against other layers in
# docs/benchmarks.md, "None of these"; the others follow the same rule, not measured).
# simple_cnn has none.
EARLY_LAYERS = {
    "mobilenet_v2": ("block_1_expand_relu", "block_3_expand_relu"),
    "efficientnet_b0": ("block2a_expand_activation", "block3a_expand_activation"),
    "resnet50": ("conv1_relu", "conv2_block3_out"),
    "vgg19": ("block2_conv2", "block3_conv4"),
}


def early_layers(model: keras.Model) -> tuple[str, ...]:
    """The base's early activations (EARLY_LAYERS) in a transfer model; () for others."""
    base = find_base(model)
    names = EARLY_LAYERS.get(model.name, ())
    if base is None or not set(names) <= {layer.name for layer in base.layers}:
        return ()
    return names


def find_base(model: keras.Model) -> keras.Model | None:
    """The pretrained network nested in a transfer model (None for simple_cnn)."""
    return next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)


def transfer_model(num_classes: int, image: ImageParams, train: TrainParams) -> keras.Model:
    """Input scaling -> base -> pooling -> dropout -> softmax.

    A pretrained base starts frozen (train.py's phase 1 trains the head; phase 2 unfreezes
    `fine_tune_layers`); a base with random weights is trained whole (nothing to keep)."""
    constructor, scaling = TRANSFER_BASES[train.model]
    shape = (image.size, image.size, image.channels)
    base = constructor(include_top=False, weights=train.weights, input_shape=shape)
    pretrained = train.weights is not None
    if pretrained:
        check_fine_tune_layers(base, train.fine_tune_layers)
        set_trainable(base, 0)
    fix = _efficientnet_fix(base, train.weights) if train.model == "efficientnet_b0" else None
    inputs = keras.Input(shape, name="image")
    x = inputs
    for layer in (scaling(image.channels), fix):
        if layer is not None:
            x = layer(x)
    # training=False keeps the base's BatchNormalization in inference mode while fine-tuning.
    x = base(x, training=False if pretrained else None)
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

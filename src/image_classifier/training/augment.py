"""Training-time augmentation as one stateless TensorFlow function.

Every random number comes from tf.random.stateless_uniform with an explicit (seed, step) key,
so a batch is augmented the same way whichever thread of a parallel tf.data map runs it, and
in whatever order. That keeps training reproducible without enable_op_determinism, which
would run the map sequentially (see training/fit_loop.py). Flip, rotation, zoom and translation are
composed into one affine transform per image: one resampling pass instead of four.
"""

from __future__ import annotations

import math

import tensorflow as tf

from image_classifier.params import AugmentParams


def _symmetric(u: tf.Tensor, amount: float) -> tf.Tensor:
    """Uniform in [-amount, amount] from uniform [0, 1) numbers."""
    return (2.0 * u - 1.0) * amount


def affine_transforms(
    u: tf.Tensor, height: tf.Tensor, width: tf.Tensor, aug: AugmentParams
) -> tf.Tensor:
    """(n, 8) ImageProjectiveTransformV3 rows mapping output pixels to input pixels.

    input = s * R(theta) * F * (output - centre) + centre + shift, with F the flips, s the
    zoom (s > 1 shows more of the image, i.e. zooms out) and shift the translation.
    """
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    ones = tf.ones_like(u[:, 0])
    flip_x = ones
    flip_y = ones
    if aug.flip in ("horizontal", "horizontal_and_vertical"):
        flip_x = tf.where(u[:, 0] < 0.5, -ones, ones)
    if aug.flip in ("vertical", "horizontal_and_vertical"):
        flip_y = tf.where(u[:, 1] < 0.5, -ones, ones)
    theta = _symmetric(u[:, 2], aug.rotation * 2.0 * math.pi)
    scale = 1.0 + _symmetric(u[:, 3], aug.zoom)
    shift_x = _symmetric(u[:, 4], aug.translation) * w
    shift_y = _symmetric(u[:, 5], aug.translation) * h
    cos, sin = tf.cos(theta), tf.sin(theta)
    a0, a1 = scale * cos * flip_x, -scale * sin * flip_y
    b0, b1 = scale * sin * flip_x, scale * cos * flip_y
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    a2 = cx + shift_x - (a0 * cx + a1 * cy)
    b2 = cy + shift_y - (b0 * cx + b1 * cy)
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment_batch(images: tf.Tensor, seed: tf.Tensor, aug: AugmentParams) -> tf.Tensor:
    """Augment a float32 batch (n, h, w, c) of pixels in [0, 255]; same seed, same result."""
    if not aug.enabled:
        return images
    shape = tf.shape(images)
    u = tf.random.stateless_uniform((shape[0], 7), seed=seed)
    if aug.flip != "none" or aug.rotation or aug.zoom or aug.translation:
        images = tf.raw_ops.ImageProjectiveTransformV3(
            images=images,
            transforms=affine_transforms(u, shape[1], shape[2], aug),
            output_shape=shape[1:3],
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="NEAREST",
        )
    if aug.contrast:
        factor = 1.0 + _symmetric(u[:, 6], aug.contrast)
        mean = tf.reduce_mean(images, axis=(1, 2), keepdims=True)
        images = tf.clip_by_value((images - mean) * factor[:, None, None, None] + mean, 0, 255)
    return images

"""Keras model -> LiteRT flatbuffer, shared by export (the served model) and train (the frozen
base's features, training/frozen_base.py)."""

from __future__ import annotations

import tempfile

import keras
import tensorflow as tf


def to_tflite(model: keras.Model) -> bytes:
    """Keras -> SavedModel -> float32 LiteRT flatbuffer (quantize.py may rewrite it). Goes
    through export() to keep the log quiet."""
    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        return tf.lite.TFLiteConverter.from_saved_model(tmp).convert()

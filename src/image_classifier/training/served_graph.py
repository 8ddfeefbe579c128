"""The trained network as it is served, and its LiteRT conversion done once per base.

serving_model gives one output row per image: the logits, the pooled features and, for a base
with early activations, their statistics (export.py writes it as model.tflite).

A frozen base does not change while phase 1 fits the head. So training converts the served
graph once, with marks in place of the head's weights (seeded values that occur nowhere else
in the file), runs its base from a copy cut at the pooled features (features_only: the early
statistics would cost phase 1 a tenth of its forward rate), and keeps the file with a digest
of every other weight (saved_models/served_graph.tflite and .json). Export writes the trained
head's weights over the marks instead of converting again, when the digest still matches the
model's: a fine-tuned base (phase 2) no longer does, and export converts. The result is the
file a conversion of the trained model gives, byte for byte
(tests/test_train_audit_features.py).
"""

from __future__ import annotations

import hashlib

import flatbuffers
import keras
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from keras import layers

from image_classifier.litert.convert import to_tflite
from image_classifier.training import models

HEAD = "probabilities"  # the Dense layer whose weights the marks stand for
MARK_SEED = 20261207


def serving_model(model: keras.Model, head: list[np.ndarray] | None = None) -> keras.Model:
    """The trained network as it is served: one output row per image, the logits (the
    `probabilities` layer without its softmax, with its weights or `head`), the pooled
    features that layer reads and, for a base with early activations
    (models.EARLY_LAYERS), their per-channel means then the means of their squares. One
    output, so nothing depends on the order a converter gives several; the base runs once
    for all of them."""
    dense = model.get_layer(HEAD)
    logits = layers.Dense(dense.units, name="logits", dtype="float32")
    early = models.early_layers(model)
    if not early:
        parts = [logits(dense.input), dense.input]
    else:
        # Replays the transfer model's chain (models.transfer_model) with a base that also
        # returns the early activations.
        base = models.find_base(model)
        maps = [base.get_layer(name).output for name in early]
        both = keras.Model(base.inputs, [base.outputs[0], *maps], name="base_and_early")
        x = inputs = keras.Input(model.inputs[0].shape[1:], name="image")
        for layer in model.layers[1:]:
            if layer is base:
                x, *maps = both(x)
            elif layer is dense:
                break
            else:
                x = layer(x)
        # Named: a loaded model's layers keep their names, and Keras' automatic names for new
        # layers start again from the same ones.
        means, mean_squares = [], []
        for i, m in enumerate(maps):
            squares = layers.Multiply(name=f"early_{i}_squares", dtype="float32")([m, m])
            pool = layers.GlobalAveragePooling2D(name=f"early_{i}_mean", dtype="float32")
            pool_squares = layers.GlobalAveragePooling2D(name=f"early_{i}_mean_sq", dtype="float32")
            means.append(pool(m))
            mean_squares.append(pool_squares(squares))
        parts = [logits(x), x, *means, *mean_squares]
    out = layers.Concatenate(name="logits_and_features", dtype="float32")(parts)
    logits.set_weights(head if head is not None else dense.get_weights())
    return keras.Model(inputs if early else model.inputs, out, name=f"{model.name}_served")


def early_width(model: keras.Model) -> int:
    """Values per image of the early statistics in serving_model's output (0: none)."""
    base = models.find_base(model)
    early = models.early_layers(model)
    return sum(2 * int(base.get_layer(name).output.shape[-1]) for name in early)


def head_weights(model: keras.Model) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(w).astype(np.float32) for w in model.get_layer(HEAD).weights]


def marks(model: keras.Model) -> list[np.ndarray]:
    """Seeded stand-ins for the head's kernel and bias: in [1, 2), so no zero bias can be
    shared with another buffer of the file, and no trained head's weights look like them."""
    rng = np.random.default_rng(MARK_SEED)
    return [rng.uniform(1, 2, w.shape).astype(np.float32) for w in head_weights(model)]


def weights_digest(model: keras.Model) -> str:
    """SHA-256 of every weight of the model but its head's, in order, with their shapes (not
    their names: Keras numbers the names of a second model built in the same process)."""
    digest = hashlib.sha256()
    head = {id(w) for w in model.get_layer(HEAD).weights}
    for w in model.weights:
        if id(w) in head:
            continue
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(w))
        digest.update(f"{value.dtype}{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def convert(model: keras.Model) -> bytes:
    """The served graph of the trained model as float32 LiteRT (model.tflite before any
    quantization)."""
    return to_tflite(serving_model(model))


def convert_marked(model: keras.Model) -> bytes:
    """The served graph as float32 LiteRT, the head's weights replaced by marks(model)."""
    return to_tflite(serving_model(model, marks(model)))


def with_head(marked: bytes, model: keras.Model) -> bytes | None:
    """convert_marked's file with `model`'s trained head written over the marks; None when a
    mark is not found exactly once (a converter that stores them differently: convert)."""
    out = bytearray(marked)
    for mark, value in zip(marks(model), head_weights(model), strict=True):
        # A Dense kernel (in, out) is a FULLY_CONNECTED weight (out, in) in LiteRT.
        for layout in (np.transpose, np.asarray):
            found = _find_once(out, np.ascontiguousarray(layout(mark)).tobytes())
            if found is not None:
                data = np.ascontiguousarray(layout(value)).tobytes()
                out[found : found + len(data)] = data
                break
        else:
            return None
    return bytes(out)


def _find_once(data: bytearray, pattern: bytes) -> int | None:
    first = data.find(pattern)
    if first < 0 or data.find(pattern, first + 1) >= 0:
        return None
    return first


def features_only(served: bytes) -> bytes:
    """The served graph cut at the pooled features: its one output is the input of the head's
    FULLY_CONNECTED, and only the operators that compute it remain (LiteRT runs every
    operator of a graph, needed or not). Its features are those of a conversion of the model
    up to the pooling, bit for bit (tests/test_frozen_base.py)."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(served), 0)
    graph = model.subgraphs[0]

    def code(op) -> int:
        opcode = model.operatorCodes[op.opcodeIndex]
        return max(opcode.builtinCode, opcode.deprecatedBuiltinCode)

    heads = [op for op in graph.operators if code(op) == schema.BuiltinOperator.FULLY_CONNECTED]
    if len(heads) != 1:
        raise ValueError(f"expected one FULLY_CONNECTED operator (the head), found {len(heads)}")
    features = int(heads[0].inputs[0])
    producer = {int(t): i for i, op in enumerate(graph.operators) for t in op.outputs}
    needed, pending = set(), [features]
    while pending:
        i = producer.get(pending.pop())
        if i is not None and i not in needed:
            needed.add(i)
            pending.extend(int(t) for t in graph.operators[i].inputs if t >= 0)
    graph.operators = [op for i, op in enumerate(graph.operators) if i in needed]
    graph.outputs = np.array([features], dtype=np.int32)
    for signature in model.signatureDefs or []:
        output = schema.TensorMapT()
        output.name, output.tensorIndex = b"features", features
        signature.outputs = [output]
    builder = flatbuffers.Builder(len(served))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())

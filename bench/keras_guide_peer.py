"""The peer bench/scale.py compares with: the Keras transfer-learning guide's plain pattern.

    python bench/keras_guide_peer.py DATA_DIR WEIGHTS_FILE [--epochs 1] [--size 224]

image_dataset_from_directory (80/20 split) -> cache() -> prefetch, augmentation layers in the
model, a frozen MobileNetV2 base, GlobalAveragePooling, Dropout and a Dense head, fit with
validation: what the tutorials this project replaces do, on the same data and weights file.
Prints its fit time and validation accuracy as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import tensorflow as tf


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("weights")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    size = (args.size, args.size)
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        args.data,
        validation_split=0.2,
        subset="both",
        seed=0,
        image_size=size,
        batch_size=args.batch_size,
    )
    classes = len(train_ds.class_names)
    train_ds = train_ds.cache().prefetch(tf.data.AUTOTUNE)
    val_ds = val_ds.cache().prefetch(tf.data.AUTOTUNE)
    augmentation = keras.Sequential(
        [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)]
    )
    base = keras.applications.MobileNetV2(
        input_shape=(*size, 3), include_top=False, weights=args.weights
    )
    base.trainable = False
    inputs = keras.Input((*size, 3))
    x = augmentation(inputs)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=2)
    fit_s = time.perf_counter() - start
    val_accuracy = history.history["val_accuracy"][-1]
    print(json.dumps({"fit_s": round(fit_s, 1), "val_accuracy": round(val_accuracy, 4)}))


if __name__ == "__main__":
    main()

"""The peer bench/scale.py compares with: TensorFlow's MobileNetV2 transfer-learning tutorial.

    python bench/keras_guide_peer.py DATA_DIR WEIGHTS_FILE [--epochs 1] [--size 224] [--cache]

The pattern of tensorflow.org/tutorials/images/transfer_learning, on a folder of class
sub-folders: keras.utils.image_dataset_from_directory (80/20 split), then .prefetch(AUTOTUNE)
and no .cache(); augmentation layers inside the model (RandomFlip("horizontal"),
RandomRotation(0.2)), mobilenet_v2.preprocess_input, a frozen MobileNetV2 base called with
training=False, GlobalAveragePooling, Dropout(0.2) and a Dense head (softmax over the classes
here, where the tutorial has two), Adam at 1e-4, fit with validation. --cache adds .cache()
before .prefetch, which keeps every decoded image as float32 in memory (the data pipeline of
keras.io's transfer-learning guide); one epoch never reads that cache back.
Prints its fit time and validation accuracy as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("weights")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache", action="store_true", help="add .cache() before .prefetch")
    args = parser.parse_args()
    print_header("TensorFlow", "Keras")
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
    if args.cache:
        train_ds, val_ds = train_ds.cache(), val_ds.cache()
    train_ds = train_ds.prefetch(tf.data.AUTOTUNE)
    val_ds = val_ds.prefetch(tf.data.AUTOTUNE)
    augmentation = keras.Sequential(
        [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.2)]
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
        optimizer=keras.optimizers.Adam(1e-4),
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

"""Stage `train`: fit the model chosen in params.yaml and write saved_models/model.keras.

python -m image_classifier.train
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from image_classifier import atomic, config
from image_classifier.cli import run_stage
from image_classifier.dataset import Arrays, load_split
from image_classifier.manifests import class_names, read_manifest
from image_classifier.models import augmentation, build_model
from image_classifier.params import Params, ParamsError, TrainParams

log = logging.getLogger(__name__)

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


def seed_everything(seed: int) -> None:
    """Same params, same weights: seeds Python, NumPy and TF, and forces deterministic kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        # Reads the cluster from TF_CONFIG, as on every multi-worker TensorFlow setup.
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()  # the default: this one device


def make_datasets(
    train: Arrays, val: Arrays, params: TrainParams
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """In-memory arrays to batched datasets; augmentation runs on training batches only."""
    train_ds = (
        tf.data.Dataset.from_tensor_slices((train.x, train.y))
        .shuffle(len(train.y), seed=params.seed, reshuffle_each_iteration=True)
        .batch(params.batch_size)
    )
    augment = augmentation(params.augment, params.seed)
    if augment is not None:
        train_ds = train_ds.map(
            lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    val_ds = tf.data.Dataset.from_tensor_slices((val.x, val.y)).batch(params.batch_size)
    return train_ds.prefetch(tf.data.AUTOTUNE), val_ds.prefetch(tf.data.AUTOTUNE)


def load_initial_model(path: Path, classes: Sequence[str]) -> keras.Model:
    """An earlier model.keras to continue from; its classes (classes.json beside it) must match."""
    classes_file = path.with_name("classes.json")
    if not path.is_file():
        raise ParamsError(f"train.init_from: {path} is not a file")
    if not classes_file.is_file():
        raise ParamsError(
            f"train.init_from: {classes_file} not found (it names the model's classes)"
        )
    previous = json.loads(classes_file.read_text(encoding="utf-8"))
    if list(previous) != list(classes):
        raise ParamsError(
            f"train.init_from: {path} was trained on classes {previous}, but the data has "
            f"{list(classes)}; train from scratch (init_from: null) when classes change"
        )
    return keras.models.load_model(path)


def compile_model(model: keras.Model, params: TrainParams) -> None:
    optimizer = OPTIMIZERS[params.optimizer](learning_rate=params.learning_rate)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def callbacks(params: TrainParams, live: Live | None) -> list[keras.callbacks.Callback]:
    out: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=params.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=params.reduce_lr_factor, patience=params.reduce_lr_patience
        ),
    ]
    if live is not None:
        out.append(DVCLiveCallback(live=live))
    return out


def fit(
    params: Params, train: Arrays, val: Arrays, classes: Sequence[str], live: Live | None = None
) -> keras.Model:
    """Build (or load), compile and fit; returns the model with its best validation weights."""
    seed_everything(params.train.seed)
    with make_strategy(params.train.distribute).scope():
        if params.train.init_from:
            model = load_initial_model(Path(params.train.init_from), classes)
        else:
            model = build_model(len(classes), params.image, params.train)
        compile_model(model, params.train)
    train_ds, val_ds = make_datasets(train, val, params.train)
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=params.train.epochs,
        shuffle=False,  # the dataset shuffles itself, with the seed
        callbacks=callbacks(params.train, live),
        verbose=2,  # one line per epoch: readable in `dvc repro` logs and CI
    )
    return model


def save_model(model: keras.Model, classes: Sequence[str]) -> None:
    with atomic.atomic_path(config.KERAS_MODEL) as tmp:
        model.save(tmp)
    atomic.write_json(config.CLASSES_FILE, list(classes))


def run(params: Params) -> None:
    classes = class_names(read_manifest(config.manifest_path("train")))
    train = load_split("train", classes, params.image)
    val = load_split("val", classes, params.image)
    log.info(
        "training %s on %d images, validating on %d", params.train.model, len(train.y), len(val.y)
    )
    with Live(dir=str(config.TRAIN_LIVE_DIR), dvcyaml=None, save_dvc_exp=False) as live:
        model = fit(params, train, val, classes, live)
    save_model(model, classes)
    log.info("wrote %s", config.KERAS_MODEL)


if __name__ == "__main__":
    run_stage(run)

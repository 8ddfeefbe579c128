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
from image_classifier.input_pipeline import PixelSource, inference_dataset, training_dataset
from image_classifier.models import build_model, with_dtype_policy
from image_classifier.params import Params, ParamsError, TrainParams
from image_classifier.store import inference_batch_size, open_split

log = logging.getLogger(__name__)

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


def seed_everything(seed: int, op_determinism: bool) -> None:
    """Same params, same weights: seeds Python, NumPy and TF.

    On CPU the kernels this project uses are deterministic already and augmentation is
    stateless (augment.py), so two runs give identical weights without TF's op determinism,
    which would also run the tf.data map on one thread. `train.op_determinism: true` turns it
    on, for GPUs, whose cuDNN kernels are not deterministic by default."""
    keras.utils.set_random_seed(seed)
    if op_determinism:
        tf.config.experimental.enable_op_determinism()


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        # Reads the cluster from TF_CONFIG, as on every multi-worker TensorFlow setup.
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()  # the default: this one device


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


# Batches per call into the compiled training function. Keras returns to Python after every
# call; at one step per call that overhead cost ~30% of MobileNetV2's throughput on this 2-core
# machine (100 vs 137 images/s at 224 px). Callbacks still see every epoch.
STEPS_PER_EXECUTION = 16


def compile_model(model: keras.Model, params: TrainParams) -> None:
    optimizer = OPTIMIZERS[params.optimizer](learning_rate=params.learning_rate)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
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
    params: Params,
    train: PixelSource,
    val: PixelSource,
    classes: Sequence[str],
    live: Live | None = None,
) -> keras.Model:
    """Build (or load), compile and fit; returns a float32 model with its best validation
    weights (a mixed-precision run is converted back, so evaluate and export see no change)."""
    seed_everything(params.train.seed, params.train.op_determinism)
    policy = "mixed_float16" if params.train.mixed_precision else "float32"
    keras.mixed_precision.set_global_policy(policy)
    try:
        with make_strategy(params.train.distribute).scope():
            if params.train.init_from:
                model = load_initial_model(Path(params.train.init_from), classes)
                if policy != "float32":
                    model = with_dtype_policy(model, policy)
            else:
                model = build_model(len(classes), params.image, params.train)
            compile_model(model, params.train)
        train_ds, steps = training_dataset(
            train, params.train.batch_size, params.train.seed, params.train.augment
        )
        val_ds = inference_dataset(
            val, inference_batch_size(params.image.size, params.image.channels)
        )
        model.fit(
            train_ds,
            steps_per_epoch=steps,
            validation_data=val_ds,
            epochs=params.train.epochs,
            shuffle=False,  # the dataset shuffles indices itself, with the seed
            callbacks=callbacks(params.train, live),
            verbose=2,  # one line per epoch: readable in `dvc repro` logs and CI
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return with_dtype_policy(model, "float32") if policy != "float32" else model


def save_model(model: keras.Model, classes: Sequence[str]) -> None:
    with atomic.atomic_path(config.KERAS_MODEL) as tmp:
        model.save(tmp)
    atomic.write_json(config.CLASSES_FILE, list(classes))


def run(params: Params) -> None:
    size, mode = params.image.size, params.image.color_mode
    with open_split("train", size, mode) as train, open_split("val", size, mode) as val:
        classes = list(train.meta.classes)
        log.info(
            "training %s on %d images, validating on %d", params.train.model, len(train), len(val)
        )
        with Live(dir=str(config.TRAIN_LIVE_DIR), dvcyaml=None, save_dvc_exp=False) as live:
            model = fit(params, train, val, classes, live)
    save_model(model, classes)
    log.info("wrote %s", config.KERAS_MODEL)


if __name__ == "__main__":
    run_stage(run)

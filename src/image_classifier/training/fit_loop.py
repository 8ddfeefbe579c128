"""The fit loop of the train stage: budget, learning rate, the two phases of transfer learning
(callbacks.py holds the callbacks).

Pure of file I/O: `fit` takes pixel sources and returns a model; the stage shell (train.py)
opens the store and writes saved_models/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from dvclive import Live

from image_classifier import timing
from image_classifier.data.store import inference_batch_size, seeded_sample
from image_classifier.params import Params, ParamsError, TrainParams
from image_classifier.training import distribute, frozen_base, lr_find, served_graph
from image_classifier.training.callbacks import KeepBest, callbacks, record_best
from image_classifier.training.input_pipeline import (
    PixelSource,
    Subset,
    inference_batches,
    inference_dataset,
    training_batches,
    training_dataset,
)
from image_classifier.training.models import (
    build_model,
    check_fine_tune_layers,
    find_base,
    set_trainable,
    with_dtype_policy,
)

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


# Batches per call into the compiled training function: Keras returns to Python after every
# call, an overhead that matters where steps are short (a GPU: not measured here). On this
# CPU it saves nothing measurable for simple_cnn (bench/train_step.py prints both). Callbacks
# still see every epoch.
STEPS_PER_EXECUTION = 16
# Small training splits get smaller batches, so that an epoch is at least this many steps
# (and early stopping, which counts epochs, sees the model move between checks).
MIN_STEPS_PER_EPOCH = 8
# `train.epochs: auto`: the most epochs when train.min_steps does not need more.
AUTO_EPOCHS = 30


@dataclass(frozen=True)
class Budget:
    batch_size: int
    steps_per_epoch: int
    steps_per_execution: int
    epochs: int
    min_epochs: int  # early stopping may end training only after these


def training_budget(
    n_train: int, params: TrainParams, max_per_call: int = STEPS_PER_EXECUTION
) -> Budget:
    """Batch size and epochs for a training split of n_train images.

    Tutorials' fixed budgets fail small folders: 100 images at batch 64 are 2 steps an epoch,
    and early stopping ends training after a few dozen steps, with a model that still predicts
    one class. The batch is capped so an epoch has MIN_STEPS_PER_EPOCH steps, and training
    runs at least train.min_steps optimizer steps before early stopping may stop it: with
    `train.epochs: auto`, epochs are raised to fit them; a number of epochs is never raised."""
    batch = max(1, min(params.batch_size, n_train // MIN_STEPS_PER_EPOCH))
    steps = math.ceil(n_train / batch)
    # Keras runs whole calls of steps_per_execution steps, even past steps_per_epoch (16 per
    # "epoch" of 8, measured): an epoch is made a whole number of calls, so these counts are
    # the optimizer steps really taken. The dataset repeats, so a few extra steps are fine.
    per_call = min(max_per_call, steps)
    steps = math.ceil(steps / per_call) * per_call
    min_epochs = math.ceil(params.min_steps / steps)
    if params.epochs == "auto":
        return Budget(batch, steps, per_call, max(AUTO_EPOCHS, min_epochs), min_epochs)
    # What the user set runs: the minimum budget only delays early stopping within it.
    return Budget(batch, steps, per_call, params.epochs, min(min_epochs, params.epochs))


@dataclass(frozen=True)
class Setup:
    """What the phases of one fit share."""

    policy: str  # Keras' dtype policy: float32, or mixed_float16 (train.mixed_precision)
    strategy: tf.distribute.Strategy
    budget: Budget
    weights: dict[int, float] | None  # class weights (train.class_weight)


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """scikit-learn's "balanced" weights, n / (classes * count), so each class's total loss
    weighs the same; a class with no training image gets weight 0 (it never appears)."""
    # Imported here: only train.class_weight: balanced needs scikit-learn in this stage.
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    out = dict.fromkeys(range(n_classes), 0.0)
    out.update((int(c), float(w)) for c, w in zip(present, weights, strict=True))
    return out


def compile_model(
    model: keras.Model, learning_rate: float, optimizer: str, steps_per_execution: int
) -> None:
    model.compile(
        optimizer=OPTIMIZERS[optimizer](learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )


def initial_model(params: Params, classes: Sequence[str], policy: str) -> keras.Model:
    if not params.train.init_from:
        return build_model(len(classes), params.image, params.train)
    model = load_initial_model(Path(params.train.init_from), classes)
    if policy != "float32":
        model = with_dtype_policy(model, policy)
    base = find_base(model)
    if base is not None and params.train.weights is not None:
        # A pretrained base: phase 1 trains the head on it, frozen, as for a new model. (A base
        # trained from random weights keeps training whole, as it was.)
        check_fine_tune_layers(base, params.train.fine_tune_layers)
        set_trainable(base, 0)
    return model


def fine_tunes(params: TrainParams, base: keras.Model | None) -> bool:
    """Phase 2 runs for a pretrained base when fine_tune_layers is not 0."""
    return base is not None and params.weights is not None and params.fine_tune_layers != 0


def fit(
    params: Params,
    train: PixelSource,
    val: PixelSource,
    classes: Sequence[str],
    live: Live | None = None,
    kept: frozen_base.Kept | None = None,
) -> keras.Model:
    """Build (or load), compile and fit; returns a float32 model with its best validation
    weights (a mixed-precision run is converted back, so evaluate and export see no change).
    When phase 1 runs the base on LiteRT, `kept` receives the features it computes and the graph it
    converted.

    Transfer learning runs as the Keras guide does it: phase 1 trains the new head on the
    frozen base at train.learning_rate; phase 2 unfreezes the top train.fine_tune_layers
    layers of the base and trains on at train.fine_tune_learning_rate."""
    tp = params.train
    seed_everything(tp.seed, tp.op_determinism)
    policy = "mixed_float16" if tp.mixed_precision else "float32"
    strategy = distribute.make_strategy(tp.distribute)
    per_call = distribute.max_steps_per_call(strategy, STEPS_PER_EXECUTION)
    budget = training_budget(len(train), tp, per_call)
    log_budget(budget, tp)
    weights = class_weights(train.labels, len(classes)) if tp.class_weight == "balanced" else None
    setup = Setup(policy, strategy, budget, weights)
    keras.mixed_precision.set_global_policy(policy)
    try:
        model, rate = compiled_model(params, classes, setup, train, live)
        base = find_base(model)
        on_litert = frozen_base.runs_on_litert(tp, model, policy)
        fit_args = keras_fit_args(params, (train, val), setup)
        # The best epoch is taken from the last epoch of the minimum budget on: before it,
        # a small validation split's loss can be lowest for a network that has learnt little.
        keep = KeepBest(
            start=max(budget.min_epochs - 1, 0) if tp.plateau_from == "min_steps" else 0
        )
        phase_one = dict(
            epochs=budget.epochs, callbacks=callbacks(tp, keep, budget.min_epochs, live)
        )
        predict = None  # how fit_accuracy runs the model: Keras, unless phase 1 ran on LiteRT
        if on_litert:
            done, predict = fit_head_on_litert(
                model, params, rate, budget, (train, val), phase_one, weights, kept
            )
            keep.adopt(model)
        else:
            with timing.phase("fit"):
                done = len(model.fit(**phase_one, **fit_args).epoch)
        if fine_tunes(tp, base):
            predict = None  # phase 2 changes the base that LiteRT runs
            fine_tune(model, base, tp, setup, keep, (done, fit_args), live)
        keep.restore()
        if live is not None:
            record_best(live, keep)
            with timing.phase("fit_accuracy"):
                live.summary["fit"] = fit_accuracy(model, train, params, predict)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return with_dtype_policy(model, "float32") if policy != "float32" else model


def log_budget(budget: Budget, tp: TrainParams) -> None:
    log.info(
        "batch %d, %d steps an epoch, up to %d epochs (%s; early stopping from epoch %d)",
        budget.batch_size,
        budget.steps_per_epoch,
        budget.epochs,
        "train.epochs: auto, at least train.min_steps steps"
        if tp.epochs == "auto"
        else "train.epochs",
        budget.min_epochs,
    )


def compiled_model(
    params: Params, classes: Sequence[str], setup: Setup, train: PixelSource, live: Live | None
) -> tuple[keras.Model, float]:
    """The model built (or loaded) in the strategy's scope and compiled at its learning rate:
    train.learning_rate, or for `auto` the range test's (a pretrained base's head: one rate
    that serves)."""
    tp, policy, budget, weights = params.train, setup.policy, setup.budget, setup.weights
    rate = tp.learning_rate
    if rate == "auto" and tp.weights is not None:
        # A pretrained base's head is a linear model on fixed features: one rate serves.
        rate = lr_find.PRETRAINED_HEAD_RATE
        log.info("learning rate %g for the head of %s (train.learning_rate: auto)", rate, tp.model)
    found = None
    if rate == "auto" and tp.distribute != "none":
        # Each worker of a distributed run tests a copy of its own, outside the strategy:
        # the same seed gives them all the same rate.
        probe = initial_model(params, classes, policy)
        compile_model(probe, lr_find.START, tp.optimizer, 1)
        found = find_learning_rate(probe, tp, train, budget, weights)
        seed_everything(tp.seed, tp.op_determinism)  # the fit as a fixed rate would run it
    with setup.strategy.scope():
        model = initial_model(params, classes, policy)
        start_rate = lr_find.START if rate == "auto" else rate
        compile_model(model, start_rate, tp.optimizer, budget.steps_per_execution)
    if rate == "auto":
        found = found or find_learning_rate(model, tp, train, budget, weights)
        rate = found.learning_rate
        model.optimizer.learning_rate = rate
        record_range_test(live, found)
    return model, rate


def keras_fit_args(params: Params, data: tuple[PixelSource, PixelSource], setup: Setup) -> dict:
    """What each Keras fit() call takes besides its epochs and callbacks."""
    train, val = data
    tp = params.train
    train_ds, _ = training_dataset(train, setup.budget.batch_size, tp.seed, tp.augment)
    val_ds = inference_dataset(val, inference_batch_size(params.image.size, params.image.channels))
    return dict(
        x=train_ds,
        steps_per_epoch=setup.budget.steps_per_epoch,
        validation_data=val_ds,
        shuffle=False,  # the dataset shuffles indices itself, with the seed
        class_weight=setup.weights,
        verbose=2,  # one line per epoch: readable in `dvc repro` logs and CI
    )


def fine_tune(
    model: keras.Model,
    base: keras.Model,
    tp: TrainParams,
    setup: Setup,
    keep: KeepBest,
    after: tuple[int, dict],
    live: Live | None,
) -> None:
    """Phase 2: from phase 1's best head, the top train.fine_tune_layers layers of the base
    unfrozen, train.fine_tune_epochs more epochs at train.fine_tune_learning_rate, after
    phase 1's `done` epochs, with Keras' `fit_args`."""
    done, fit_args = after
    keep.restore()
    with setup.strategy.scope():
        set_trainable(base, tp.fine_tune_layers)
        steps = setup.budget.steps_per_execution
        compile_model(model, tp.fine_tune_learning_rate, tp.optimizer, steps)
    log.info("fine-tuning the top %s layers of %s", tp.fine_tune_layers, base.name)
    with timing.phase("fine_tune"):
        model.fit(
            initial_epoch=done,
            epochs=done + tp.fine_tune_epochs,
            callbacks=callbacks(tp, keep, 0, live),
            **fit_args,
        )


def fit_head_on_litert(
    model: keras.Model,
    params: Params,
    rate: float,
    budget: Budget,
    data: tuple[PixelSource, PixelSource],
    phase: dict,
    class_weight: dict[int, float] | None,
    kept: frozen_base.Kept | None,
) -> tuple[int, Callable[[PixelSource], np.ndarray]]:
    """Phase 1 with the frozen base on LiteRT (frozen_base.py): the (train, val) batches fit()
    would read, as features, fit the model's own head with phase 1's epochs and callbacks.
    Returns the number of epochs run, and a function giving the model's probabilities for a
    PixelSource the same way: base on LiteRT, head in Keras."""
    tp = params.train
    train, val = data
    _, head = frozen_base.split_at_pooling(model)
    with timing.phase("convert_base"):
        run = frozen_base.LiteRTFeatures(model)
    kept = kept or frozen_base.Kept()
    kept.graph, kept.weights_sha256 = run.graph, served_graph.weights_digest(model)
    log.info("phase 1: the frozen base runs on LiteRT (train.frozen_base_runtime)")
    compile_model(head, rate, tp.optimizer, budget.steps_per_execution)
    batch = inference_batch_size(params.image.size, params.image.channels)
    with timing.phase("val_features"):
        val_features = frozen_base.features_of(inference_batches(val, batch), len(val), run)
    if kept.features is not None:
        kept.features.open(run.dim)
        kept.features.set_val(val_features[0])

    batches = training_batches(train, budget.batch_size, tp.seed, tp.augment)
    with timing.phase("fit_head_on_train_features"), contextlib.closing(batches):
        epochs = frozen_base.fit_head(
            head,
            frozen_base.feature_batches(batches, run, kept.features),
            steps_per_epoch=budget.steps_per_epoch,
            epochs=phase["epochs"],
            validation_data=val_features,
            callbacks=phase["callbacks"],
            class_weight=class_weight,
        )
    # The model's own optimizer never ran: build its slots, so that model.keras reloads
    # without Keras warning that the saved optimizer has fewer variables than it expects.
    model.optimizer.build(model.trainable_variables)

    def predict(source: PixelSource) -> np.ndarray:
        return frozen_base.probabilities(inference_batches(source, batch), len(source), run, head)

    return epochs, predict


def find_learning_rate(
    model: keras.Model,
    tp: TrainParams,
    train: PixelSource,
    budget: Budget,
    weights: dict[int, float] | None,
) -> lr_find.RangeTest:
    """`train.learning_rate: auto`: the range test (lr_find.py) on the compiled model, on the
    batches training will see. The model's variables (weights, dropout's seed state) and its
    optimizer's are put back afterwards, so the fit starts exactly where a fixed rate's
    would, and runs the train step traced here: on small data, tracing a second model's
    would be most of the test's cost."""
    model.optimizer.build(model.trainable_variables)
    variables = (*model.variables, *model.optimizer.variables)
    saved = [(v, keras.ops.convert_to_numpy(v)) for v in variables]
    batches, _ = training_dataset(train, budget.batch_size, tp.seed, tp.augment)

    def restore() -> None:
        for variable, value in saved:
            variable.assign(value)

    # One iterator: each new one over a reshuffling dataset draws a new order.
    stream = iter(batches)
    first = next(stream)
    with timing.phase("trace_train_step"):  # fit() would trace it anyway
        model.train_on_batch(*first, class_weight=weights)
        restore()
    started = time.perf_counter()
    steps = lr_find.steps_for(max(tp.min_steps, budget.steps_per_epoch))

    def set_rate(rate: float) -> None:
        model.optimizer.learning_rate = rate

    found = lr_find.range_test(model, itertools.chain([first], stream), steps, set_rate, weights)
    restore()
    # What the test adds to the stage: `seconds` in the metrics.
    found = dataclasses.replace(found, seconds=time.perf_counter() - started)
    log.info(
        "learning-rate range test: %d steps in %.1f s, rate %.3g%s",
        len(found.rates),
        found.seconds,
        found.learning_rate,
        " (no valley in the curve: the fallback)" if found.fallback else "",
    )
    return found


def record_range_test(live: Live | None, found: lr_find.RangeTest) -> None:
    """The curve as a DVC plot (reports/train/plots/custom/lr_find.json) and the rate chosen
    in reports/train/metrics.json."""
    if live is None:
        return
    live.log_plot(
        "lr_find",
        found.points(),
        x="log10_learning_rate",
        y="smoothed_loss",
        title="Learning-rate range test",
    )
    live.summary["lr_find"] = found.summary()


# Training images the fit's own accuracy is measured on at most (a seeded sample beyond that).
FIT_ACCURACY_IMAGES = 1000


def fit_accuracy(
    model: keras.Model,
    train: PixelSource,
    params: Params,
    predict: Callable[[PixelSource], np.ndarray] | None = None,
) -> dict:
    """Accuracy on the training images themselves, unaugmented, dropout off: how well the
    network fits what it trained on. Keras' train accuracy is a running mean over augmented
    batches as the weights moved, and says less (evaluate's diagnosis reads this one).
    `predict` runs the model another way (a frozen base on LiteRT): Keras would build
    TensorFlow's forward pass of the base for this alone, the stage's largest memory."""
    source = Subset(train, seeded_sample(len(train), FIT_ACCURACY_IMAGES, params.train.seed))
    if predict is None:
        batch = inference_batch_size(params.image.size, params.image.channels)
        probs = model.predict(inference_dataset(source, batch), verbose=0)
    else:
        probs = predict(source)
    correct = np.argmax(probs, axis=1) == source.labels
    return {"train_accuracy": float(correct.mean()), "images": len(source)}

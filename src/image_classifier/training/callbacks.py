"""The train stage's callbacks: the best epoch kept across both phases of transfer learning,
the learning rate cut on a plateau only after the minimum budget, early stopping, and
dvclive's record of them."""

from __future__ import annotations

import math

import keras
import numpy as np
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from image_classifier.params import TrainParams


class KeepBest(keras.callbacks.Callback):
    """The weights and logs of the epoch with the lowest validation loss, across both phases,
    among the epochs from `start` on.

    Keras' EarlyStopping(restore_best_weights=True) forgets its best at every fit() call, so
    phase 2 could end on weights worse than phase 1's best; this one keeps them all along."""

    def __init__(self, start: int = 0) -> None:
        super().__init__()
        self.start = start
        self.best = math.inf
        self.epoch = -1  # counted over both phases: dvclive's step
        self.best_epoch = -1
        self.best_logs: dict[str, float] = {}
        self.best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch += 1
        loss = (logs or {}).get("val_loss", math.inf)
        # Before `start`, an epoch is kept only until a later one is: if every later
        # validation loss is NaN (a diverged fit), the best early epoch is still saved.
        early = self.best_epoch < self.start
        if loss < self.best or (early and self.epoch >= self.start and math.isfinite(loss)):
            self.best, self.best_epoch = float(loss), self.epoch
            self.best_logs = {k: float(v) for k, v in (logs or {}).items()}
            self.best_weights = self.model.get_weights()

    def restore(self) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def adopt(self, model: keras.Model) -> None:
        """Phase 1 fitted a head sharing its layers with `model` (frozen_base.py): restore
        the best head, and keep the best as `model`'s weights for phase 2 to compare with."""
        self.restore()
        self.set_model(model)
        if self.best_weights is not None:
            self.best_weights = model.get_weights()


class PlateauAfter(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau from epoch `start` on: by default (train.plateau_from: min_steps) the
    end of the minimum budget. On a small validation split the loss is noisy from the first
    epochs, and cuts then leave most of the budget at a tiny rate (docs/benchmarks.md,
    "Small data from scratch", has the table that chose this)."""

    def __init__(self, start: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start = start

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch >= self.start:
            super().on_epoch_end(epoch, logs)
            return
        self._reset()  # no plateau counted yet
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))


def callbacks(
    params: TrainParams, keep: KeepBest, min_epochs: int, live: Live | None
) -> list[keras.callbacks.Callback]:
    out: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=params.early_stopping_patience,
            start_from_epoch=min_epochs,
        ),
        PlateauAfter(
            min_epochs if params.plateau_from == "min_steps" else 0,
            monitor="val_loss",
            factor=params.reduce_lr_factor,
            patience=params.reduce_lr_patience,
        ),
        keep,  # after PlateauAfter, which adds the learning rate to the logs
    ]
    if live is not None:
        out.append(DVCLiveCallback(live=live))
    return out


def record_best(live: Live, keep: KeepBest) -> None:
    """reports/train/metrics.json (what `dvc metrics show` prints) describes the saved
    weights: the best epoch's values, not the last epoch's."""
    for name, value in keep.best_logs.items():
        # dvclive's Keras callback files val_* under eval/ and the rest under train/.
        group, key = ("eval", name[4:]) if name.startswith("val_") else ("train", name)
        live.summary.setdefault(group, {})[key] = value
    live.summary["best_step"] = keep.best_epoch

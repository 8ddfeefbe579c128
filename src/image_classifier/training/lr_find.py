"""`train.learning_rate: auto`: a learning-rate range test before training, as fastai's lr_find,
for networks trained from scratch (simple_cnn, or a base with train.weights: null). A
pretrained base's head, a linear model on the base's features, trains at PRETRAINED_HEAD_RATE.

The rate grows exponentially from START to END, one optimizer step per rate, on the model
and the training split's augmented batches. The test stops when the smoothed loss passes
DIVERGED times its best. The rate chosen is fastai's "valley": halfway down the longest
decreasing run of the smoothed loss. The model's and optimizer's variables are then put back
(training/fit_loop.py), so `auto` trains exactly as the fixed rate it chose would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

START, END = 1e-5, 1.0
DIVERGED = 4.0
# Steps of the test: a share of the fit's minimum steps, within bounds. Fewer than MIN_STEPS
# give no curve to read; the spacing of rates is (END / START) ** (1 / steps).
SHARE_OF_FIT = 0.05
MIN_STEPS, MAX_STEPS = 24, 100
# The rate when the curve has no decreasing run to read (flat or diverging from the start).
FALLBACK = 0.003
# Phase 1 of transfer learning under `auto` (the rate docs/benchmarks.md's scale runs use).
PRETRAINED_HEAD_RATE = 0.003


@dataclass(frozen=True)
class RangeTest:
    rates: list[float]
    losses: list[float]
    smoothed: list[float]
    learning_rate: float
    fallback: bool  # True: the curve gave no valley, FALLBACK was used
    seconds: float

    def summary(self) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "steps": len(self.rates),
            "fallback": self.fallback,
            "seconds": round(self.seconds, 3),
        }

    def points(self) -> list[dict]:
        """The curve, as a DVC plot's rows (x on a log scale)."""
        return [
            {"log10_learning_rate": math.log10(r), "loss": loss, "smoothed_loss": s}
            for r, loss, s in zip(self.rates, self.losses, self.smoothed, strict=True)
            if math.isfinite(s)  # a diverged last step: JSON has no NaN
        ]


def steps_for(min_fit_steps: int) -> int:
    """How many steps the test takes for a fit of at least min_fit_steps steps."""
    return min(MAX_STEPS, max(MIN_STEPS, math.ceil(SHARE_OF_FIT * min_fit_steps)))


def rates(steps: int, start: float = START, end: float = END) -> np.ndarray:
    return start * (end / start) ** (np.arange(steps) / max(steps - 1, 1))


def smooth(losses: np.ndarray, beta: float) -> np.ndarray:
    """Exponential moving average, bias-corrected as Adam's moments are (fastai's
    AvgSmoothLoss): the first values are not pulled towards zero."""
    out, avg = np.empty(len(losses)), 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def valley(smoothed: np.ndarray) -> tuple[int, int] | None:
    """fastai's "valley": (index chosen, length of the longest decreasing run), or None when
    no run is long enough to read. The run is the longest decreasing subsequence; the index is
    about halfway down it, where the loss still falls fast and is far from diverging."""
    n = len(smoothed)
    if n < 5:
        return None
    length = [1] * n
    end = 0
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and length[i] < length[j] + 1:
                length[i] = length[j] + 1
        if length[i] > length[end]:
            end = i
    start = end - length[end]
    if length[end] < 5:
        return None
    third = (end - start) / 3
    return start + int(third) + int(third / 2), length[end]


def choose(rates_: np.ndarray, smoothed: np.ndarray) -> tuple[float, bool]:
    """The valley's rate, ignoring the first tenth (the loss barely moves there) and the last
    few points (the divergence), as fastai does."""
    skip_start, skip_end = len(rates_) // 10, min(5, len(rates_) // 5)
    window = slice(skip_start, len(rates_) - skip_end)
    found = valley(smoothed[window])
    if found is None:
        return FALLBACK, True
    return float(rates_[window][found[0]]), False


def range_test(
    model: keras.Model,
    batches: Iterator[tuple],
    steps: int,
    set_rate: Callable[[float], None],
    class_weight: dict[int, float] | None = None,
) -> RangeTest:
    """Run the test on `model` (compiled; its weights are spent: the caller restores them).
    train_on_batch runs one step and gives its own loss; fit's logs give a running mean."""
    started = time.perf_counter()
    planned = rates(steps)
    beta = 1 - 5 / steps  # an average over about steps/5 points: short enough to follow
    losses: list[float] = []
    best = math.inf
    for rate in planned:
        set_rate(float(rate))
        x, y = next(batches)
        loss = float(np.asarray(model.train_on_batch(x, y, class_weight=class_weight)).ravel()[0])
        losses.append(loss)
        smoothed = smooth(np.array(losses), beta)[-1]
        if not math.isfinite(smoothed) or smoothed > DIVERGED * best:
            break
        best = min(best, smoothed)
    done = len(losses)
    curve = smooth(np.array(losses), beta)
    finite = np.isfinite(curve)
    rate, fallback = choose(planned[:done][finite], curve[finite])
    return RangeTest(
        [float(r) for r in planned[:done]],
        losses,
        [float(s) for s in curve],
        rate,
        fallback,
        time.perf_counter() - started,
    )

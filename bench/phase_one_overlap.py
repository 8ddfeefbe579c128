"""Phase 1's loop with reading and augmentation overlapped with LiteRT's calls, against the
loop in series as the train stage runs it, in one run.

    python bench/phase_one_overlap.py [--images 512] [--batch-size 32] [--repeats 3]

bench/frozen_base.py's model (the train stage's MobileNetV2 at 224 px, BatchNormalization
calibrated, base frozen) runs phase 1's work for --images photo-like images in batches of
--batch-size: input_pipeline.training_batches reads and augments each batch (train.augment's
defaults), and frozen_base.LiteRTFeatures runs the base on it. Rows:
- forward passes only: LiteRT on batches made beforehand;
- reading and augmentation only;
- in series: one then the other, as phase 1 runs them;
- overlapped: the batches made in a thread of their own, two ahead (Ahead below), while
  LiteRT runs on every core (it releases the GIL);
- overlapped, LiteRT on one thread: the other core left to the batches.
Each row gives the median of --repeats passes (after a warm-up pass) and, for the loops,
whether its features equal the in-series run's, bit for bit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frozen_base import build_model, photos
from machine import print_header

ROOT = Path(__file__).resolve().parents[1]
_END = object()


class Ahead:
    """`items` iterated in a background thread, at most `depth` (>= 2) ahead, in order."""

    def __init__(self, items, depth: int = 2) -> None:
        self._items, self._queue = items, queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        for item in self._items:
            if self._stop.is_set():
                return
            self._queue.put(item)
        if not self._stop.is_set():
            self._queue.put(_END)

    def __iter__(self):
        return self

    def __next__(self):
        item = self._queue.get()
        if item is _END:
            raise StopIteration
        return item

    def close(self) -> None:
        # Once stopped the producer puts at most one more item: emptying the queue once
        # leaves it room, so the join cannot wait on a full queue.
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join()
        self._items.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np

    from image_classifier.params import AugmentParams
    from image_classifier.training import frozen_base
    from image_classifier.training.input_pipeline import ArraySource, training_batches

    print_header("TensorFlow", "Keras", "LiteRT", "NumPy")
    x = photos(args.images, 224)
    source = ArraySource(x.astype(np.uint8), np.arange(len(x)) % 10)
    model = build_model(224, x[: min(len(x), 32)])
    steps = len(x) // args.batch_size
    augment = AugmentParams()

    def batches():
        return training_batches(source, args.batch_size, 0, augment)

    def loop(run, overlapped: bool):
        made = batches()
        items = Ahead(made) if overlapped else made
        with contextlib.closing(items):
            return np.concatenate([run(next(items)[0]) for _ in range(steps)])

    def median_seconds(work) -> tuple[float, object]:
        out = work()  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = work()
            times.append(time.perf_counter() - start)
        return statistics.median(times), out

    every_core = frozen_base.LiteRTFeatures(model)
    one_thread = frozen_base.LiteRTFeatures(model, threads=1)
    made = batches()
    ready = [next(made)[0] for _ in range(steps)]
    made.close()

    def read_and_augment():
        with contextlib.closing(batches()) as made:
            for _ in range(steps):
                next(made)

    rows = [
        ("forward passes only", median_seconds(lambda: [every_core(b) for b in ready])[0], ""),
        ("reading and augmentation only", median_seconds(read_and_augment)[0], ""),
    ]
    serial, reference = median_seconds(lambda: loop(every_core, False))
    rows.append(("in series (the train stage)", serial, "yes"))
    for name, run in (("overlapped", every_core), ("overlapped, LiteRT on 1 thread", one_thread)):
        seconds, out = median_seconds(lambda run=run: loop(run, True))
        rows.append((name, seconds, "yes" if np.array_equal(out, reference) else "NO"))
    print(f"{steps * args.batch_size} images, batches of {args.batch_size}, 224 px RGB")
    print(f"{'':>32} {'s':>7} {'images/s':>9} {'x forward':>10} {'same features':>14}")
    forward = rows[0][1]
    for name, seconds, same in rows:
        rate = steps * args.batch_size / seconds
        print(f"{name:>32} {seconds:7.2f} {rate:9.0f} {seconds / forward:10.2f} {same:>14}")


if __name__ == "__main__":
    main()

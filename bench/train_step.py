"""simple_cnn's time per training step on this machine, with and without its stem.

    python bench/train_step.py [--size 64] [--channels 3] [--batch 35] [--steps 80]

Builds `simple_cnn` as the train stage does (models.py) and, as the peer, the same network
with its three blocks at full resolution (no stem), compiles both as fit_loop.py does
(Adam, steps_per_execution 16 and 1), and times --steps steps of random pixels after a warm-up.
Each variant runs twice, alternating, and the faster run counts (the machine's noise is
about 10 %). Prints seconds per step and the multiply-adds of one forward pass.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_header

from image_classifier.params import ImageParams
from image_classifier.training import models


def build(size: int, channels: int, stem: bool) -> keras.Model:
    image = ImageParams(size=size, color_mode="rgb" if channels == 3 else "grayscale")
    block = models.CNN_BLOCK_SIZE
    models.CNN_BLOCK_SIZE = block if stem else size
    try:
        return models.simple_cnn(10, image, 0.25)
    finally:
        models.CNN_BLOCK_SIZE = block


def multiply_adds(model: keras.Model) -> int:
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, out = layer.output.shape
            k = layer.kernel.shape
            total += h * w * out * k[0] * k[1] * k[2]
    return total


def seconds_per_step(model: keras.Model, batch: int, steps: int, per_call: int) -> float:
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=per_call,
    )
    shape = model.input_shape[1:]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch * 16, *shape)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat()
    model.fit(data, steps_per_epoch=per_call, epochs=2, verbose=0)  # trace and warm up
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch", type=int, default=35)
    parser.add_argument("--steps", type=int, default=80)
    args = parser.parse_args()
    print_header("TensorFlow", "Keras")
    print(f"simple_cnn, {args.size} px, {args.channels} channel(s), batch {args.batch}")
    variants = {"stem (ours)": True, "blocks at full resolution": False}
    best: dict[tuple[str, int], float] = {}
    for _ in range(2):
        for name, stem in variants.items():
            for per_call in (16, 1):
                keras.utils.set_random_seed(0)
                model = build(args.size, args.channels, stem)
                s = seconds_per_step(model, args.batch, args.steps, per_call)
                best[name, per_call] = min(best.get((name, per_call), s), s)
    for name, stem in variants.items():
        mac = multiply_adds(build(args.size, args.channels, stem)) / 1e6
        print(
            f"  {name:27s} {mac:6.0f} M multiply-adds an image; s/step: "
            f"{best[name, 16]:.3f} (16 steps a call), {best[name, 1]:.3f} (1 step a call)"
        )


if __name__ == "__main__":
    main()

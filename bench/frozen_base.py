"""Forward rate of a frozen base: LiteRT (XNNPACK) against TensorFlow, images/s, in one run.

    python bench/frozen_base.py [--images 256] [--size 224] [--batch-size 32] [--repeats 3]

Builds the train stage's MobileNetV2 transfer model (models.build_model, image.size --size,
RGB, weights=None: nothing is downloaded), sets every BatchNormalization's statistics from one
batch of photo-like images (image_classifier.synthetic) so activations are well scaled as in a
trained network, freezes the base, and cuts the model at the pooling as phase 1 does
(frozen_base.split_at_pooling). The same --images float32 pixels (photo-like renders resized
to --size) then go through the features model in batches of --batch-size:
- LiteRT: frozen_base.LiteRTFeatures, what phase 1 runs without a GPU (the served graph,
  cut at its pooled features: training/served_graph.py; XNNPACK, every core);
- TensorFlow, model.predict: Keras' compiled predict loop;
- TensorFlow, direct call under tf.function: model(x, training=False), as a train step runs it.
Each runs one warm-up batch, then --repeats timed passes; the table gives the median pass
(and the slowest and fastest) and the largest feature difference from TensorFlow's.
LiteRTFeatures hands LiteRT a few images per call (litert/runner.py, invoke_batch); a
second table runs the same features model on a fresh LiteRT interpreter for each of --calls
images per call: the median pass's images/s and how much the process's resident memory grew
with that interpreter (its tensor arena).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_header

ROOT = Path(__file__).resolve().parents[1]


def photos(count: int, size: int):
    import numpy as np

    from image_classifier import synthetic

    spec = synthetic.Spec((10,) * 10, seed=7)
    distinct = [
        np.asarray(synthetic.render(i % 10, i, spec).resize((size, size)), dtype=np.float32)
        for i in range(min(count, 64))
    ]
    return np.stack([distinct[i % len(distinct)] for i in range(count)])


def build_model(size: int, calibration):
    """The train stage's MobileNetV2 model, BatchNormalization calibrated, base frozen: the
    model whose base phase 1 runs."""
    import keras

    from image_classifier.params import parse_params
    from image_classifier.training import models

    keras.utils.set_random_seed(0)
    raw = {"image": {"size": size, "color_mode": "rgb"}}
    raw["train"] = {"model": "mobilenet_v2", "weights": None}
    params = parse_params(raw)
    model = models.build_model(10, params.image, params.train)
    base = models.find_base(model)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0  # moving statistics := this batch's
    model(calibration, training=True)
    base.trainable = False  # phase 1: frozen, BatchNormalization in inference mode
    return model


def timed_passes(run, x, batch: int, repeats: int) -> tuple[list[float], object]:
    """Images/s of each of `repeats` passes over x (after one warm-up batch) and the output."""
    import numpy as np

    run(x[:batch])
    rates, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = np.concatenate([np.asarray(run(x[i : i + batch])) for i in range(0, len(x), batch)])
        rates.append(len(x) / (time.perf_counter() - start))
    return rates, out


def per_call(model: bytes, x, sizes: list[int], repeats: int) -> list[tuple[int, float, float]]:
    """(images per call, median images/s, MB the interpreter added) for each size."""
    import gc

    import psutil
    from ai_edge_litert.interpreter import Interpreter

    rows = []
    for k in sizes:
        gc.collect()
        before = psutil.Process().memory_info().rss
        interpreter = Interpreter(model_content=model, num_threads=os.cpu_count())
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, [k, *x.shape[1:]])
        interpreter.allocate_tensors()

        out = interpreter.get_output_details()[0]["index"]

        def run(b, interpreter=interpreter, index=index, out=out):
            interpreter.set_tensor(index, b)
            interpreter.invoke()
            return interpreter.get_tensor(out)

        rates = timed_passes(run, x[: len(x) // k * k], k, repeats)[0]  # whole calls only
        grown = (psutil.Process().memory_info().rss - before) / 2**20
        rows.append((k, statistics.median(rates), grown))
        del interpreter
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", default="1,2,4,8,16,32", help="images per LiteRT call")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np
    import tensorflow as tf

    from image_classifier.litert.convert import to_tflite
    from image_classifier.training import frozen_base

    x = photos(args.images, args.size)
    model = build_model(args.size, x[: min(len(x), 32)])
    features, _ = frozen_base.split_at_pooling(model)
    litert = frozen_base.LiteRTFeatures(model)
    call = tf.function(lambda b: features(b, training=False))
    runs = {
        "LiteRT (XNNPACK), LiteRTFeatures": litert,
        "TensorFlow, model.predict": lambda b: features.predict(b, batch_size=len(b), verbose=0),
        "TensorFlow, direct call (tf.function)": lambda b: call(tf.constant(b)).numpy(),
    }
    results = {}
    for name, run in runs.items():
        results[name] = timed_passes(run, x, args.batch_size, args.repeats)
    reference = results["TensorFlow, model.predict"][1]

    print()
    print_header("TensorFlow", "Keras", "LiteRT")
    print(
        f"MobileNetV2 base at {args.size} px RGB, weights=None (BatchNormalization calibrated), "
        f"frozen, up to the pooling; {args.images} images in batches of {args.batch_size}, "
        f"{args.repeats} timed passes; LiteRT threads: {os.cpu_count()}"
    )
    print(f"{'runtime':<40}{'images/s':>10}{'min-max':>16}{'max |diff|':>12}")
    litert_rate = statistics.median(results["LiteRT (XNNPACK), LiteRTFeatures"][0])
    for name, (rates, out) in results.items():
        diff = float(np.abs(np.asarray(out) - reference).max())
        spread = f"{min(rates):.1f}-{max(rates):.1f}"
        print(f"{name:<40}{statistics.median(rates):>10.1f}{spread:>16}{diff:>12.2e}")
    for name, (rates, _) in results.items():
        if not name.startswith("LiteRT"):
            print(f"LiteRT / {name}: {litert_rate / statistics.median(rates):.2f}x")
    print(f"features: {reference.shape[1]} an image, mean |feature| {np.abs(reference).mean():.3f}")
    sizes = [int(k) for k in args.calls.split(",")]
    print(f"{'LiteRT images per call':<24}{'images/s':>10}{'arena MB':>10}")
    for k, rate, grown in per_call(to_tflite(features), x, sizes, args.repeats):
        print(f"{k:<24}{rate:>10.1f}{grown:>10.0f}")


if __name__ == "__main__":
    main()

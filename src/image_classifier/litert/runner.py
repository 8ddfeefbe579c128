"""One LiteRT interpreter, run the way every part of the project runs one: the served model
(litert/classifier.py: predict CLI, web app, export's checks, evaluate) and the frozen base
of training's phase 1 (training/frozen_base.py).

A batch goes in as a few images per call (invoke_batch), quantized when the model takes int8,
and comes out as float32 rows. No TensorFlow.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

# XNNPACK runs a network faster a few images per call than in large batches (a call's
# activations stay in the CPU's caches), and its tensor arena grows with the batch: each call
# gets about this many input values, so more images as they shrink
# (bench/litert_batch.py; docs/benchmarks.md, "LiteRT batch size").
INVOKE_VALUES = 4 * 224 * 224 * 3


def invoke_batch(size: int, channels: int) -> int:
    """Images per LiteRT call: 4 at 224 px RGB, up to 256 for thumbnails."""
    return int(min(256, max(1, INVOKE_VALUES // (size * size * channels))))


class Runner:
    """A .tflite model (a file or its bytes) on `num_threads` threads: pixels in, float32 rows
    out, at most `max_batch` images per call (None: invoke_batch for the model's input).
    Thread-safe: one invoke at a time."""

    def __init__(
        self, model: Path | bytes, num_threads: int = 1, max_batch: int | None = None
    ) -> None:
        kwargs: dict[str, Any] = {"num_threads": num_threads}
        if isinstance(model, bytes):
            kwargs["model_content"] = model
        else:
            kwargs["model_path"] = str(model)
        self._interpreter = Interpreter(**kwargs)
        inp = self._interpreter.get_input_details()[0]
        out = self._interpreter.get_output_details()[0]
        self._input, self._output = inp["index"], out["index"]
        self.width = int(out["shape"][-1])
        self.max_batch = max_batch or invoke_batch(int(inp["shape"][1]), int(inp["shape"][-1]))
        # A full-integer (int8) model takes and returns int8; (scale, zero point) of 0 = float.
        self.input_type, self.input_quantization = inp["dtype"], inp["quantization"]
        self._out_q = out["quantization"]
        # uint8 pixels in: their int8 input for each of the 256 values, computed once by the
        # float path (exact: preprocessing's float32 output holds the same whole numbers).
        self._pixel_table = self._quantize(np.arange(256, dtype=np.float32))
        # Export's int8 input is the pixel minus 128 (scale 1, zero point -128: quantize.py),
        # which is the top bit flipped: cheaper than the table lookup, and tested equal to it.
        self._flip_top_bit = self.input_type == np.int8 and self.input_quantization == (1.0, -128)
        self._batch = 0
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(n, size, size, channels) pixels in [0, 255], uint8 or float32 -> (n, width)
        float32; in chunks of at most max_batch images, so memory does not grow with n."""
        step = self.max_batch
        if len(batch) > step:
            return np.concatenate(
                [self._invoke(batch[i : i + step]) for i in range(0, len(batch), step)]
            )
        return self._invoke(batch)

    def to_input(self, batch: np.ndarray) -> np.ndarray:
        """The model's input tensor for these pixels."""
        if not self.input_quantization[0]:
            return np.ascontiguousarray(batch, dtype=np.float32)
        if batch.dtype == np.uint8:
            if self._flip_top_bit:
                return (batch ^ np.uint8(0x80)).view(np.int8)
            return self._pixel_table[batch]
        return self._quantize(np.asarray(batch, dtype=np.float32))

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        scale, zero = self.input_quantization
        if not scale:
            return x
        info = np.iinfo(self.input_type)
        q = np.clip(np.rint(x / scale) + zero, info.min, info.max)
        return np.ascontiguousarray(q.astype(self.input_type))

    def _from_output(self, out: np.ndarray) -> np.ndarray:
        scale, zero = self._out_q
        if not scale:
            return out.copy()
        return (out.astype(np.float32) - zero) * np.float32(scale)

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        batch = self.to_input(batch)
        with self._lock:
            if batch.shape[0] != self._batch:
                self._interpreter.resize_tensor_input(self._input, list(batch.shape))
                self._interpreter.allocate_tensors()
                self._batch = batch.shape[0]
            self._interpreter.set_tensor(self._input, batch)
            self._interpreter.invoke()
            return self._from_output(self._interpreter.get_tensor(self._output))

"""Post-training quantization of a float32 .tflite model with the AI Edge Quantizer.

LiteRT's documentation marks quantization inside the converter (`converter.optimizations`)
as deprecated in favour of this separate tool (`ai-edge-quantizer`), which rewrites the
converted flatbuffer. Modes (`export.quantization`):

- float16: weights stored as float16 (half the file), computed in float32.
- dynamic: int8 weights, activations quantized on the fly (a quarter of the file). XNNPACK
  on x86 runs it slower than float32 (bench/serve.py), so it is for size, not speed.
- int8: weights and activations int8 (static ranges from calibration on training images); the
  input and output tensors are int8 too, which litert/classifier.py's Classifier converts.

Quantization can cost accuracy, so export measures the result on the test split.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterable

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_quantizer import algorithm_manager, qtyping, quantizer, recipe

log = logging.getLogger(__name__)

MODES = ("none", "float16", "dynamic", "int8")


# The model's input is raw pixels (preprocessing.py). Calibration would set the input's range
# from the sample's extremes (0.47..199 on the digits, 0..226 on the generated photos), and
# every brighter pixel of a later photo would be clipped; the whole pixel range instead gives
# scale 1 and zero point -128: each pixel value is represented exactly.
PIXEL_RANGE = (0.0, 255.0)


def _signature(model: bytes) -> tuple[str, str, str]:
    """(signature key, input name, input tensor name): the keys of the quantizer's calibration
    data and of its ranges."""
    interpreter = Interpreter(model_content=model)
    signatures = interpreter.get_signature_list()
    key = next(iter(signatures))
    return key, signatures[key]["inputs"][0], interpreter.get_input_details()[0]["name"]


def _pixel_input(ranges: dict, tensor: str) -> dict:
    low, high = ranges[tensor]["min"], ranges[tensor]["max"]
    pixels = {"min": np.full_like(low, PIXEL_RANGE[0]), "max": np.full_like(high, PIXEL_RANGE[1])}
    return {**ranges, tensor: pixels}


def quantize(model: bytes, mode: str, calibration: Iterable[np.ndarray] = ()) -> bytes:
    """A quantized copy of the float32 .tflite `model`. `calibration` yields float32 batches
    of training inputs (int8 only: it fixes the activations' ranges)."""
    if mode == "none":
        return model
    if mode not in MODES:
        raise ValueError(f"unknown quantization {mode!r}; one of {MODES}")
    qt = quantizer.Quantizer(bytearray(model))
    if mode == "float16":
        qt.add_weight_only_config(
            regex=".*",
            operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
            num_bits=16,
            algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING,
        )
    elif mode == "dynamic":
        qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    else:
        qt.load_quantization_recipe(recipe.static_wi8_ai8())
    ranges = samples = None
    if qt.need_calibration:
        key, name, tensor = _signature(model)
        samples = [{name: x[i : i + 1]} for x in calibration for i in range(len(x))]
        if not samples:
            raise ValueError("int8 quantization needs calibration images; none were given")
    # The quantizer draws progress bars (stderr) that a stage log does not want, and prints a
    # size summary (stdout) that goes to the log; when it fails, both go there with the error.
    stderr, stdout = io.StringIO(), io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(stderr):
            # Calibration keeps every intermediate tensor on purpose (it needs their ranges).
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
            if samples:
                ranges = qt.calibrate({key: samples}, num_threads=os.cpu_count() or 1)
                ranges = _pixel_input(ranges, tensor)
            with contextlib.redirect_stdout(stdout):
                result = qt.quantize(ranges)
    except Exception:
        said = (stdout.getvalue() + stderr.getvalue()).strip()
        log.error("quantization (%s) failed; the quantizer's output: %s", mode, said or "none")
        raise
    log.info("quantized (%s): %s", mode, " ".join(stdout.getvalue().split()))
    return bytes(result.quantized_model)

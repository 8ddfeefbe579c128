"""Post-training quantization of a float32 .tflite model with the AI Edge Quantizer.

LiteRT's documentation marks quantization inside the converter (`converter.optimizations`)
as deprecated in favour of this separate tool (`ai-edge-quantizer`), which rewrites the
converted flatbuffer. Modes (`export.quantization`):

- float16: weights stored as float16 (half the file), computed in float32.
- dynamic: int8 weights, activations quantized on the fly (a quarter of the file). On this
  x86 CPU XNNPACK runs it ~2.7x slower than float32, so it is for size, not speed.
- int8: weights and activations int8 (static ranges from calibration on training images); the
  input and output tensors are int8 too, which inference.Classifier converts.

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


def _signature(model: bytes) -> tuple[str, str]:
    """(signature key, input name): the keys the quantizer's calibration data is given by."""
    signatures = Interpreter(model_content=model).get_signature_list()
    key = next(iter(signatures))
    return key, signatures[key]["inputs"][0]


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
    ranges = None
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        # Calibration keeps every intermediate tensor on purpose (it needs their ranges), and
        # the quantizer draws progress bars (stderr) that a stage log does not want.
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        if qt.need_calibration:
            key, name = _signature(model)
            samples = [{name: x[i : i + 1]} for x in calibration for i in range(len(x))]
            if not samples:
                raise ValueError("int8 quantization needs calibration images; none were given")
            ranges = qt.calibrate({key: samples}, num_threads=os.cpu_count() or 1)
        # It also prints a size summary (stdout): that goes to the log.
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            result = qt.quantize(ranges)
    log.info("quantized (%s): %s", mode, " ".join(printed.getvalue().split()))
    return bytes(result.quantized_model)

"""The shell every stage runs in: logging, params, and one-line errors instead of tracebacks."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from image_classifier import timing
from image_classifier.data.store import StoreError
from image_classifier.errors import DataError, MissingFileError
from image_classifier.params import Params, ParamsError, load_params
from image_classifier.preprocessing import ImageError


class StageError(RuntimeError):
    """A stage cannot go on; the message says why and what to do."""


# Errors caused by data, params or a failed check: one line is more useful than a traceback.
USER_ERRORS = (ParamsError, DataError, ImageError, StoreError, MissingFileError, StageError)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def run_stage(fn: Callable[[Params], Any]) -> None:
    setup_logging()
    try:
        fn(load_params())
        timing.log_peak()
    except USER_ERRORS as exc:
        logging.getLogger(fn.__module__).error("%s", exc)
        sys.exit(1)

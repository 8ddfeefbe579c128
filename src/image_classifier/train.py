"""Stage `train`: fit the model chosen in params.yaml and write saved_models/model.keras.

    python -m image_classifier.train

The fit loop is training/fit_loop.py; this shell opens the pixel store and writes the outputs.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
from dvclive import Live

from image_classifier import atomic, config
from image_classifier.cli import run_stage
from image_classifier.data.manifests import Row, read_manifest, write_manifest
from image_classifier.data.store import fingerprint, open_split
from image_classifier.params import Params
from image_classifier.timing import phase
from image_classifier.training import distribute, frozen_base, served_graph
from image_classifier.training.fit_loop import fit

log = logging.getLogger(__name__)


def trained_on(rows: Sequence[Row], init_from: str | None) -> list[Row]:
    """This run's training images plus everything the init_from model had trained on, so a
    chain of init_from runs never lets an image trained on into a later test split."""
    earlier = read_manifest(config.trained_on_path(Path(init_from))) if init_from else []
    seen = {row.sha256 for row in rows}
    return [*rows, *(row for row in earlier if row.sha256 not in seen)]


def save_model(model: keras.Model, classes: Sequence[str], rows: Sequence[Row]) -> None:
    with atomic.atomic_path(config.KERAS_MODEL) as tmp:
        model.save(tmp)
    atomic.write_json(config.CLASSES_FILE, list(classes))
    write_manifest(config.TRAINED_ON_FILE, rows)


def save_served_graph(model: keras.Model, keep: frozen_base.Kept) -> None:
    """Phase 1's conversion for export, while the model still holds the base it converted
    (phase 2 changes it: then export converts the fine-tuned model)."""
    digest = keep.weights_sha256
    if digest is not None and served_graph.weights_digest(model) != digest:
        digest = None
    atomic.write_bytes(config.SERVED_GRAPH, keep.graph if digest else b"")
    atomic.write_json(config.SERVED_GRAPH_INDEX, {"weights_sha256": digest})


def run(params: Params) -> None:
    # Before any work, so a missing file costs no training; loading params does not check
    # them, since serving reads the same params.yaml on hosts that do not ship them.
    params.train.check_files()
    size, mode = params.image.size, params.image.color_mode
    chief = distribute.is_chief()
    with contextlib.ExitStack() as stack:
        # A multi-worker run's other workers write to a scratch folder (training/distribute.py).
        scratch = None if chief else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        live_dir = config.TRAIN_LIVE_DIR if scratch is None else scratch / "live"
        train = stack.enter_context(open_split("train", size, mode))
        val = stack.enter_context(open_split("val", size, mode))
        classes = list(train.meta.classes)
        log.info(
            "training %s on %d images, validating on %d", params.train.model, len(train), len(val)
        )
        keep = frozen_base.Kept()
        if scratch is None:
            tmp = stack.enter_context(atomic.atomic_path(config.POOLED_FEATURES))
            keep.features = frozen_base.FeatureFile(tmp, len(train), len(val))
            stack.callback(keep.features.close)  # runs before the rename above
        with Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
            model = fit(params, train, val, classes, live, keep)
        if scratch is not None:
            model.save(scratch / "model.keras")  # every worker takes part in saving
            log.info("not the chief worker: outputs discarded")
            return
        rows = trained_on(train.rows, params.train.init_from)
        kept = {"images": len(train) + len(val), "store": fingerprint([train, val])}
    # After features.npy is in place: a run killed in between leaves an index that does not
    # match the store, and the audit computes its own features.
    atomic.write_json(config.POOLED_FEATURES_INDEX, kept)
    with phase("save"):
        save_model(model, classes, rows)
        save_served_graph(model, keep)
    log.info("wrote %s", config.KERAS_MODEL)


if __name__ == "__main__":
    run_stage(run)

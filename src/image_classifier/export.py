"""Stage `export`: convert the Keras model to LiteRT (.tflite), quantize it if asked, check it
against the Keras model on the test split, calibrate it, fit its "none of these" detector, and
write it with its model card.

    python -m image_classifier.export

Nothing is written unless the check passes: a float32 export must give the Keras model's
probabilities within export.max_prob_diff, a quantized one its top-1 class on at least
export.min_top1_agreement of the test images. The Keras model runs on a seeded sample of the
test images (all of them when the split is smaller), because on CPU it costs several times
LiteRT's time an image: export.float32_check_images for a float32 export, where a conversion
fault shows on any image, and export.check_images for a quantized one, where 1,000 images pin
a top-1 agreement to about +-0.5 % (binomial standard error). The written model runs on
the whole test split: its metrics go into model.json and reports/export.json, and its
probabilities into reports/test_probabilities.npz, which the evaluate stage scores.

The served model returns, per image, its logits followed by its pooled features
(training/served_graph.py). A frozen base that phase 1 ran on LiteRT was converted there
already: export writes the trained head into that file instead of converting again.

On the written model's own output: a temperature is fitted on the validation split
(evaluation/calibration.py); the out-of-distribution detector (ood.method) keeps
statistics of a seeded sample of training images' features (saved_models/ood.npz), and its
threshold, set on the validation images, accepts ood.accept of such images with
ood.confidence (evaluation/ood.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import keras
import numpy as np

from image_classifier import atomic, config
from image_classifier.cli import StageError, run_stage
from image_classifier.data.manifests import read_classes
from image_classifier.data.store import SplitPixels, inference_batch_size, open_split, seeded_sample
from image_classifier.evaluation import HEADLINE_METRICS, calibration, metrics, ood
from image_classifier.litert.classifier import Classifier, ModelCard, Outputs
from image_classifier.litert.quantize import quantize
from image_classifier.params import ExportParams, OodParams, Params
from image_classifier.preprocessing import PREPROCESSING_VERSION, encode_png
from image_classifier.timing import phase
from image_classifier.training import served_graph

log = logging.getLogger(__name__)


def git_commit() -> str:
    """Short commit of the code the model was built from ('nogit' outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=8", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "nogit"
    return out.stdout.strip()


def float_tflite(model: keras.Model) -> bytes:
    """The served graph as float32 LiteRT: train's conversion with the trained head written
    in (served_graph.with_head), when the rest of its weights are this model's, checked by
    their digest; else a conversion of its own (a base trained whole or fine-tuned, or a
    train run that kept none)."""
    try:
        kept = json.loads(config.SERVED_GRAPH_INDEX.read_text(encoding="utf-8"))
        digest = kept.get("weights_sha256") if isinstance(kept, dict) else None
    except (FileNotFoundError, json.JSONDecodeError):
        digest = None
    if digest is not None and digest == served_graph.weights_digest(model):
        patched = served_graph.with_head(config.SERVED_GRAPH.read_bytes(), model)
        if patched is not None:
            log.info("served graph: train's conversion, with the trained head written in")
            return patched
        log.warning("%s holds no marked head; converting again", config.SERVED_GRAPH)
    return served_graph.convert(model)


def model_card(
    classes: list[str], params: Params, tflite: bytes, scores: dict, check: dict
) -> dict:
    model_sha = hashlib.sha256(tflite).hexdigest()
    # DVC identifies a file by the MD5 of its bytes: this prefix matches dvc.lock's entry.
    dvc_md5 = hashlib.md5(tflite, usedforsecurity=False).hexdigest()
    return {
        "version": f"{git_commit()}-{dvc_md5[:8]}",
        "classes": classes,
        "input": {
            "size": params.image.size,
            "color_mode": params.image.color_mode,
            "channels": params.image.channels,
            "dtype": "float32",
            "range": [0, 255],
        },
        "preprocessing_version": PREPROCESSING_VERSION,
        "params_hash": params.model_hash(),
        "architecture": params.train.model,
        "quantization": params.export.quantization,
        "metrics": {k: scores[k] for k in (*HEADLINE_METRICS, "n_test") if k in scores},
        "tflite_sha256": model_sha,
        "tflite_md5": dvc_md5,
        "keras_agreement": check,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def max_abs_difference(keras_probs: np.ndarray, tflite_probs: np.ndarray) -> float:
    return float(np.max(np.abs(keras_probs - tflite_probs), initial=0.0))


def check_export(keras_probs: np.ndarray, lite_probs: np.ndarray, ep: ExportParams) -> dict:
    """The exported model's agreement with the Keras model; StageError when it is not enough."""
    same_top1 = keras_probs.argmax(axis=1) == lite_probs.argmax(axis=1)
    check = {
        "max_prob_diff": max_abs_difference(keras_probs, lite_probs),
        "top1_agreement": round(float(same_top1.mean()) if len(same_top1) else 1.0, 6),
        "n_images": len(same_top1),
    }
    if ep.quantization == "none" and check["max_prob_diff"] > ep.max_prob_diff:
        raise StageError(
            f".tflite and Keras disagree on the test split by {check['max_prob_diff']:.2e} "
            f"(> export.max_prob_diff {ep.max_prob_diff}); nothing was written"
        )
    if ep.quantization != "none" and check["top1_agreement"] < ep.min_top1_agreement:
        raise StageError(
            f"the {ep.quantization} model gives the Keras model's top-1 class on only "
            f"{check['top1_agreement']:.2%} of the test split (< export.min_top1_agreement "
            f"{ep.min_top1_agreement}); nothing was written. Try export.quantization: float16 "
            "or none, or more export.calibration_images"
        )
    return check


def export_summary(mode: str, tflite: bytes, float_model: bytes, scores: dict, check: dict) -> dict:
    """reports/export.json: what was exported and how it scored (`dvc metrics show`)."""
    return {
        "quantization": mode,
        "size_kb": round(len(tflite) / 1024, 1),
        "float32_size_kb": round(len(float_model) / 1024, 1),
        **{k: scores[k] for k in (*HEADLINE_METRICS, "n_test") if k in scores},
        **{f"keras_{k}": v for k, v in check.items()},
    }


def run_split(
    clf: Classifier,
    split: SplitPixels,
    indices: np.ndarray | None = None,
    features: bool = True,
) -> Outputs:
    """The model's outputs for a split's images (all of them, or `indices`), a batch at a
    time, into arrays of the split's length (no list of parts to join: that would hold the
    outputs twice); without `features`, no pooled features or early statistics (no
    columns): a large split's would grow the stage's memory with it."""
    order = np.arange(len(split)) if indices is None else np.asarray(indices)
    step = inference_batch_size(split.meta.size, split.meta.channels)
    names = [f.name for f in dataclasses.fields(Outputs)]
    columns: dict[str, np.ndarray] = {}
    for start in range(0, len(order), step):
        part = clf.run(split.read(order[start : start + step]))
        if not features:
            none = np.empty((len(part.scores), 0), dtype=part.features.dtype)
            part = dataclasses.replace(part, features=none, early=none)
        for name in names:
            values = getattr(part, name)
            if name not in columns:
                columns[name] = np.empty((len(order), *values.shape[1:]), dtype=values.dtype)
            columns[name][start : start + len(values)] = values
    if not columns:
        n, none = len(clf.card.classes), np.empty((0, 0))
        empty = np.empty((0, n))
        return Outputs(empty, empty, none, none, np.empty(0), np.empty(0, bool))
    return Outputs(**columns)


def fit_detector(
    op: OodParams, train: Outputs, train_labels: np.ndarray, val: Outputs, temperature: float
) -> ood.Detector:
    """ood.method's statistics from the training sample (`auto` resolved by whether the
    model returns early statistics); the threshold set on the validation images to accept
    ood.accept of such images, with ood.confidence."""
    n_classes = train.logits.shape[1]
    method = ood.resolve(op.method, train.early.shape[1])
    arrays = ood.fit(method, train.features, train_labels, n_classes, train.early)
    detector = ood.Detector(method, float("-inf"), arrays, op.k)
    val_scores = detector.score(val.logits, val.features, temperature, val.early)
    if op.doubt:
        sure = ood.confidence(val.logits, temperature)
        arrays = arrays | ood.doubt_arrays(val_scores, sure)
        detector = ood.Detector(method, float("-inf"), arrays, op.k, doubt=True)
        val_scores = detector.score(val.logits, val.features, temperature, val.early)
    return dataclasses.replace(
        detector, threshold=ood.threshold_for(val_scores, op.accept, op.confidence)
    )


def pick_examples(outputs: Outputs, labels: np.ndarray, per_class: int, seed: int) -> list[int]:
    """Up to `per_class` test images of each class that the model gets right and calls
    known (a seeded choice): what the page offers a visitor to try."""
    rng = np.random.default_rng(seed)
    good = (outputs.probabilities.argmax(axis=1) == labels) & outputs.known
    picked = []
    for c in range(outputs.probabilities.shape[1]):
        pool = np.flatnonzero(good & (labels == c))
        picked += sorted(rng.permutation(pool)[:per_class].tolist())
    return picked


EXAMPLES_PER_CLASS = 3


def fit_on_val(clf: Classifier, params: Params) -> tuple[float, ood.Detector, dict, int]:
    """The temperature and the detector, from the validation split and export's training
    sample; with the served output's column widths and the validation images' count (the
    outputs themselves are freed on return)."""
    size, mode, op = params.image.size, params.image.color_mode, params.ood
    with open_split("val", size, mode) as val:
        val_out, val_labels = run_split(clf, val), val.labels
    with open_split("train", size, mode) as train:
        picked = seeded_sample(len(train), op.fit_images, params.train.seed)
        train_out, train_labels = run_split(clf, train, picked), train.labels[picked]
    temperature = calibration.fit_temperature(val_out.logits, val_labels)
    try:
        detector = fit_detector(op, train_out, train_labels, val_out, temperature)
    except ValueError as exc:  # ood.resolve: a method this model cannot serve
        raise StageError(f"params.yaml: {exc}") from None
    return temperature, detector, output_widths(val_out), len(val_labels)


def output_widths(outputs: Outputs) -> dict[str, int]:
    """The served output row's layout: the width of each of its parts."""
    parts = {"logits": outputs.logits, "features": outputs.features, "early": outputs.early}
    return {name: int(values.shape[1]) for name, values in parts.items()}


def served_fields(
    widths: dict, temperature: float, val_images: int, detector: ood.Detector, op: OodParams
) -> dict:
    """model.json's description of the served output: its layout (column widths), its
    temperature and its detector (whose statistics go to saved_models/ood.npz)."""
    return {
        "outputs": widths,
        "calibration": {"temperature": temperature, "fitted_on": "val", "images": val_images},
        "ood": {
            "method": detector.method,
            "threshold": detector.threshold,
            "k": detector.k,
            "doubt": detector.doubt,
            "accept": op.accept,
            "confidence": op.confidence,
            "file": config.OOD_STATS.name,
        },
    }


def calibration_batches(params: Params) -> Iterator[np.ndarray]:
    """A seeded sample of training images, float32 batches in store order (int8 ranges)."""
    size, mode = params.image.size, params.image.color_mode
    with open_split("train", size, mode) as train:
        picked = seeded_sample(len(train), params.export.calibration_images, params.train.seed)
        step = inference_batch_size(size, params.image.channels)
        for i in range(0, len(picked), step):
            yield train.read(picked[i : i + step]).astype(np.float32)


def keras_probs(
    model: keras.Model, split: SplitPixels, checked: np.ndarray, step: int
) -> np.ndarray:
    """The Keras model's probabilities for the `checked` images, float64. Keras on CPU costs
    several times LiteRT an image, hence the sample; its activations grow with its batch, so
    the LiteRT call's size bounds them too."""
    if not len(checked):
        raise StageError("the test split is empty: nothing to check the export on")
    ref = [
        model.predict_on_batch(split.read(checked[i : i + step]).astype(np.float32))
        for i in range(0, len(checked), step)
    ]
    return np.concatenate(ref).astype(np.float64)


def pick_example(probs: np.ndarray, labels: np.ndarray) -> int:
    """The test image that ships with the model: the written model's most confident right
    answer (its most confident answer when it gets none right), so a deploy check that
    expects that answer tests the served file, not the model's accuracy."""
    top = probs.max(axis=1)
    right = np.flatnonzero(probs.argmax(axis=1) == labels)
    pool = right if len(right) else np.arange(len(probs))
    return int(pool[np.argmax(top[pool])])


def example_entry(probs: np.ndarray, labels: np.ndarray, classes: list[str], index: int) -> dict:
    """model.json's `example`: the shipped image, its label and what the model answers."""
    return {
        "file": config.EXAMPLE_IMAGE.name,
        "label": classes[int(labels[index])],
        "predicted": classes[int(probs[index].argmax())],
        "probability": round(float(probs[index].max()), 6),
    }


def npz_bytes(arrays: dict) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def probabilities_npz(outputs: Outputs, tflite_sha256: str) -> bytes:
    """The served model's test-split outputs (calibrated probabilities, logits, detector
    scores), tagged with its file's hash, so evaluate scores exactly them instead of running
    the model a second time."""
    return npz_bytes(
        {
            "probabilities": outputs.probabilities.astype(np.float32),
            "logits": outputs.logits.astype(np.float32),
            "ood_scores": outputs.scores.astype(np.float64),
            "tflite_sha256": np.array(tflite_sha256),
        }
    )


def run(params: Params) -> dict:
    classes = read_classes()
    with phase("load_keras_model"):
        model = keras.models.load_model(config.KERAS_MODEL)
    with phase("convert"):
        float_model = float_tflite(model)
        mode = params.export.quantization
        tflite = quantize(float_model, mode, calibration_batches(params) if mode == "int8" else ())
    size, mode_name = params.image.size, params.image.color_mode
    card_stub = ModelCard(
        tuple(classes),
        size,
        mode_name,
        PREPROCESSING_VERSION,
        early_width=served_graph.early_width(model),
    )
    clf = Classifier(tflite, card_stub, num_threads=os.cpu_count() or 1)
    op, seed = params.ood, params.train.seed
    with phase("litert_val_train_sample"):
        temperature, detector, widths, val_images = fit_on_val(clf, params)
    with open_split("test", size, mode_name) as test:
        ep = params.export
        limit = ep.float32_check_images if mode == "none" else ep.check_images
        checked = seeded_sample(len(test), limit, seed)
        with phase("keras_check"):
            reference = keras_probs(model, test, checked, clf.max_batch)
        # The check compares the networks, before calibration: the written model's own
        # softmax against Keras'.
        served = Classifier(
            tflite,
            dataclasses.replace(card_stub, temperature=temperature),
            num_threads=os.cpu_count() or 1,
            detector=detector,
        )
        with phase("litert_test_split"):
            test_out = run_split(served, test, features=False)
        y = test.labels
        raw_probs = calibration.softmax(test_out.logits)
        check = check_export(reference, raw_probs[checked], params.export)
        # Stored pixels are decode_pixels' output at the model's size: as a PNG they decode
        # back to the same array, so the app must give the same answer for the file.
        example = pick_example(test_out.probabilities, y)
        shown = pick_examples(test_out, y, EXAMPLES_PER_CLASS, seed)
        pngs = {i: encode_png(test.read([i])[0]) for i in [example, *shown]}
    lite_probs = test_out.probabilities
    scores = metrics.compute_metrics(y, lite_probs, params.evaluate.top_k)
    card = model_card(classes, params, tflite, scores, check)
    card["example"] = example_entry(lite_probs, y, classes, example)
    card["examples"] = [
        {"file": f"{config.EXAMPLES_DIR.name}/{n:03d}.png", "label": classes[int(y[i])]}
        for n, i in enumerate(shown)
    ]
    card.update(served_fields(widths, temperature, val_images, detector, op))
    atomic.write_bytes(config.EXAMPLE_IMAGE, pngs[example])
    with atomic.atomic_dir(config.EXAMPLES_DIR) as folder:
        for n, i in enumerate(shown):
            (folder / f"{n:03d}.png").write_bytes(pngs[i])
    atomic.write_bytes(config.OOD_STATS, npz_bytes(detector.arrays))
    atomic.write_bytes(config.TFLITE_MODEL, tflite)
    atomic.write_json(config.MODEL_CARD, card)
    atomic.write_bytes(
        config.TEST_PROBABILITIES, probabilities_npz(test_out, card["tflite_sha256"])
    )
    summary = export_summary(mode, tflite, float_model, scores, check)
    atomic.write_json(config.EXPORT_METRICS, summary)
    log.info(
        "wrote %s (%s, %d KiB): test accuracy %.4f on %d images; on %d of them top-1 "
        "agreement with Keras %.4f, max |p_tflite - p_keras| %.2e; temperature %.3f; "
        "%s detector accepts %.1f%% of the test images",
        config.TFLITE_MODEL,
        mode,
        len(tflite) // 1024,
        scores["accuracy"],
        len(y),
        check["n_images"],
        check["top1_agreement"],
        check["max_prob_diff"],
        temperature,
        detector.method,
        100 * float(test_out.known.mean()),
    )
    return card


if __name__ == "__main__":
    run_stage(run)

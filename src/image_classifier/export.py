"""Stage `export`: convert the Keras model to LiteRT (.tflite), quantize it if asked, check it
against the Keras model on the test split, and write it with its model card.

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
"""

from __future__ import annotations

import hashlib
import io
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
from image_classifier.evaluation import metrics
from image_classifier.litert.classifier import Classifier, ModelCard
from image_classifier.litert.convert import to_tflite
from image_classifier.litert.quantize import quantize
from image_classifier.params import ExportParams, Params
from image_classifier.preprocessing import PREPROCESSING_VERSION, encode_png
from image_classifier.timing import phase

log = logging.getLogger(__name__)

HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "roc_auc_ovr", "n_test")


def git_commit() -> str:
    """Short commit of the code the model was built from ('nogit' outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=8", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "nogit"
    return out.stdout.strip()


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
        "metrics": {k: scores[k] for k in HEADLINE_METRICS if k in scores},
        "tflite_sha256": model_sha,
        "tflite_md5": dvc_md5,
        "keras_agreement": check,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def agreement(keras_probs: np.ndarray, tflite_probs: np.ndarray) -> float:
    return float(np.max(np.abs(keras_probs - tflite_probs), initial=0.0))


def check_export(keras_probs: np.ndarray, lite_probs: np.ndarray, ep: ExportParams) -> dict:
    """The exported model's agreement with the Keras model; StageError when it is not enough."""
    same_top1 = keras_probs.argmax(axis=1) == lite_probs.argmax(axis=1)
    check = {
        "max_prob_diff": agreement(keras_probs, lite_probs),
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
        **{k: scores[k] for k in HEADLINE_METRICS if k in scores},
        **{f"keras_{k}": v for k, v in check.items()},
    }


def calibration_batches(params: Params) -> Iterator[np.ndarray]:
    """A seeded sample of training images, float32 batches in store order (int8 ranges)."""
    size, mode = params.image.size, params.image.color_mode
    with open_split("train", size, mode) as train:
        picked = seeded_sample(len(train), params.export.calibration_images, params.train.seed)
        step = inference_batch_size(size, params.image.channels)
        for i in range(0, len(picked), step):
            yield train.read(picked[i : i + step]).astype(np.float32)


def predict_split(
    model: keras.Model, clf: Classifier, test: SplitPixels, checked: np.ndarray, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """(LiteRT probabilities for the whole split, Keras probabilities for the `checked`
    images), float64. Keras on CPU costs several times LiteRT an image, hence the sample."""
    with phase("litert_test_split"):
        lite = [clf.predict(x) for x, _ in test.batches(batch)]
    # Keras' activations grow with its batch: the LiteRT call's size bounds them too.
    step = clf.max_batch
    with phase("keras_check"):
        ref = [
            model.predict_on_batch(test.read(checked[i : i + step]).astype(np.float32))
            for i in range(0, len(checked), step)
        ]
    if not lite:
        raise StageError("the test split is empty: nothing to check the export on")
    return np.concatenate(lite).astype(np.float64), np.concatenate(ref).astype(np.float64)


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


def probabilities_npz(probs: np.ndarray, tflite_sha256: str) -> bytes:
    """The served model's test-split probabilities, tagged with its file's hash, so
    evaluate scores exactly them instead of running the model a second time."""
    out = io.BytesIO()
    np.savez(out, probabilities=probs.astype(np.float32), tflite_sha256=tflite_sha256)
    return out.getvalue()


def run(params: Params) -> dict:
    classes = read_classes()
    with phase("load_keras_model"):
        model = keras.models.load_model(config.KERAS_MODEL)
    with phase("convert"):
        float_model = to_tflite(model)
        mode = params.export.quantization
        tflite = quantize(float_model, mode, calibration_batches(params) if mode == "int8" else ())
    card_stub = ModelCard(
        tuple(classes), params.image.size, params.image.color_mode, PREPROCESSING_VERSION
    )
    clf = Classifier(tflite, card_stub, num_threads=os.cpu_count() or 1)
    size, channels = params.image.size, params.image.channels
    with open_split("test", size, params.image.color_mode) as test:
        ep = params.export
        limit = ep.float32_check_images if mode == "none" else ep.check_images
        checked = seeded_sample(len(test), limit, params.train.seed)
        lite_probs, keras_probs = predict_split(
            model, clf, test, checked, inference_batch_size(size, channels)
        )
        y = test.labels
        # Stored pixels are decode_pixels' output at the model's size: as a PNG they decode
        # back to the same array, so the app must give the same answer for the file.
        example = pick_example(lite_probs, y)
        example_png = encode_png(test.read([example])[0])
    check = check_export(keras_probs, lite_probs[checked], params.export)
    scores = metrics.compute_metrics(y, lite_probs, params.evaluate.top_k)
    card = model_card(classes, params, tflite, scores, check)
    card["example"] = example_entry(lite_probs, y, classes, example)
    atomic.write_bytes(config.EXAMPLE_IMAGE, example_png)
    atomic.write_bytes(config.TFLITE_MODEL, tflite)
    atomic.write_json(config.MODEL_CARD, card)
    atomic.write_bytes(
        config.TEST_PROBABILITIES, probabilities_npz(lite_probs, card["tflite_sha256"])
    )
    summary = export_summary(mode, tflite, float_model, scores, check)
    atomic.write_json(config.EXPORT_METRICS, summary)
    log.info(
        "wrote %s (%s, %d KiB): test accuracy %.4f on %d images; on %d of them top-1 "
        "agreement with Keras %.4f, max |p_tflite - p_keras| %.2e",
        config.TFLITE_MODEL,
        mode,
        len(tflite) // 1024,
        scores["accuracy"],
        len(y),
        check["n_images"],
        check["top1_agreement"],
        check["max_prob_diff"],
    )
    return card


if __name__ == "__main__":
    run_stage(run)

"""Stage `audit`: suspected label errors, outliers and near-duplicates in train and val.

    python -m image_classifier.audit                   # the stage (dvc.yaml runs it after train)
    python -m image_classifier.audit accept --top 20   # write the 20 worst suggestions into
                                                       # data.relabel, then `dvc repro`

Each train and val image gets out-of-sample class probabilities, from models that never saw
its label:
- from scratch (train.weights: null, up to audit.retrain_up_to images): audit.folds networks
  trained as train does, each without the image's fold (training/cross_fit.py). The trained
  model learnt the wrong labels with the right ones, so its own features vouch for them;
- otherwise: a logistic regression cross-validated (audit.folds) on the principal components
  of pooled features (the layer before dropout and the softmax). For a frozen transfer base
  on LiteRT these are the pretrained base's, which never learnt the given labels: phase 1 of
  training computed them already and kept them (saved_models/features.npy; a training
  image's as augmented in its first epoch), so the audit does not run the base again. Else
  (a base phase 1 ran on TensorFlow, or past audit.retrain_up_to) they are the trained
  model's, computed here by Keras (docs/architecture.md, "Audit").
cleanlab finds the label issues from the probabilities, and the outliers among the principal
components of the same features (evaluation/label_issues.py); the near-duplicate groups come
from the split. Writes
reports/audit/issues.csv, reports/audit/summary.json (DVC metrics) and reports/audit/gallery.png.
Not on the path to deploy: the gate does not read it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from image_classifier import atomic, config
from image_classifier.cli import run_stage, setup_logging
from image_classifier.data import npy
from image_classifier.data.manifests import read_manifest
from image_classifier.data.relabel import format_relabels, read_relabels
from image_classifier.data.store import (
    SplitPixels,
    fingerprint,
    inference_batch_size,
    open_split,
)
from image_classifier.errors import DataError, MissingFileError
from image_classifier.evaluation import label_issues
from image_classifier.params import Params, ParamsError, load_params
from image_classifier.preprocessing import channels
from image_classifier.timing import phase
from image_classifier.training import cross_fit

log = logging.getLogger(__name__)

FIELDS = ["path", "given_label", "suggested_label", "score", "kind"]


def pooled_features(model_path: Path):
    """The trained model up to its global pooling: pixels -> (n, d) features, run by Keras
    (simple_cnn's small images, or a base that phase 1 ran on TensorFlow: a machine with a
    GPU, or train.frozen_base_runtime: tensorflow)."""
    import keras

    model = keras.models.load_model(model_path, compile=False)
    pooling = [x for x in model.layers if isinstance(x, keras.layers.GlobalAveragePooling2D)]
    if not pooling:
        raise DataError(f"{model_path} has no global pooling layer to take features from")
    features = keras.Model(model.inputs, pooling[-1].output)
    return lambda x: features.predict_on_batch(x)


def kept_features(splits: list[SplitPixels]) -> npy.Rows | None:
    """The features phase 1 of training kept, if they are those of these images in this order."""
    try:
        index = json.loads(config.POOLED_FEATURES_INDEX.read_text(encoding="utf-8"))
        kept = npy.Rows(config.POOLED_FEATURES)
    except (OSError, ValueError) as exc:
        log.info("audit: no features kept by the train stage (%s)", exc)
        return None
    if kept.shape[0] == 0:
        return None  # phase 1 did not run on LiteRT
    if index.get("store") != fingerprint(splits) or kept.shape[0] != index.get("images"):
        log.warning(
            "audit: %s is not for the images in %s (train ran on other data); computing the "
            "features instead",
            config.POOLED_FEATURES,
            config.PREPARED_DIR,
        )
        return None
    return kept


def model_features(params: Params, splits: list[SplitPixels]) -> np.ndarray:
    """(n, d) the trained model's features of the splits' images, in order, computed."""
    batch = inference_batch_size(params.image.size, channels(params.image.color_mode))
    run = pooled_features(config.KERAS_MODEL)
    return np.concatenate(
        [np.asarray(run(x.astype(np.float32))) for s in splits for x, _ in s.batches(batch)]
    )


def near_duplicate_rows(split_report: dict) -> list[dict]:
    rows = []
    for group in split_report.get("near_duplicates", []):
        for path in group["paths"]:
            rows.append({"path": path, "kind": "near_duplicate", "score": "", "given_label": "",
                         "suggested_label": ""})  # fmt: skip
    return rows


def write_report(issues: list[label_issues.Issue], near: list[dict], summary: dict) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, FIELDS, lineterminator="\n")
    writer.writeheader()
    for issue in issues:
        writer.writerow(
            {
                "path": issue.path,
                "given_label": issue.given,
                "suggested_label": issue.suggested,
                "score": f"{issue.score:.6f}",
                "kind": issue.kind,
            }
        )
    writer.writerows(near)
    atomic.write_text(config.AUDIT_ISSUES, buf.getvalue())
    atomic.write_json(config.AUDIT_SUMMARY, summary)


def gallery(splits: list[SplitPixels], issues: list[label_issues.Issue], size: int) -> None:
    from image_classifier.evaluation.plots import gallery_figure, save_figure

    where = {path: (s, i) for s in splits for i, path in enumerate(s.paths)}
    shown = [i for i in issues if i.kind == "label"][:size]
    images = [where[i.path][0].read([where[i.path][1]])[0] for i in shown]
    titles = [f"{i.given} → {i.suggested}\n{Path(i.path).name[:24]}" for i in shown]
    fig = gallery_figure(images, titles, title="Suspected label issues (given → suggested)",
                         empty="no suspected label issues")  # fmt: skip
    save_figure(fig, config.AUDIT_GALLERY)


def run(params: Params) -> dict:
    split_report = json.loads(config.SPLIT_REPORT.read_text(encoding="utf-8"))
    near = near_duplicate_rows(split_report)
    splits = [
        open_split(name, params.image.size, params.image.color_mode) for name in ("train", "val")
    ]
    try:
        classes = list(splits[0].meta.classes)
        paths = [p for s in splits for p in s.paths]
        labels = np.concatenate([s.labels for s in splits])
        with phase("features"):
            kept = kept_features(splits)
            if kept is not None:
                log.info("audit: the frozen base's features from the train stage")
            features = kept if kept is not None else model_features(params, splits)
        with phase("principal_components"):
            points = label_issues.principal_components(features)
        summary = {
            "images": len(paths),
            "near_duplicate_groups": len(split_report.get("near_duplicates", [])),
        }
        # The trained model's own features learnt the given labels, wrong ones too, when it
        # was trained from scratch (a frozen base's, kept or not, never saw a label).
        retrain = (
            kept is None
            and params.train.weights is None
            and len(paths) <= params.audit.retrain_up_to
        )
        summary["probabilities"] = "networks" if retrain else "features"
        try:
            with phase("out_of_sample_probabilities"):
                if retrain:
                    probs = cross_fit.out_of_sample_probs(
                        params, cross_fit.Pooled(splits), classes, params.audit.folds
                    )
                else:
                    probs = label_issues.out_of_sample_probs(
                        points, labels, params.audit.folds, params.train.seed
                    )
        except label_issues.TooSmallError as exc:
            log.warning("audit: too small for cross-validation (%s); the report is empty", exc)
            summary.update(label_issues=0, outliers=0, too_small=str(exc))
            write_report([], near, summary)
            gallery(splits, [], 0)
            return summary
        found = label_issues.label_issues(probs, labels, paths, classes)
        with phase("outliers"):
            odd = label_issues.outliers(points, labels, paths, classes)
        summary.update(
            label_issues=len(found),
            label_issue_rate=round(len(found) / len(paths), 6),
            outliers=len(odd),
            out_of_sample_accuracy=round(float((probs.argmax(1) == labels).mean()), 6),
            too_small=None,
        )
        write_report(found + odd, near, summary)
        gallery(splits, found, params.audit.gallery_size)
    finally:
        for s in splits:
            s.close()
    log.info(
        "audit: %d of %d train and val images with suspected label issues, %d outliers, "
        "%d near-duplicate groups: %s",
        summary["label_issues"],
        summary["images"],
        summary["outliers"],
        summary["near_duplicate_groups"],
        config.AUDIT_ISSUES,
    )
    return summary


def manifest_hashes() -> dict[str, str]:
    """path -> content hash of every image the current split manifests list."""
    hashes = {}
    for path in map(config.manifest_path, config.SPLIT_NAMES):
        if path.is_file():
            hashes.update((row.path, row.sha256) for row in read_manifest(path))
    return hashes


def accept(
    top: int,
    relabel_file: Path,
    issues_file: Path = config.AUDIT_ISSUES,
    hashes: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Write the `top` worst label suggestions into the relabel CSV; return what was added.

    Each row carries its image's content hash from `hashes` (the split manifests), so it still
    applies after the image is renamed or packed into a shard; rows already in the file keep
    theirs, and gain one when their path is in `hashes`."""
    if not issues_file.is_file():
        raise MissingFileError(f"{issues_file} not found: run `dvc repro audit` first")
    hashes = {} if hashes is None else hashes
    with issues_file.open(newline="", encoding="utf-8") as fh:
        suggestions = [r for r in csv.DictReader(fh) if r["kind"] == "label"][:top]
    current = read_relabels(relabel_file).rows
    known = {r.path for r in current} | {r.sha256 for r in current if r.sha256}
    added = [
        (r["path"], r["suggested_label"])
        for r in suggestions
        if r["path"] not in known and hashes.get(r["path"]) not in known
    ]
    rows = [(r.path, r.label, r.sha256 or hashes.get(r.path)) for r in current]
    rows += [(path, label, hashes.get(path)) for path, label in added]
    atomic.write_text(relabel_file, format_relabels(rows))
    return added


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "accept":
        run_stage(run)
        return
    parser = argparse.ArgumentParser(prog="python -m image_classifier.audit accept")
    parser.add_argument("--top", type=int, required=True, help="how many suggestions, worst first")
    parser.add_argument("--params", type=Path, default=config.PARAMS_FILE)
    opts = parser.parse_args(args[1:])
    setup_logging()
    try:
        relabel_file = Path(load_params(opts.params).data.relabel)
        added = accept(opts.top, relabel_file, hashes=manifest_hashes())
    except (ParamsError, DataError, MissingFileError) as exc:
        log.error("%s", exc)
        sys.exit(1)
    for path, label in added:
        print(f"{path} -> {label}")
    print(f"{len(added)} relabel(s) added to {relabel_file}; run `dvc repro` to retrain")


if __name__ == "__main__":
    main()

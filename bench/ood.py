"""'None of these' and calibration, measured: every out-of-distribution method on the same data.

    python bench/ood.py [--datasets digits,photos] [--photos 1500] [--classes 5] [--size 96]
                        [--per-set 100] [--weights FILE] [--quick] [--prototypes]
                        [--keep DIR | --reuse DIR] [--json FILE]

For each dataset, in a fresh workspace built from the package's code and pipeline
(tests/fork.py: params.yaml of its own, the README's "your own images" steps; the repository's
params.yaml and data/ are never read), `dvc repro export`, then on the exported model:
- `digits`: the bundled sample (image_classifier.sample_data), the code's default params
  (simple_cnn, 16 px grayscale); far-OOD sets noise, blank, flat, gradients, textures, photos;
- `photos`: --photos photo-like JPEGs of --classes classes (image_classifier.synthetic, seed 3)
  at --size px RGB through a frozen MobileNetV2 (the frozen-base path); far-OOD sets noise,
  blank, flat, gradients, textures, digits. ImageNet's weights cannot be downloaded here, so
  the base is first trained on --pretrain-images photo-like images of another seed
  (bench/audit.py's pretraining) and saved as the local weights file train.weights names;
  --weights reuses such a file.
The exported model (LiteRT) runs the val split, the test split, export's seeded training
sample (ood.fit_images) and --per-set images of each far-OOD set (evaluation/ood_sets.py).
Every method (msp, the maximum-softmax baseline; energy; knn with k 1, 5 and 10; mahalanobis;
mahalanobis_early) is fitted on that same training sample by export's own fit_detector, its
threshold set on val at ood.accept and ood.confidence, and scored by evaluation/ood.py, alone
(ood.doubt false); then export's detector as params.yaml sets it (ood.doubt: the method's
score with the model's confidence), checked against export's own threshold and test scores.
One table per dataset: AUROC (test against all far-OOD images pooled), FPR at 95 % TPR, the
shares of far-OOD and of test images rejected, accuracy on the accepted test images and on
all, the share rejected of each set, and which of issue 36's targets hold. Then the
calibration table: the temperature export fitted on val, test ECE (15 bins) and log loss
before and after it, and how many top-1 answers changed.
--prototypes adds scores that are not in src/, on the same images and thresholds: Mahalanobis
on the raw features (ood.py's normalises them), on principal components, relative to a global
Gaussian, ViM, and (MobileNetV2) Mahalanobis on the averaged output of earlier blocks,
computed by the Keras model, alone and combined with the served features' score, and on the
served early statistics without their square roots; SIRC
(the maximum softmax with export's method score) and Fisher's product of the two shares
ood.doubt takes the lower of; and export's method score alone with the threshold at exactly
ood.accept of the val images (ood.doubt false, ood.confidence null).
--quick: a smoke run (about 6 minutes): fewer photos, a shorter pretraining and fewer far-OOD
images; its photo model is too weak for its figures to mean much.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from machine import print_header

import fork

ROOT = Path(__file__).resolve().parents[1]
# (method, k): the maximum-softmax baseline first, then the candidates (mahalanobis_early for
# a model with an early block only).
METHODS = (
    ("msp", 1),
    ("energy", 1),
    ("knn", 1),
    ("knn", 5),
    ("knn", 10),
    ("mahalanobis", 1),
    ("mahalanobis_early", 1),
)
FAR_SETS = {
    "digits": ["noise", "blank", "flat", "gradients", "textures", "photos"],
    "photos": ["noise", "blank", "flat", "gradients", "textures", "digits"],
}
# Issue 36's targets.
MIN_AUROC, MIN_FAR_REJECTED, MAX_TEST_REJECTED, MAX_ECE = 0.95, 0.90, 0.05, 0.03


def env() -> dict[str, str]:
    """A user's shell in the venv, with this checkout's code first (the stages import it)."""
    return {**fork.env(), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT / "src")}


def sh(repo: Path, *cmd: str, log: Path | None = None) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=repo, env=env(), capture_output=True, text=True)
    if log:
        log.write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-30:])
        raise SystemExit(f"{' '.join(cmd)} failed in {repo}:\n{tail}")
    return time.perf_counter() - start


def overrides(name: str, args, weights: Path | None) -> dict:
    """The run's params.yaml over the code's defaults (which are the sample's settings)."""
    if name == "digits":
        return {"ood": {"sets": FAR_SETS["digits"]}}
    return {
        "image": {"size": args.size, "color_mode": "rgb"},
        "train": {"model": "mobilenet_v2", "weights": str(weights), "fine_tune_layers": 0},
        "ood": {"sets": FAR_SETS["photos"]},
    }


def build(repo: Path, name: str, args, weights: Path | None) -> float:
    """The workspace, its images tracked by `dvc add` and committed; `dvc repro export`'s
    seconds."""
    from image_classifier.sample_data import write_sample
    from image_classifier.synthetic import Spec, balanced, write_dataset

    repo.mkdir(parents=True)
    fork.copy_project(repo, overrides(name, args, weights))
    if name == "digits":
        write_sample(repo / "data" / "raw")
    else:
        spec = Spec(balanced(args.photos, args.classes), seed=3, fmt="JPEG", scale=args.scale)
        write_dataset(repo / "data" / "raw", spec)
    for cmd in (
        ["git", "config", "gc.auto", "0"],
        ["dvc", "add", "-q", "data/raw"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", name],
    ):
        sh(repo, *cmd)
    return sh(repo, "dvc", "repro", "export", log=repo.parent / f"{name}-repro.log")


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    return float(roc_auc_score(y, np.r_[inside, outside]))


def figures(inside: np.ndarray, per: dict, threshold: float, correct: np.ndarray) -> dict:
    """A score's figures: test scores `inside`, far-OOD scores by set `per`."""
    from image_classifier.evaluation import ood

    pooled = np.concatenate(list(per.values()))
    accepted = inside >= threshold
    return {
        "auroc": auroc(inside, pooled),
        # the far-OOD share scored at or above the score 95 % of the test images reach
        "fpr_at_95_tpr": float((pooled >= ood.threshold_for(inside, 0.95)).mean()),
        "far_rejected": float((pooled < threshold).mean()),
        "test_rejected": float(1 - accepted.mean()),
        "accuracy_accepted": float(correct[accepted].mean()) if accepted.any() else None,
        "accuracy_all": float(correct.mean()),
        "per_set_rejected": {s: float((v < threshold).mean()) for s, v in per.items()},
    }


@dataclasses.dataclass
class Run:
    """The exported model's outputs on one workspace's images."""

    repo: Path
    params: object
    clf: object
    train: object
    train_y: np.ndarray
    val: object
    val_y: np.ndarray
    test: object
    test_y: np.ndarray
    far: dict
    seconds: float


def run_model(repo: Path, per_set: int, ood_seed: int) -> Run:
    """The exported model (LiteRT) on val, test, export's training sample and the far sets."""
    from image_classifier.data.store import open_split, seeded_sample
    from image_classifier.evaluation import ood_sets
    from image_classifier.export import run_split
    from image_classifier.litert.classifier import Classifier
    from image_classifier.params import load_params

    params = load_params(repo / "params.yaml")
    size, mode, op = params.image.size, params.image.color_mode, params.ood
    clf = Classifier.from_dir(repo / "saved_models", num_threads=os.cpu_count() or 1)
    prepared = repo / "data" / "prepared"
    start = time.perf_counter()
    with open_split("val", size, mode, prepared) as split:
        val, val_y = run_split(clf, split), split.labels
    with open_split("test", size, mode, prepared) as split:
        test, test_y = run_split(clf, split), split.labels
    with open_split("train", size, mode, prepared) as split:
        picked = seeded_sample(len(split), op.fit_images, params.train.seed)  # export's sample
        train, train_y = run_split(clf, split, picked), split.labels[picked]
    far = {s: clf.run(ood_sets.draw(s, per_set, size, mode, ood_seed)) for s in op.sets}
    elapsed = time.perf_counter() - start
    return Run(repo, params, clf, train, train_y, val, val_y, test, test_y, far, elapsed)


def measure(run: Run) -> dict:
    """Every method's figures and the calibration's, on the exported model's outputs."""
    from image_classifier.evaluation import calibration, ood
    from image_classifier.export import fit_detector

    temperature, card, op = run.clf.card.temperature, run.clf.card, run.params.ood
    test = run.test
    correct = test.probabilities.argmax(axis=1) == run.test_y
    rows = []

    def row(name: str, method_op) -> tuple[dict, object, np.ndarray]:
        # export's own fit: statistics from the training sample, threshold on val
        detector = fit_detector(method_op, run.train, run.train_y, run.val, temperature)
        inside = detector.score(test.logits, test.features, temperature, test.early)
        per = {
            s: detector.score(o.logits, o.features, temperature, o.early)
            for s, o in run.far.items()
        }
        return (
            {"method": name} | figures(inside, per, detector.threshold, correct),
            detector,
            inside,
        )

    for method, k in METHODS:
        if method == "mahalanobis_early" and not test.early.shape[1]:
            continue
        name = method if method != "knn" else f"knn k={k}"
        rows.append(row(name, dataclasses.replace(op, method=method, k=k, doubt=False))[0])
    # export's detector, as params.yaml sets it (ood.doubt: the method's score and the
    # model's confidence)
    method = card.ood.get("method")
    name = f"{method} and the confidence (ood.doubt)" if op.doubt else str(method)
    export_row, detector, inside = row(name, op)
    # The refit is export's own detector: same threshold, same test scores (to float32
    # rounding: XNNPACK's sums may differ with the batch).
    export_row["same_as_export"] = bool(
        detector.method == method
        and np.isclose(detector.threshold, card.ood["threshold"], rtol=1e-5)
        and np.allclose(inside, test.scores, rtol=1e-4, atol=1e-6)
    )
    rows.append(export_row)
    raw = calibration.softmax(test.logits)
    calib = {
        "temperature": temperature,
        "refit_temperature": calibration.fit_temperature(run.val.logits, run.val_y),
        "ece_before": calibration.expected_calibration_error(raw, run.test_y),
        "ece_after": calibration.expected_calibration_error(test.probabilities, run.test_y),
        "log_loss_before": calibration.log_loss(test.logits, run.test_y),
        "log_loss_after": calibration.log_loss(test.logits, run.test_y, temperature),
        "top1_changed": int((raw.argmax(axis=1) != test.probabilities.argmax(axis=1)).sum()),
    }
    return {
        "images": {
            "train_sample": len(run.train_y),
            "val": len(run.val_y),
            "test": len(run.test_y),
        },
        "far_images": {s: len(o.scores) for s, o in run.far.items()},
        "features": int(test.features.shape[1]),
        "early": int(test.early.shape[1]),
        "classes": len(card.classes),
        "export_method": card.ood.get("method"),
        "val_rejected": ood.rejected_count(len(run.val_y), op.accept, op.confidence),
        "methods": rows,
        "calibration": calib,
        "measure_s": run.seconds,
    }


# --prototypes: scores that are not in evaluation/ood.py, tried on the same outputs. Each is
# the package's Mahalanobis (ood.fit / ood.score, which L2-normalise the features first) on
# other features, except ViM and Mahalanobis on the raw features (a copy of the fit without
# that normalisation).
PROTOTYPE_COMPONENTS = 32
VIM_DIMS = 64
# MobileNetV2 blocks whose activation statistics the layer probe scores (Keras model), by
# Mahalanobis on the raw statistics: the candidates for models.EARLY_LAYERS, from the
# first activations at half the input's resolution to the last block.
PROBE_LAYERS = (
    "Conv1_relu",
    "expanded_conv_project_BN",
    "block_1_expand_relu",
    "block_1_project_BN",
    "block_2_add",
    "block_3_expand_relu",
    "block_5_add",
    "block_9_add",
    "block_15_add",
)
PROBE_PAIRS = (
    ("block_1_expand_relu", "block_3_expand_relu"),  # models.EARLY_LAYERS's choice
    ("block_1_expand_relu", "block_2_add"),
    ("expanded_conv_project_BN", "block_3_expand_relu"),
)


def _maha(train_f: np.ndarray, train_y: np.ndarray, classes: int):
    """The package's Mahalanobis score, fitted on these features."""
    from image_classifier.evaluation import ood

    arrays = ood.fit("mahalanobis", train_f, train_y, classes)
    return lambda f: ood.score("mahalanobis", arrays, np.empty((len(f), 0)), f)


def _maha_raw(train_f: np.ndarray, train_y: np.ndarray, classes: int):
    """ood.py's Mahalanobis without its L2 normalisation: class means and one Ledoit-Wolf
    covariance of the features as they are."""
    from sklearn.covariance import LedoitWolf

    f = np.asarray(train_f, dtype=np.float64)
    means = np.zeros((classes, f.shape[1]))
    for c in range(classes):
        if np.any(train_y == c):
            means[c] = f[train_y == c].mean(axis=0)
    precision = LedoitWolf(assume_centered=True).fit(f - means[train_y]).precision_
    w = np.linalg.cholesky((precision + precision.T) / 2)
    m = means @ w

    def score(x: np.ndarray) -> np.ndarray:
        g = np.asarray(x, dtype=np.float64) @ w
        return -((g * g).sum(axis=1, keepdims=True) - 2 * g @ m.T + (m**2).sum(axis=1)).min(1)

    return score


def _vim(train, dims: int):
    """ViM (Wang et al., CVPR 2022): energy minus the scaled norm of the features' residual
    off their principal subspace, the origin moved to -pinv(W^T) b of the logits' layer."""
    f = train.features.astype(np.float64)
    wb = np.linalg.lstsq(np.c_[f, np.ones(len(f))], train.logits, rcond=None)[0]  # exact: Dense
    w, b = wb[:-1], wb[-1]
    origin = -np.linalg.pinv(w.T) @ b
    centred = f - origin
    values, vectors = np.linalg.eigh(centred.T @ centred / len(f))
    residual_basis = vectors[:, np.argsort(values)[::-1][dims:]]
    alpha = (
        train.logits.max(axis=1).mean() / np.linalg.norm(centred @ residual_basis, axis=1).mean()
    )

    def score(logits: np.ndarray, features: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64)
        top = z.max(axis=1)
        energy = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
        residual = np.linalg.norm((features - origin) @ residual_basis, axis=1)
        return energy - alpha * residual

    return score


def prototype_scores(run: Run) -> dict:
    """name -> (scores of val, test and each far set), on the exported model's outputs."""
    classes = len(run.clf.card.classes)
    tf, ty = run.train.features.astype(np.float64), run.train_y
    mean = tf.mean(axis=0)
    basis = np.linalg.svd(tf - mean, full_matrices=False)[2][:PROTOTYPE_COMPONENTS].T
    project = lambda f: (f - mean) @ basis  # noqa: E731
    class_maha = _maha(tf, ty, classes)
    global_maha = _maha(tf, np.zeros(len(ty), int), 1)
    transforms = {
        "mahalanobis, raw features (not L2-normalised)": (
            lambda f: f,
            _maha_raw(tf, ty, classes),
        ),
        f"mahalanobis, {PROTOTYPE_COMPONENTS} principal components": (
            project,
            _maha(project(tf), ty, classes),
        ),
        "relative mahalanobis (Ren et al. 2021)": (
            lambda f: f,
            lambda f: class_maha(f) - global_maha(f),
        ),
    }
    outputs = {"val": run.val, "test": run.test, **run.far}
    out = {}
    for name, (transform, score) in transforms.items():
        out[name] = {k: score(transform(o.features.astype(np.float64))) for k, o in outputs.items()}
    vim = _vim(run.train, VIM_DIMS)
    out[f"ViM, {VIM_DIMS} principal dimensions (Wang et al. 2022)"] = {
        k: vim(o.logits, o.features.astype(np.float64)) for k, o in outputs.items()
    }
    return out


def layer_scores(run: Run, per_set: int, ood_seed: int) -> dict:
    """Mahalanobis on the activation statistics of MobileNetV2's blocks (PROBE_LAYERS),
    computed by the Keras model (saved_models/model.keras): per channel the spatial mean,
    and the mean and standard deviation (what `mahalanobis_early` scores, served for
    models.EARLY_LAYERS), as signed square roots. Empty for a model without such a base."""
    import keras

    from image_classifier.data.store import open_split, seeded_sample
    from image_classifier.evaluation import ood_sets
    from image_classifier.training.models import find_base

    model = keras.models.load_model(run.repo / "saved_models" / "model.keras")
    base = find_base(model)
    if base is None or not all(n in {layer.name for layer in base.layers} for n in PROBE_LAYERS):
        return {}
    inner = keras.Model(base.input, [base.get_layer(n).output for n in PROBE_LAYERS])
    before = model.layers[1 : model.layers.index(base)]  # the input scaling

    def pooled(x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        parts = []
        for i in range(0, len(x), 64):
            h = x[i : i + 64].astype(np.float32)
            for layer in before:
                h = layer(h)
            maps = [np.asarray(t, dtype=np.float64) for t in inner(h, training=False)]
            parts.append([(m.mean(axis=(1, 2)), m.std(axis=(1, 2))) for m in maps])
        return [
            tuple(np.concatenate([p[j][s] for p in parts]) for s in (0, 1))
            for j in range(len(PROBE_LAYERS))
        ]

    p = run.params
    size, mode, prepared = p.image.size, p.image.color_mode, run.repo / "data" / "prepared"
    feats = {}
    for split in ("train", "val", "test"):
        with open_split(split, size, mode, prepared) as s:
            idx = np.arange(len(s))
            if split == "train":
                idx = seeded_sample(len(s), p.ood.fit_images, p.train.seed)
            feats[split] = pooled(s.read(idx))
    for name in run.far:
        feats[name] = pooled(ood_sets.draw(name, per_set, size, mode, ood_seed))
    classes = len(run.clf.card.classes)
    out = {}
    # signed square roots, as ood.early_features takes of the served statistics
    root = lambda x: np.sign(x) * np.sqrt(np.abs(x))  # noqa: E731
    picks = {
        "mean": lambda v, j: root(v[j][0]),
        "mean and std": lambda v, j: root(np.c_[v[j][0], v[j][1]]),
    }
    for label, pick in picks.items():
        for j, layer in enumerate(PROBE_LAYERS):
            score = _maha_raw(pick(feats["train"], j), run.train_y, classes)
            out[f"mahalanobis, {layer}, {label} (Keras)"] = {
                k: score(pick(v, j)) for k, v in feats.items() if k != "train"
            }
    # Pairs of one layer at half the input's resolution and one at a quarter.
    for pair in PROBE_PAIRS:
        js = [PROBE_LAYERS.index(name) for name in pair]
        both = lambda v, js=js: np.concatenate([picks["mean and std"](v, j) for j in js], 1)  # noqa: E731
        score = _maha_raw(both(feats["train"]), run.train_y, classes)
        name = f"mahalanobis, {' and '.join(pair)}, mean and std (Keras)"
        out[name] = {k: score(both(v)) for k, v in feats.items() if k != "train"}
    return out


def prototypes(run: Run, per_set: int, ood_seed: int) -> list[dict]:
    """Rows as measure()'s for the prototype scores, thresholds on val as export's."""
    from image_classifier.evaluation import ood
    from image_classifier.export import fit_detector

    correct = run.test.probabilities.argmax(axis=1) == run.test_y
    scores = prototype_scores(run)
    scores |= layer_scores(run, per_set, ood_seed)
    outputs = {"val": run.val, "test": run.test, **run.far}
    if run.test.early.shape[1]:
        # Both of export's Mahalanobis scores, one verdict: each standardised by its val
        # scores, the lower kept, so one threshold on val still accepts ood.accept.
        z = []
        for method in ("mahalanobis", "mahalanobis_early"):
            op = dataclasses.replace(run.params.ood, method=method, doubt=False)
            d = fit_detector(op, run.train, run.train_y, run.val, run.clf.card.temperature)
            s = {k: d.score(o.logits, o.features, 1.0, o.early) for k, o in outputs.items()}
            z.append({k: (v - s["val"].mean()) / s["val"].std() for k, v in s.items()})
        name = "mahalanobis and mahalanobis_early, the lower (each standardised on val)"
        scores[name] = {k: np.minimum(z[0][k], z[1][k]) for k in z[0]}
        # The served early statistics as they are, without mahalanobis_early's square roots.
        as_is = _maha_raw(
            ood.early_statistics(run.train.early), run.train_y, len(run.clf.card.classes)
        )
        name = "mahalanobis_early on the statistics as they are (no square roots)"
        scores[name] = {k: as_is(ood.early_statistics(o.early)) for k, o in outputs.items()}
    # Export's own score, and SIRC (Xia & Bouganis, 2022): the maximum softmax, lowered where
    # export's score is low. Its log, -(log(1 - msp) + softplus(-b (score - a))), with a and b
    # the paper's (mean - 3 sd, 1 / sd of the training sample's scores), keeps apart
    # probabilities that round to 1 in float32.
    t, op = run.clf.card.temperature, run.params.ood
    method = run.clf.card.ood["method"]
    method_op = dataclasses.replace(op, method=method, doubt=False)
    d = fit_detector(method_op, run.train, run.train_y, run.val, t)
    own = {k: d.score(o.logits, o.features, t, o.early) for k, o in outputs.items()}
    fitted = d.score(run.train.logits, run.train.features, t, run.train.early)
    a, b = fitted.mean() - 3 * fitted.std(), 1 / fitted.std()
    sirc = {
        k: ood.confidence(o.logits, t) - np.logaddexp(0, -b * (own[k] - a))
        for k, o in outputs.items()
    }
    scores[f"SIRC: maximum softmax and {method} (Xia & Bouganis 2022)"] = sirc
    # Export's score and the model's confidence by Fisher's product of their shares of val
    # scores (ood.doubt takes the lower share).
    pf = {k: ood.share_at_or_below(np.sort(own["val"]), v) for k, v in own.items()}
    sure = {k: ood.confidence(o.logits, t) for k, o in outputs.items()}
    pm = {k: ood.share_at_or_below(np.sort(sure["val"]), v) for k, v in sure.items()}
    scores[f"{method} and the confidence, Fisher's product of shares"] = {
        k: np.log(np.maximum(pf[k], 1e-12)) + np.log(np.maximum(pm[k], 1e-12)) for k in outputs
    }
    # The threshold at exactly ood.accept of the val images (ood.confidence null).
    plain = {f"{method}, ood.doubt false, ood.confidence null": own}
    rows = []
    for name, s in (scores | plain).items():
        confidence = None if name in plain else op.confidence
        threshold = ood.threshold_for(s["val"], op.accept, confidence)
        per = {k: s[k] for k in run.far}
        rows.append({"method": name} | figures(s["test"], per, threshold, correct))
    return rows


def targets(row: dict) -> str:
    """Which of the out-of-distribution targets the row meets: all, or the ones it misses."""
    missed = []
    if row["auroc"] < MIN_AUROC:
        missed.append("AUROC")
    if row["far_rejected"] < MIN_FAR_REJECTED:
        missed.append("far rejected")
    if row["test_rejected"] > MAX_TEST_REJECTED:
        missed.append("test rejected")
    acc = row["accuracy_accepted"]
    if acc is None or acc < row["accuracy_all"]:
        missed.append("accuracy")
    return "all met" if not missed else "misses " + ", ".join(missed)


def pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f} %"


def rows_table(rows: list[dict], sets: list[str]) -> list[str]:
    lines = [
        "| method | AUROC | FPR at 95 % TPR | far-OOD rejected | test rejected | "
        "accuracy accepted | accuracy all | " + " | ".join(sets) + " | targets |",
        "|---" * (8 + len(sets)) + "|",
    ]
    for r in rows:
        mark = {True: " (export's)", False: " (export's: differs!)"}.get(r.get("same_as_export"))
        lines.append(
            f"| {r['method']}{mark or ''} | {r['auroc']:.3f} | {pct(r['fpr_at_95_tpr'])} | "
            f"{pct(r['far_rejected'])} | {pct(r['test_rejected'])} | "
            f"{pct(r['accuracy_accepted'], 2)} | {pct(r['accuracy_all'], 2)} | "
            + " | ".join(f"{100 * r['per_set_rejected'][s]:.0f} %" for s in sets)
            + f" | {targets(r)} |"
        )
    return lines


def ood_table(name: str, result: dict) -> list[str]:
    sets = list(result["far_images"])
    n = result["images"]
    lines = [
        f"{name}: {result['classes']} classes, {result['features']} features; detectors fitted "
        f"on {n['train_sample']} training images, thresholds on {n['val']} val images, "
        f"measured on {n['test']} test images and "
        f"{sum(result['far_images'].values())} far-OOD ({', '.join(sets)}; "
        f"{result['far_images'][sets[0]]} each)",
        "",
        *rows_table(result["methods"], sets),
    ]
    # The threshold is the (k+1)-th lowest of the n val scores: the share of such images below
    # it is Beta(k+1, n-k), and the test split's rejected share adds its own binomial spread.
    k = result["val_rejected"]
    mean = (k + 1) / (n["val"] + 1)
    spread = np.sqrt(mean * (1 - mean) * (1 / (n["val"] + 2) + 1 / n["test"]))
    lines += [
        "",
        f"test rejected: {100 * mean:.1f} % expected (the thresholds reject {k} of the "
        f"{n['val']} val images), sampling spread ±{100 * spread:.1f} points (1 sd)",
    ]
    if result.get("prototypes"):
        lines += ["", f"{name}, prototypes (not in src/; thresholds on val likewise):", ""]
        lines += rows_table(result["prototypes"], sets)
    return lines


def calibration_table(results: dict) -> list[str]:
    lines = [
        "| dataset | temperature | test ECE before | test ECE after | log loss before | "
        "log loss after | top-1 changed | targets (ECE ≤ 0.03, none changed) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        c = result["calibration"]
        ok = "met" if c["ece_after"] <= MAX_ECE and c["top1_changed"] == 0 else "missed"
        lines.append(
            f"| {name} | {c['temperature']:.3f} | {c['ece_before']:.4f} | {c['ece_after']:.4f} | "
            f"{c['log_loss_before']:.4f} | {c['log_loss_after']:.4f} | {c['top1_changed']} | "
            f"{ok} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="digits,photos")
    parser.add_argument("--photos", type=int, default=1500, help="photo-like images in all")
    parser.add_argument("--classes", type=int, default=5, help="classes of the photo-like data")
    parser.add_argument("--size", type=int, default=96, help="image.size of the photo model")
    parser.add_argument("--scale", type=float, default=0.5, help="photo frame scale (1: ~500 px)")
    parser.add_argument("--per-set", type=int, default=100, help="images of each far-OOD set")
    parser.add_argument("--ood-seed", type=int, default=1, help="seed of the far-OOD images")
    parser.add_argument("--pretrain-images", type=int, default=2000)
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument("--weights", type=Path, help="a pretrained base weights file to reuse")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 600 photos, 50 images a set, pretraining on 1000 images for 4 "
        "epochs (a weak photo model)",
    )
    parser.add_argument(
        "--prototypes", action="store_true", help="also score prototypes not in src/"
    )
    parser.add_argument("--keep", type=Path, help="keep the workspaces in this new folder")
    parser.add_argument("--reuse", type=Path, help="measure the workspaces --keep kept, as is")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.photos, args.per_set = min(args.photos, 600), min(args.per_set, 50)
        args.pretrain_images, args.pretrain_epochs = 1000, 4
    if args.keep and args.keep.exists():
        parser.error(f"--keep {args.keep} exists")
    names = [n for n in args.datasets.split(",") if n]
    unknown = set(names) - set(FAR_SETS)
    if unknown:
        parser.error(f"unknown datasets {sorted(unknown)}; use {sorted(FAR_SETS)}")
    started = time.perf_counter()
    results, timings = {}, {}
    with tempfile.TemporaryDirectory(prefix="ic-ood-") as tmp:
        work = args.reuse or args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        weights = args.weights
        if "photos" in names and weights is None and not args.reuse:
            from audit import pretrained_weights

            weights = work / "mobilenet_v2_base.weights.h5"
            t0 = time.perf_counter()
            pretrained_weights(weights, args.pretrain_images, args.pretrain_epochs)
            timings["pretrain_s"] = round(time.perf_counter() - t0, 1)
            print(f"pretrained the base in {timings['pretrain_s']} s: {weights}", flush=True)
        for name in names:
            repo = work / name
            if not args.reuse:
                timings[f"{name}_repro_s"] = round(build(repo, name, args, weights), 1)
                print(f"{name}: dvc repro export {timings[f'{name}_repro_s']} s", flush=True)
            run = run_model(repo, args.per_set, args.ood_seed)
            results[name] = measure(run)
            timings[f"{name}_measure_s"] = round(run.seconds, 1)
            if args.prototypes:
                t0 = time.perf_counter()
                results[name]["prototypes"] = prototypes(run, args.per_set, args.ood_seed)
                timings[f"{name}_prototypes_s"] = round(time.perf_counter() - t0, 1)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    print()
    print_header("TensorFlow", "Keras", "LiteRT", "scikit-learn", "DVC", "NumPy")
    shown = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    print(f"settings: {shown}")
    for name, result in results.items():
        print()
        print("\n".join(ood_table(name, result)))
    print()
    print("\n".join(calibration_table(results)))
    print()
    print("seconds: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    if args.json:
        out = {"results": results, "timings": timings, "settings": shown}
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

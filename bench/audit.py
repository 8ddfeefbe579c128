"""The audit stage against labels flipped on purpose: precision, recall, and the fix's effect.

    python bench/audit.py [--photos 1000] [--small 1000] [--noise 0.05,0.15]
                          [--digits-noise 0.08] [--epochs 5]

For each dataset and noise rate, in a fresh workspace as bench/scale.py builds it (the
package's code and pipeline with params.yaml of its own; README "your own images"):
1. writes a seeded synthetic dataset of 10 classes and moves a seeded share (--noise) of its
   files into another class's folder, so their folder labels are wrong;
2. `dvc repro`: the test accuracy before (against the folder labels, wrong ones included,
   as a user would measure it) and the audit's label issues;
3. precision and recall of those issues against the flipped files among train and val (the
   images the audit sees), at the audit's default threshold (cleanlab's);
4. `python -m image_classifier.audit accept --top <all issues>`, `dvc repro` again: the test
   accuracy after, on the same test split;
5. each stage's wall time, the audit's next to train's; for `photos`, the audit's
   cross-validation timed on the features' principal components (the stage's) and on all.
Datasets: `photos`, ~500x375 photo-like JPEGs at 224 px through a frozen MobileNetV2;
`small`, the same generator at a fifth of the size through simple_cnn at 16 px; and `digits`
(--digits-noise, 0: skip), the bundled sample with the code's default params (simple_cnn,
16 px grayscale, `train.epochs: auto`): the from-scratch path as a new user runs it, whose
audit trains audit.folds networks; and `digits-features`, the same with
`audit.retrain_up_to: 0`, the logistic regression on the trained model's own features. ImageNet's
weights cannot be downloaded here, and a random base's features do not tell the classes
apart: the base is first trained on --pretrain-images photo-like
images of another seed, 96 px, --pretrain-epochs epochs, and saved as the local weights
file the pipeline loads (train.weights). Prints one table.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from machine import print_header
from scale import env, make_workspace, run_measured, stage_label

import fork

ROOT = Path(__file__).resolve().parents[1]


PRETRAIN_SCRIPT = """
import sys
import keras
import numpy as np
from image_classifier.synthetic import Spec, balanced, render

path, images, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
keras.utils.set_random_seed(0)
spec = Spec(balanced(images, 10), seed=99)  # a disjoint seed: none of the benchmark's images
labels = np.repeat(np.arange(10), spec.counts[0])
x = np.stack([np.asarray(render(k, i, spec).resize((96, 96)), dtype="float32")
              for i, k in enumerate(labels)]) / 127.5 - 1
base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3))
pooled = keras.layers.GlobalAveragePooling2D()(base.output)
out = keras.layers.Dense(10, activation="softmax")(pooled)
model = keras.Model(base.input, out)
model.compile(
    keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
)
model.fit(x, labels, batch_size=64, epochs=epochs, shuffle=True, verbose=2)
# From scratch, BatchNormalization's moving statistics lag the weights (inference-mode features
# were no better than chance, measured): set them from a batch of the final network.
for layer in base.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = 0.0
base(x[np.random.default_rng(0).choice(len(x), 512, replace=False)], training=True)
base.save_weights(path)
"""


COMPONENTS_SCRIPT = """
import json, time
import numpy as np
from image_classifier import config
from image_classifier.data.store import open_split
from image_classifier.evaluation import label_issues
from image_classifier.params import load_params

p = load_params(config.PARAMS_FILE)
splits = [open_split(s, p.image.size, p.image.color_mode) for s in ("train", "val")]
labels = np.concatenate([s.labels for s in splits])
features = np.load(config.POOLED_FEATURES).astype(np.float32)
out = {}
for name, components in (("pca", label_issues.PCA_COMPONENTS), ("all", features.shape[1])):
    start = time.perf_counter()
    points = label_issues.principal_components(features, components)  # all: standardised
    probs = label_issues.out_of_sample_probs(points, labels, p.audit.folds, p.train.seed)
    out[f"cv_{name}_s"] = round(time.perf_counter() - start, 1)
    out[f"cv_{name}_accuracy"] = round(float((probs.argmax(1) == labels).mean()), 3)
print(json.dumps(out))
"""


def pretrained_weights(path: Path, images: int, epochs: int) -> None:
    """A MobileNetV2 base trained on photo-like images of a disjoint seed, standing in for
    ImageNet's weights (not downloadable here): features that tell such images apart, learnt
    without any of the benchmark's images or labels. Conv weights fit any input size."""
    cmd = [sys.executable, "-c", PRETRAIN_SCRIPT, str(path), str(images), str(epochs)]
    subprocess.run(cmd, env={**env(), "PYTHONPATH": str(ROOT / "src")}, check=True)


def write_photos(out: Path, images: int, scale: float) -> None:
    from image_classifier.synthetic import Spec, balanced, write_dataset

    write_dataset(out, Spec(balanced(images, 10), seed=3, fmt="JPEG", scale=scale))


def flip(raw: Path, share: float, seed: int) -> set[str]:
    """Move a seeded share of the files into another class's folder; their new paths."""
    files = sorted(p for p in raw.rglob("*") if p.is_file() and not p.name.startswith("."))
    classes = sorted(p.name for p in raw.iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    moved = set()
    for i in rng.choice(len(files), size=round(share * len(files)), replace=False):
        src = files[i]
        others = [c for c in classes if c != src.parent.name]
        dst = raw / others[rng.integers(len(others))] / f"flipped-{src.name}"
        src.rename(dst)
        moved.add(dst.relative_to(raw.parent.parent).as_posix())
    return moved


def sh(repo: Path, *cmd: str) -> str:
    out = subprocess.run(cmd, cwd=repo, env=env(), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def repro(repo: Path, log: Path) -> tuple[float, dict, float]:
    wall, stats = run_measured(["dvc", "repro"], repo, stage_label, log)
    accuracy = json.loads((repo / "reports/metrics.json").read_text())["accuracy"]
    return wall, stats, accuracy


def span(stats: dict, stage: str) -> float | None:
    s = stats.get(stage)
    return round(s["end"] - s["start"], 1) if s else None


def audited_paths(repo: Path) -> set[str]:
    paths = set()
    for split in ("train", "val"):
        with (repo / f"data/prepared/{split}.csv").open(newline="") as fh:
            paths |= {row["path"] for row in csv.DictReader(fh)}
    return paths


def one_run(work: Path, name: str, images: int, noise: float, weights: Path | None, args) -> dict:
    photos = work / f"{name}-photos"
    if not photos.exists() and name.startswith("digits"):
        from image_classifier.sample_data import write_sample

        write_sample(photos)
    elif not photos.exists():
        write_photos(photos, images, 1.0 if name == "photos" else 0.2)
    settings = argparse.Namespace(
        size=224 if name == "photos" else 16,
        quantization="none",
        epochs=args.epochs,
        op_determinism=False,
        shards=None,
    )
    case = work / f"{name}-{noise}"
    case.mkdir()
    own = {}
    if name == "small":  # from scratch: the README's defaults
        own["train"] = {"model": "simple_cnn", "weights": None, "batch_size": 64,
                        "min_steps": 300, "epochs": 30}  # fmt: skip
    if name.startswith("digits"):  # the code's defaults, which are the bundled sample's settings
        defaults = fork.params_dict()
        own = {key: defaults[key] for key in ("image", "train")}
    if name == "digits-features":  # the audit's alternative: the trained model's features
        own["audit"] = {"retrain_up_to": 0}
    repo, _ = make_workspace(case, photos, weights, settings, own)
    flipped = flip(repo / "data/raw", noise, seed=7)
    sh(repo, "dvc", "add", "data/raw")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "flipped labels")
    wall, stats, before = repro(repo, case / "repro-1.log")
    seen = audited_paths(repo)
    with (repo / "reports/audit/issues.csv").open(newline="") as fh:
        flagged = {r["path"] for r in csv.DictReader(fh) if r["kind"] == "label"}
    wrong = flipped & seen
    hits = flagged & wrong
    # The audit's cross-validation on the features phase 1 kept: on their principal components
    # (what the stage does) and on all of them.
    cv = json.loads(sh(repo, "python", "-c", COMPONENTS_SCRIPT)) if name == "photos" else {}
    sh(repo, "python", "-m", "image_classifier.audit", "accept", "--top", str(len(flagged)))
    _, _, after = repro(repo, case / "repro-2.log")
    return {
        "dataset": name,
        "images": images,
        "noise": noise,
        "flipped_seen": len(wrong),
        "flagged": len(flagged),
        "precision": round(len(hits) / len(flagged), 3) if flagged else None,
        "recall": round(len(hits) / len(wrong), 3) if wrong else None,
        "accuracy_before": before,
        "accuracy_after": after,
        "train_s": span(stats, "train"),
        "audit_s": span(stats, "audit"),
        "repro_s": round(wall, 1),
        **cv,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=1000, help="images in `photos` (0: skip)")
    parser.add_argument("--small", type=int, default=1000, help="images in `small` (0: skip)")
    parser.add_argument("--noise", default="0.05,0.15", help="shares of labels flipped")
    parser.add_argument(
        "--digits-noise", default="0.08", help="shares flipped in the bundled digits (0: skip)"
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the frozen-base head")
    parser.add_argument("--pretrain-images", type=int, default=6000)
    parser.add_argument("--pretrain-epochs", type=int, default=12)
    parser.add_argument("--weights", type=Path, help="a base weights file to use instead")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    rates = [float(x) for x in args.noise.split(",") if x]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ic-audit-") as tmp:
        work = Path(tmp)
        weights = None
        if args.photos and args.weights:
            weights = args.weights
        elif args.photos:
            weights = work / "mobilenet_v2_base.weights.h5"
            pretrained_weights(weights, args.pretrain_images, args.pretrain_epochs)
        runs = [(name, images, noise) for name, images in (("photos", args.photos),
                ("small", args.small)) if images for noise in rates]  # fmt: skip
        runs += [(name, 1797, float(x)) for x in args.digits_noise.split(",") if float(x)
                 for name in ("digits", "digits-features")]  # fmt: skip
        for name, images, noise in runs:
            rows.append(one_run(work, name, images, noise, weights, args))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print_header("TensorFlow", "Keras", "LiteRT", "scikit-learn", "cleanlab", "DVC")
    head = ["dataset", "images", "noise", "flipped_seen", "flagged", "precision", "recall",
            "accuracy_before", "accuracy_after", "train_s", "audit_s", "repro_s"]  # fmt: skip
    print("  ".join(f"{h:>15}" for h in head))
    for r in rows:
        print("  ".join(f"{r[h]!s:>15}" for h in head))
    for r in rows:
        if "cv_pca_s" in r:
            print(
                f"{r['dataset']} {r['noise']}: cross-validation took {r['cv_pca_s']} s on the "
                f"principal components (out-of-sample accuracy {r['cv_pca_accuracy']}), "
                f"{r['cv_all_s']} s on all features ({r['cv_all_accuracy']})"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

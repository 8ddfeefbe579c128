"""The whole pipeline (split -> prepare -> train -> export -> evaluate) on the datasets users
really have: two classes, few images, many classes, heavy imbalance, mixed modes and sizes.

Each dataset is generated (seeded, photo-like, synthetic.py) and every stage runs in-process
in a fresh workspace, as `dvc repro` would run it there.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from image_classifier import synthetic, synthetic_sets
from image_classifier.evaluation import metrics
from image_classifier.params import parse_params

from fork import assert_learnt, params_dict
from helpers import stages

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
STAGES = stages()


def run_pipeline(workspace: Path, spec: synthetic.Spec, overrides: dict, monkeypatch) -> dict:
    synthetic.write_dataset(workspace / "data" / "raw", spec, workers=1)
    return run_stages(workspace, overrides, monkeypatch)


def run_stages(workspace: Path, overrides: dict, monkeypatch) -> dict:
    monkeypatch.chdir(workspace)
    params = parse_params(params_dict(overrides))
    for stage in STAGES:
        stage.run(params)
    return json.loads((workspace / "reports" / "metrics.json").read_text())


# Ten epochs: after two, every network here still scored chance (0.5 of two classes, 1/42 of
# 42); at 16 pixels the eight more cost seconds.
FAST = {"image": {"size": 16, "color_mode": "rgb"}, "train": {"epochs": 10, "min_steps": 0}}

# name: (dataset, params, the metric judged, the share of chance's headroom it must gain).
# Measured (seeded, these params): accuracy 1.0 on two and three classes and 0.83 on mixed
# modes (the linear baseline: 0.88, 0.83, 0.83), balanced accuracy 1.0 at 20:1, and 9 of 42
# test images right among 42 classes (chance: 1; the linear baseline: 4).
MATRIX = {
    "two classes": (synthetic.Spec((30, 30), seed=1, scale=0.2), {}, "accuracy", 0.5),
    "3 classes of 30": (synthetic.Spec((30, 30, 30), seed=2, scale=0.2), {}, "accuracy", 0.5),
    # Eight images a class, one of each in the test split: 6 of 42 right asks for six times
    # chance.
    "42 classes": (synthetic.Spec((8,) * 42, seed=3, scale=0.2), {}, "accuracy", 0.1),
    # That balanced weights help is tested in test_training_schedule.py: this test split
    # holds about one minority image, too few to tell. Guessing the majority scores 0.95
    # accuracy here; its balanced accuracy, 0.5, is chance on the metric the weights serve.
    "20:1 imbalance": (
        synthetic.Spec((120, 6), seed=4, scale=0.2),
        {"train": {"class_weight": "balanced"}},
        "balanced_accuracy",
        0.5,
    ),
    "mixed modes and sizes": (
        synthetic.Spec((25, 25, 25), seed=5, fmt="mixed", scale=0.3),
        {},
        "accuracy",
        0.5,
    ),
}


@pytest.mark.parametrize("name", list(MATRIX))
def test_pipeline_runs_and_defines_its_metrics(name, tmp_path, monkeypatch):
    spec, extra, metric, share = MATRIX[name]
    raw = {
        section: {**FAST.get(section, {}), **extra.get(section, {})} for section in (*FAST, *extra)
    }
    scores = run_pipeline(tmp_path, spec, raw, monkeypatch)
    n_classes = len(spec.counts)
    assert all(isinstance(v, int | float) and math.isfinite(v) for v in scores.values())
    for key in ("accuracy", "balanced_accuracy", "f1_macro", "baseline_linear_accuracy"):
        assert 0 <= scores[key] <= 1, key
    assert scores["baseline_majority_accuracy"] == pytest.approx(
        max(
            c for c in json.loads(Path("reports/split.json").read_text())["counts"]["test"].values()
        )
        / scores["n_test"],
        abs=1e-6,
    )
    assert_learnt(scores, n_classes, share, metric)
    if n_classes == 2:
        assert "roc_auc" in scores and "roc_auc_ovr" not in scores
    top_k = sorted(k for k in scores if re.fullmatch(r"top_\d+_accuracy", k))
    assert top_k == (["top_3_accuracy"] if n_classes > 3 else [])
    card = json.loads(Path("saved_models/model.json").read_text())
    assert len(card["classes"]) == n_classes
    assert Path("saved_models/model.tflite").stat().st_size > 0


def readme_params(heading: str) -> dict:
    """The YAML block the README gives under a heading: what it tells users to set."""
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, f"no yaml block under {heading!r} in README.md"
    return yaml.safe_load(block.group(1))


def test_small_colour_folder_with_the_readme_params(tmp_path, monkeypatch):
    """150 images told apart by colour alone, mixed formats (the folder of issue 9, where the
    old defaults scored 0.41), in three seeded versions: with the params the README gives for
    colour photos and small datasets, and nothing else changed, the median run scores at
    least 0.95 and beats the linear baseline. The median, not each seed: which run falls
    short depends on the processor, whose float kernels change the training path (on an Intel
    Xeon, seed 2 scores 0.80 against the linear baseline's 0.95; on the AMD EPYC where the
    test was written, all three reached 0.95); bench/small_data.py gives the distribution."""
    raw = readme_params("### Colour photos and small datasets")
    runs = []
    for seed in (0, 1, 2):
        spec = synthetic.Spec((50, 25, 50), seed=seed, fmt="mixed", scale=0.5, by_colour_only=True)
        scores = run_pipeline(tmp_path / str(seed), spec, raw, monkeypatch)
        runs.append((scores["accuracy"], scores["baseline_linear_accuracy"]))
    median, linear = sorted(runs)[1]
    assert median >= 0.95 and median >= linear - 1e-9, runs


@pytest.mark.parametrize("name", ["glyphs", "two_class"])
def test_small_data_family_beats_the_linear_baseline(name, tmp_path, monkeypatch):
    """Two of bench/small_data.py's family (the full table is docs/benchmarks.md's): with the
    README's small-data params and seed 0 for the folder, the split and training (the
    bench's rows for seed 0), the network beats the linear baseline by the margin the gate
    asks, and evaluate warns only when the test split cannot show that it beats chance:
    two_class's holds 10 images, where 0.8 against a majority guess at 0.7 has a lower
    confidence bound of 0.54 (the warning then gives the count)."""
    synthetic_sets.write(name, tmp_path / "data" / "raw", seed=0)
    raw = readme_params("### Colour photos and small datasets")
    raw = {**raw, "split": {"seed": 0}, "train": {**raw.get("train", {}), "seed": 0}}
    scores = run_stages(tmp_path, raw, monkeypatch)
    linear = scores["baseline_linear_accuracy"]
    assert scores["accuracy"] >= metrics.required_over_baseline(linear, 0.02) - 1e-9, scores
    warning = json.loads(Path("reports/eval/evaluated_model.json").read_text())["warning"]
    n_classes = len(json.loads(Path("saved_models/model.json").read_text())["classes"])
    if metrics.beats_chance(scores, "accuracy", n_classes, 0.02).passed:
        assert warning is None, warning
    else:
        assert "no better than chance" in warning, warning
        assert f"lower bound over {scores['n_test']} test images" in warning, warning
        assert "logistic regression" not in warning, warning
